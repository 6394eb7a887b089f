"""The page-cache budget at the moment of a (re)start: the plan against each node's live memory.

The plan was made from facts gathered earlier (the facts cache). Right before apply would
(re)start a server, it reads each node's free memory now and refuses, with nothing changed
on the host, a plan that would push a node into reclaim. On each node it counts as
available:

- MemFree (/sys/devices/system/node/nodeN/meminfo);
- the model's own pages already in the page cache there (numa-shard-place --verify, which
  asks the kernel where each cached page of each file sits), except for replicate, whose
  copies are the servers' own memory (--no-mmap): its cached pages are not reused;
- the memory the running servers of the unit family hold there outside any file mapping
  (their KV cache, and replicate's copies), which the restart frees: this form's units and
  the other form's, which a change of strategy stops first (systemd's MainPID of each
  active unit, /proc/PID/numa_maps).

A node falls short when weights + KV cache + headroom + reserve exceed that. Whether a
(re)start will happen is read from the play's own batch (the recorded description, the
pending handlers, the units' state or the last health check), so a no-op apply costs no
extra round trip; the live read is one more command, only when a server will start.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..connect.base import Connector
from ..engine import handlers
from ..engine.modules import SYSTEMD_BOOTED
from ..engine.state import HostState, Needs
from ..errors import HostError
from ..planner import NodeBudget
from ..topology import format_cpulist
from ..units import human_bytes
from . import verify
from .describe import PLACE, Deployment

READ_TIMEOUT_S = 900.0  # numa-shard-place --verify asks the kernel about every cached page: ~100M for 400 GB
# Reads only. Arguments: the placement tool, a node list it accepts, the unit base name, the model's files.
# Every running server of the family counts as released: one service or one instance per
# node, of this form or of the one a change of strategy removes (the role stops it first).
READ = r"""
tool=$1; nodes=$2; base=$3; shift 3
awk '$3 == "MemFree:" { print "F", $2, $4 }' /sys/devices/system/node/node[0-9]*/meminfo 2>/dev/null
if [ -d /run/systemd/system ]; then
  for u in $(systemctl list-units --plain --no-legend --state=active -- "$base.service" "$base@*.service" 2>/dev/null | awk '{print $1}'); do
    pid=$(systemctl show -P MainPID -- "$u" 2>/dev/null)
    [ "${pid:-0}" -gt 0 ] 2>/dev/null && sed 's/^/M /' "/proc/$pid/numa_maps" 2>/dev/null
  done
fi
if [ -x "$tool" ]; then echo C; "$tool" --interleave "$nodes" --verify --json --min-percent 0 "$@" 2>/dev/null; echo "X $?"
else echo "C -"; fi
exit 0
"""


@dataclass(frozen=True)
class Live:
    """One host's memory per node right now, in bytes."""

    free: Mapping[int, int]  # MemFree
    cached: Mapping[int, int] | None  # the model's files in the page cache; None: not known (see `uncounted`)
    released: Mapping[int, int] = field(default_factory=dict)  # the running servers' memory outside file mappings
    uncounted: str | None = None  # why `cached` is not known


def _numa_maps_bytes(lines: Sequence[str]) -> dict[int, int]:
    """Resident bytes per node of the mappings that are no file (heap, stack, anonymous)."""
    out: dict[int, int] = {}
    for line in lines:
        words = line.split()
        if any(w.startswith("file=") for w in words):
            continue
        kb = next((int(w.split("=", 1)[1]) for w in words if w.startswith("kernelpagesize_kB=")), 4)
        for w in words:
            if w.startswith("N") and "=" in w and w[1:].split("=", 1)[0].isdigit():
                node, pages = w[1:].split("=", 1)
                out[int(node)] = out.get(int(node), 0) + int(pages) * kb * 1024
    return out


def _residency(doc: Any) -> dict[int, int]:
    """Bytes per node of the files' cached pages, from numa-shard-place --verify --json."""
    out: dict[int, int] = {}
    for one in doc if isinstance(doc, list) else [doc]:
        for n in one["nodes"]:
            out[int(n["node"])] = out.get(int(n["node"]), 0) + int(n["pages"]) * int(one["page_size"])
    return out


def parse_live(text: str, tool: str) -> Live:
    """READ's output."""
    lines = text.splitlines()
    cut = next((i for i, line in enumerate(lines) if line in ("C", "C -")), len(lines))
    head, tail = lines[:cut], lines[cut:]
    free = {int(w[1]): int(w[2]) * 1024 for w in (line.split() for line in head) if len(w) == 3 and w[0] == "F"}
    released = _numa_maps_bytes([line[2:] for line in head if line.startswith("M ")])
    if not tail or tail[0] == "C -":
        return Live(free, None, released, f"{tool} is not on the host yet")
    status = tail[-1].removeprefix("X ").strip() if tail[-1].startswith("X ") else "?"
    try:
        cached = _residency(json.loads("\n".join(tail[1:-1])))
    except (ValueError, KeyError, TypeError):
        return Live(free, None, released, f"{PLACE} --verify exited {status} without a report")
    return Live(free, cached, released)


