"""`status` for one host: what it runs against what `plan` computes now. Read-only.

One command gathers everything from the host (`SCRIPT`): the recorded description and
last health check (`<state_dir>/deployment.json`, `verified.json`), the unit files, each
unit's state and main PID with that process's /proc/PID/maps and numa_maps, and the
kernel's NUMA hygiene (numa_balancing, THP, swap, free memory per node). Then each running
instance's /health is asked over the same connection. The verdict:

- drift: the recorded description differs from the planned one, or a unit file on the
  host differs from what `apply` would write (its content is compared, never shown: it
  carries the environment);
- unhealthy: a unit that should run is not active, or /health does not answer 200;
- misplaced: a planned layer range has under `min_share` of its resident pages on its node.

Where systemd is not PID 1 nothing keeps a server running: status says so and shows the
last check apply recorded.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Mapping

from ..connect.base import Connector
from ..engine.modules.systemd_unit import DROPIN
from ..engine.role import Play
from ..engine.runner import play_vars
from ..engine.templating import render_file
from ..errors import ProbeError
from ..inventory import Host
from ..serving.health import request
from ..deployment.apply import RECORD, play_extra
from ..deployment.describe import Deployment
from ..deployment.diff import PROVENANCE, changes
from ..deployment.inputs import ModelSource
from ..deployment.verify import VERIFIED, Endpoint, endpoint_opener, endpoints
from . import placement

MIN_SHARE = 0.9
SERVICE_ROLE = "inference_service"
MARK = "@@coffers@@"
HEALTH_S = 10.0
# Reads only. Sections start with a MARK line naming what follows; absent files say so.
SCRIPT = r"""
state=$1; model=$2; shift 2
sec() { printf '\n%s %s %s\n' '@@coffers@@' "$1" "$2"; }
show() { if [ -r "$2" ]; then sec "$1" "$2"; cat -- "$2"; else sec absent "$2"; fi; }
show state "$state/deployment.json"; show state "$state/verified.json"
sec booted -; [ -d /run/systemd/system ] && echo yes || echo no
sec numa_balancing -; cat /proc/sys/kernel/numa_balancing 2>/dev/null
sec thp -; cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
sec meminfo -; grep -E '^(SwapTotal|SwapFree):' /proc/meminfo
for d in /sys/devices/system/node/node[0-9]*; do [ -r "$d/meminfo" ] && { sec node "${d##*node}"; grep -E 'MemFree:' "$d/meminfo"; }; done
for a in "$@"; do
  case $a in
    file:*) show file "${a#file:}";;
    unit:*) u=${a#unit:}
      [ -d /run/systemd/system ] || continue
      sec unit "$u"; systemctl show -p ActiveState -p SubState -p MainPID -- "$u"
      pid=$(systemctl show -P MainPID -- "$u"); [ "${pid:-0}" -gt 0 ] 2>/dev/null || continue
      sec maps "$u"; cat "/proc/$pid/maps"; sec numa_maps "$u"; cat "/proc/$pid/numa_maps";;
  esac
done
exit 0
"""


@dataclass(frozen=True)
class Gathered:
    sections: dict[tuple[str, str], str]

    def get(self, kind: str, name: str = "-") -> str | None:
        return self.sections.get((kind, name))


def split(text: str) -> Gathered:
    """The script's output by (kind, name)."""
    sections: dict[tuple[str, str], str] = {}
    key: tuple[str, str] | None = None
    lines: list[str] = []
    for line in text.split("\n"):
        if line.startswith(MARK + " "):
            if key:
                sections[key] = "\n".join(lines).strip("\n")
            kind, _, name = line[len(MARK) + 1:].partition(" ")
            key, lines = (kind, name), []
        elif key:
            lines.append(line)
    if key:
        sections[key] = "\n".join(lines).strip("\n")
    return Gathered(sections)


def expected_units(play: Play, variables: Mapping[str, Any], dep: Deployment) -> dict[str, str]:
    """Path -> the unit files `apply` writes for `dep` (the inference_service role's
    templates, as its tasks.yml names them)."""
    role = next(pr.role for pr in play.roles if pr.role.name == SERVICE_ROLE)
    unit_dir = str(variables["unit_dir"]).rstrip("/")

    def render(name: str, extra: Mapping[str, Any] | None = None) -> str:
        return render_file(role.templates, name, {**variables, **(extra or {})}, where=f"{SERVICE_ROLE}/templates/{name}")

    out = {}
    if dep.template:
        out[f"{unit_dir}/{dep.unit_file}"] = render("llama@.service.j2")
        for svc in variables["deployment"]["services"]:
            out[f"{unit_dir}/{svc['unit']}.d/{DROPIN}"] = render("llama@.dropin.conf.j2", {"instance": svc})
    else:
        out[f"{unit_dir}/{dep.unit_file}"] = render("llama.service.j2")
    if dep.frontend is not None:
        out[f"{unit_dir}/{dep.frontend.unit}"] = render("frontend.service.j2")
    return out


def _json(text: str | None) -> dict[str, Any] | None:
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _props(text: str | None) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (text or "").splitlines() if "=" in line)