def shortfalls(nodes: Sequence[NodeBudget], live: Live, *, cache_counts: bool = True) -> list[str]:
    """One line per node the plan would push into reclaim: what the plan puts there (weights +
    KV) and keeps free (headroom, reserve) against what is available now. `cache_counts`:
    the model's cached pages are the weights' pages (every strategy but replicate)."""
    out = []
    for n in nodes:
        put = n.weights + n.kv
        if n.free is None or put == 0:
            continue  # capacity unknown (no NUMA facts), or nothing planned there
        what = f"node {n.id}: the plan puts {human_bytes(put)} there (weights {human_bytes(n.weights)} + KV {human_bytes(n.kv)})"
        if n.id not in live.free:
            out.append(f"{what} but the host has no node{n.id}/meminfo now: its NUMA nodes changed since the facts were gathered (apply --refresh-facts)")
            continue
        free, released = live.free[n.id], live.released.get(n.id, 0)
        parts = [f"{human_bytes(free)} free"]
        cached = 0
        if cache_counts:
            if live.cached is None:
                parts[0] += f"; the model's cached pages not counted: {live.uncounted}"
            else:
                cached = live.cached.get(n.id, 0)
                parts.append(f"{human_bytes(cached)} of this model already cached")
        if released:
            parts.append(f"{human_bytes(released)} its running servers free on restart")
        available = free + cached + released
        keep = f"headroom {human_bytes(n.headroom)}" + (f" - reserved {human_bytes(n.reserved)}" if n.reserved else "")
        short = put + n.headroom + n.reserved - available
        if short > 0:
            out.append(f"{what} but only {human_bytes(available)} is free ({' + '.join(parts)}) - {keep}: "
                       f"{human_bytes(short)} short; apply would push node {n.id} into reclaim")
    return out


# -- when: read from the play's own batch -----------------------------------------------------


def _units(dep: Deployment) -> list[str]:
    return [s.unit for s in dep.services]


def _active_query(dep: Deployment) -> str:
    return f"{SYSTEMD_BOOTED} || exit 0; systemctl is-active -- " + " ".join(map(shlex.quote, _units(dep)))


def _server_files(dep: Deployment) -> set[str]:
    return {dep.llama_server, *dep.model_files}  # stat'ed, never hashed (the model may be hundreds of GB)


def _paths(variables: Mapping[str, Any]) -> tuple[str, str, str]:
    """The state directory, the recorded description and the last health check."""
    state_dir = str(variables["state_dir"])
    record = str(variables.get("deployment_record_path") or f"{state_dir.rstrip('/')}/deployment.json")
    return state_dir, record, f"{state_dir.rstrip('/')}/{verify.VERIFIED}"


def needs(dep: Deployment, variables: Mapping[str, Any]) -> Needs:
    """What `starts` reads, fetched with the play's own round trip."""
    state_dir, record, verified = _paths(variables)
    return Needs(stat=_server_files(dep), read={record, verified, handlers.path(state_dir)}, capture={SYSTEMD_BOOTED, _active_query(dep)})


def _fingerprint(raw: bytes | None) -> str | None:
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        return None
    return doc.get("fingerprint") if isinstance(doc, dict) else None


def starts(state: HostState, dep: Deployment, variables: Mapping[str, Any]) -> bool:
    """Whether this apply (re)starts a server: only where its binary and model are on the host;
    then, with systemd, when the description changes, a restart is pending or a unit is not
    active; without it, when verify runs the unit's command for a description not yet checked."""
    if any(state.stat(p) is None for p in _server_files(dep)):
        return False  # the unit tasks are skipped: nothing starts
    state_dir, record, verified = _paths(variables)
    new = dep.to_json()["fingerprint"]
    changed = _fingerprint(state.read(record)) != new or verify.RESTART_HANDLER in handlers.load(state, state_dir)
    if state.capture(SYSTEMD_BOOTED).ok:
        return changed or state.capture(_active_query(dep)).stdout.split() != ["active"] * len(_units(dep))
    return dep.verify and (changed or _fingerprint(state.read(verified)) != new)


# -- the check ----------------------------------------------------------------------------------


def read_live(conn: Connector, dep: Deployment, nodes: Sequence[int]) -> Live:
    tool = f"{dep.prefix.rstrip('/')}/bin/{PLACE}"
    r = conn.run(["sh", "-c", READ, "sh", tool, format_cpulist(nodes), dep.unit_base, *dep.model_files], timeout=READ_TIMEOUT_S)
    if not r.ok:  # READ itself always exits 0
        raise HostError(f"{conn.host}: reading each node's free memory failed: {(r.stderr or r.stdout).strip()}")
    return parse_live(r.stdout, tool)


def guard(conn: Connector, dep: Deployment, variables: Mapping[str, Any]) -> Callable[[HostState], str | None]:
    """The check apply's play runs once the host's state is read, before any task."""
    planned = [n for n in dep.plan.nodes if n.free is not None and n.weights + n.kv > 0]

    def check(state: HostState) -> str | None:
        if not planned or not starts(state, dep, variables):
            return None
        weights = [n.id for n in planned if n.weights] or [n.id for n in planned]
        lines = shortfalls(planned, read_live(conn, dep, weights), cache_counts=dep.plan.strategy != "replicate")
        if not lines:
            return None
        return (f"the live memory of {len(lines)} node(s) cannot take this plan (read right before the restart); "
                "nothing was changed on the host\n" + "\n".join(f"  {line}" for line in lines))

    return check