def kernel(g: Gathered, dep: Deployment) -> dict[str, Any]:
    """numa_balancing, THP, swap, and free memory per node against the plan's headroom."""
    mem = {k.strip(): int(v.split()[0]) * 1024 for k, v in (ln.split(":", 1) for ln in (g.get("meminfo") or "").splitlines() if ":" in ln)}
    thp = g.get("thp") or ""
    chosen = thp[thp.find("[") + 1:thp.find("]")] if "[" in thp else (thp or None)
    balancing = (g.get("numa_balancing") or "").strip()
    planned = {n.id: n for n in dep.plan.nodes}
    nodes = []
    for (kind, name), text in sorted(g.sections.items()):
        if kind == "node" and name.isdigit() and text.split():
            free = int(text.split()[-2]) * 1024
            keep = planned[int(name)].headroom + planned[int(name)].reserved if int(name) in planned else 0
            nodes.append({"node": int(name), "free_bytes": free, "headroom_bytes": keep, "ok": free >= keep})
    nodes.sort(key=lambda n: n["node"])
    swap_used = mem.get("SwapTotal", 0) - mem.get("SwapFree", 0)
    warnings = []
    if balancing not in ("", "0"):
        warnings.append(f"kernel.numa_balancing is {balancing}: the kernel migrates pages away from the plan")
    if swap_used > 0:
        warnings.append(f"{swap_used // 2**20} MiB of swap in use")
    warnings += [f"node {n['node']}: {n['free_bytes'] // 2**20} MiB free, under the plan's headroom of {n['headroom_bytes'] // 2**20} MiB"
                 for n in nodes if not n["ok"]]
    return {"numa_balancing": int(balancing) if balancing.isdigit() else None, "thp": chosen,
            "swap_total_bytes": mem.get("SwapTotal"), "swap_used_bytes": swap_used, "nodes": nodes, "warnings": warnings}


def _health(conn: Connector, at: Endpoint) -> dict[str, Any]:
    try:
        code, body = request(endpoint_opener(conn, at), "GET", "/health", timeout=HEALTH_S)
    except Exception as e:  # noqa: BLE001 - any failure to answer is the finding, not an error of status
        return {"ok": False, "detail": f"{at.url}/health: {type(e).__name__}: {e}"}
    return {"ok": code == 200, "detail": f"{at.url}/health: {code} {body.decode('utf-8', 'replace').strip()[:120]}"}


def _placement(dep: Deployment, svc_index: int, g: Gathered, unit: str, min_share: float) -> dict[str, Any] | None:
    maps, numa = g.get("maps", unit), g.get("numa_maps", unit)
    if maps is None or numa is None:
        return None
    vmas = placement.parse(numa, maps)
    plan = dep.plan
    if plan.strategy == "replicate":
        svc = dep.plan.instances[svc_index]
        ranges = [placement.own_node_share(vmas, svc.memory_nodes[0])] if svc.memory_nodes else []
    elif plan.layer_nodes:
        ranges = placement.layer_shares(plan, vmas, dep.model)
    else:  # interleave and the baselines: no node per layer to hold them to
        ranges = []
    low = [r for r in ranges if r["share"] is not None and r["share"] < min_share]
    return {"ranges": ranges, "by_node": placement.by_node(vmas, dep.model), "misplaced": [r["range"] for r in low]}


def last_check(verified: dict[str, Any] | None, unit: str) -> dict[str, Any] | None:
    for a in (verified or {}).get("answers") or []:
        if a.get("unit") == unit:
            return {"at": verified.get("at"), "fingerprint": verified.get("fingerprint"), "transient": verified.get("transient", True),
                    "generation_tokens_per_s": a.get("generation_tokens_per_s"), "prompt_tokens_per_s": a.get("prompt_tokens_per_s")}
    return None


def host_status(host: Host, conn: Connector, play: Play, facts: Mapping[str, Any], dep: Deployment, src: ModelSource,
                *, min_share: float = MIN_SHARE) -> dict[str, Any]:
    """One host's status document (schemas/status.schema.json, `hosts.<name>`)."""
    variables = play_vars(play, host.vars, play_extra(host, facts, dep, src))
    state_dir = str(variables["state_dir"]).rstrip("/")
    units = expected_units(play, variables, dep)
    wanted = [e.unit for e in endpoints(dep)]
    r = conn.run(["sh", "-c", SCRIPT, "sh", state_dir, dep.model, *(f"file:{p}" for p in units), *(f"unit:{u}" for u in wanted)], timeout=60)
    if not r.ok:
        raise ProbeError(f"status: the host's state could not be read (exit {r.rc}): {r.stderr.strip()[-300:]}")
    g = split(r.stdout)
    recorded = _json(g.get("state", f"{state_dir}/{RECORD}"))
    verified = _json(g.get("state", f"{state_dir}/{VERIFIED}"))
    planned = dep.to_json()
    diff = changes(recorded, planned) if recorded else []
    units_changed = sorted(p for p, text in units.items() if (g.get("file", p) or None) != text.strip("\n"))
    booted = (g.get("booted") or "").strip() == "yes"
    instances = []
    for i, at in enumerate(endpoints(dep)):
        props = _props(g.get("unit", at.unit))
        inst: dict[str, Any] = {"unit": at.unit, "url": at.url, "state": props.get("ActiveState") if booted else None,
                                "pid": int(props.get("MainPID", "0")) or None if props.get("MainPID", "0").isdigit() else None,
                                "last_check": last_check(verified, at.unit), "placement": None}
        if not booted:
            inst["health"] = {"ok": None, "detail": "not running: systemd is not PID 1 (apply checks a transient run)"}
        elif inst["state"] != "active":
            inst["health"] = {"ok": False, "detail": f"{at.unit} is {inst['state'] or 'unknown'}"}
        else:
            inst["health"] = _health(conn, at)
        if booted and inst["pid"] and i < len(dep.services):
            inst["placement"] = _placement(dep, i, g, at.unit, min_share)
        instances.append(inst)
    hygiene = kernel(g, dep)
    drifted = recorded is None or bool(diff) or bool(units_changed)
    problems = []
    if recorded is None:
        damaged = g.get("state", f"{state_dir}/{RECORD}") is not None
        problems.append(f"{state_dir}/{RECORD}: " + ("not a JSON object: apply rewrites it" if damaged else "nothing recorded: never applied"))
    elif diff:
        problems.append(f"the deployed description differs from the plan ({len(diff)} changes): apply would change it")
    problems += [f"{p} differs from what apply writes" for p in units_changed]
    problems += [f"{i['unit']}: unhealthy: {i['health']['detail']}" for i in instances if i["health"]["ok"] is False]
    problems += [f"{i['unit']}: layers {', '.join(i['placement']['misplaced'])} under {min_share:.0%} on the planned node"
                 for i in instances if i["placement"] and i["placement"]["misplaced"]]
    return {
        "strategy": dep.plan.strategy,
        "topology": f"{len(dep.plan.nodes)} nodes",
        "systemd": booted,
        "drift": {"drifted": drifted, "planned": planned["fingerprint"], "deployed": (recorded or {}).get("fingerprint"),
                  "diff": diff, "unit_files": units_changed},
        "instances": instances,
        "kernel": hygiene,
        "provenance": (recorded or {}).get(PROVENANCE),
        "problems": problems,
        "warnings": hygiene["warnings"],
        "ok": not problems,
        "checked_at": time.time(),
    }
