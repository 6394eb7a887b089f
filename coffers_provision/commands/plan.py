"""`plan --topology NUMACTL.txt --model MODEL.gguf`: an offline plan for one host."""

from __future__ import annotations

import argparse
import json
import shlex
import time
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from rich import box
from rich.table import Table

from ..deployment.describe import Deployment
from ..errors import CoffersError
from ..facts.numa import parse_numactl
from ..model import read_layout
from ..output import error, out, print_json
from ..planner import VARIANTS, Bench, PlanError, PolicyError, Policy, layer_runs, plan, cores_from_facts
from ..resources import schema_path
from ..status import ExitStatus
from ..topology import parse_cpulist
from ..shardmap import tensor_type
from ..units import human_bytes, short_bytes
from .probe import add_connection_arguments, connect_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="compute a host's plan: shard map, threads, CPU lists, strategy")
    p.add_argument("inventory", nargs="?", help="inventory: plan every host from its cached facts (run probe first)")
    p.add_argument("--topology", metavar="NUMACTL.txt", help="captured `numactl --hardware` text (offline plan)")
    p.add_argument("--model", "-m", metavar="MODEL.gguf", help="the GGUF model (only its header is read)")
    p.add_argument("--strategy", choices=(*VARIANTS, "auto"), help="default: shard (or the policy's); the baselines distribute, interleave-all and one-node too")
    p.add_argument("--json", action="store_true", help="print the plan as JSON (schemas/plan.schema.json)")
    p.add_argument("--limit", metavar="PATTERN", help="only hosts matching this pattern (inventory mode)")
    p.add_argument("-i", "--inventory-source", dest="more_sources", action="append", default=[], metavar="SRC",
                   help="another inventory source, read after INVENTORY (may be given more than once)")
    p.add_argument("--vault-password-file", metavar="FILE", help="password for vault-encrypted inventory values (default $ANSIBLE_VAULT_PASSWORD_FILE)")
    p.add_argument("--facts-dir", type=Path, default=Path("facts"), metavar="DIR", help="facts cache (inventory mode; default ./facts)")
    p.add_argument("--files", action="store_true",
                   help="inventory mode: also list every file apply would install, with its sha256 (reads the host, writes nothing)")
    p.add_argument("--offline", action="store_true",
                   help="inventory mode: connect to no host (no difference from what is deployed; models must be local)")
    add_connection_arguments(p)
    g = p.add_argument_group("policy (the inventory's coffers: variables)")
    g.add_argument("--nodes", help="restrict to these node ids, e.g. 0,1")
    g.add_argument("--reserve-cpus", help='CPUs kept for other work, e.g. "0-1"')
    g.add_argument("--reserve-memory-mb", type=int, help="MiB kept free on every node")
    g.add_argument("--headroom-percent", type=float, help="percent of each node's free memory kept free (default 10)")
    g.add_argument("--context-length", type=int, help="tokens of context per slot (default 4096)")
    g.add_argument("--parallel", type=int, help="slots (default 1)")
    g.add_argument("--kv-cache-type", help="f16 (default), q8_0, q4_0, ...")
    g.add_argument("--port", type=int, help="service port (replicate: the front-end; its instances on port+1, port+2, ...)")
    f = p.add_argument_group("facts and measurements")
    f.add_argument("--bench", metavar="FILE", help='a numa-shard-bench --json result, or {"node_bandwidth_gbps": {"0": 80}, "strategy_tokens_per_s": {"shard": 9.5}}')
    f.add_argument("--bench-results", type=Path, metavar="DIR",
                   help="inventory mode: each host's result from this bench run or results directory (default results/latest when present; --bench wins)")
    f.add_argument("--tune-results", type=Path, metavar="DIR", default=Path("results/tune"),
                   help="tune records that decide strategy auto (default results/tune)")
    f.add_argument("--siblings", metavar="FILE", help="SMT sibling groups, one CPU list a line (sysfs thread_siblings_list)")
    f.add_argument("--weighted-interleave", action="store_true", help="the host's kernel offers weighted interleave")
    p.set_defaults(func=run)


def policy_vars(args: argparse.Namespace) -> dict[str, Any]:
    """The command-line flags as a `coffers:` mapping, so one validator checks both."""
    v: dict[str, Any] = {}
    if args.strategy:
        v["strategy"] = args.strategy
    if args.nodes is not None:
        try:
            v["nodes"] = parse_cpulist(args.nodes)
        except ValueError as e:
            raise PolicyError(f"--nodes: {e}") from None
    for name in ("reserve_cpus", "reserve_memory_mb", "headroom_percent", "context_length", "parallel", "kv_cache_type"):
        value = getattr(args, name)
        if value is not None:
            v[name] = value
    if args.port is not None:
        v["service"] = {"port": args.port}
    return v


def read_siblings(path: str) -> dict[int, int]:
    lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    try:
        return cores_from_facts(lines) or {}
    except ValueError as e:
        raise PolicyError(f"{path}: {e}") from None


def read_bench(path: str) -> Bench:
    try:
        return Bench.from_json(json.loads(Path(path).read_text()))
    except json.JSONDecodeError as e:
        raise PolicyError(f"{path}:{e.lineno}:{e.colno}: not JSON: {e.msg}") from None
    except (ValueError, AttributeError, TypeError, KeyError, IndexError) as e:
        raise PolicyError(f"{path}: not a bench result this version reads: {type(e).__name__}: {e}") from None


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_path("plan").read_text()))


def validate_plan_json(doc: dict[str, Any]) -> None:
    """Raise if `doc` breaks schemas/plan.schema.json (a bug here, never the user's input)."""
    problems = sorted(_validator().iter_errors(doc), key=lambda e: list(e.path))
    if problems:
        raise AssertionError("plan JSON breaks its schema: " + "; ".join(f"{list(p.path)}: {p.message}" for p in problems[:5]))


def run(args: argparse.Namespace) -> ExitStatus:
    if args.files and (args.offline or not args.inventory or args.topology is not None):
        error("--files needs INVENTORY and a connection to each host (not --offline, not --topology)")
        return ExitStatus.USAGE
    if args.inventory and args.topology is None:
        return run_inventory(args)
    if args.topology is None or args.model is None:
        error("give INVENTORY, or --topology NUMACTL.txt and --model MODEL.gguf")
        return ExitStatus.USAGE
    if args.bench_results is not None:
        error("--bench-results needs INVENTORY (host names); offline, give one host's result: --bench DIR/HOST.json")
        return ExitStatus.USAGE
    from ..deployment.describe import describe
    from ..deployment.inputs import ModelSource, checked_coffers

    try:
        coffers = checked_coffers(policy_vars(args))
        policy = Policy.from_vars(coffers)
        bench = read_bench(args.bench) if args.bench else None
        siblings = read_siblings(args.siblings) if args.siblings else None
        text = Path(args.topology).read_text()
        topo = parse_numactl(text, source=args.topology)
        layout = read_layout(args.model)
        result = plan(topo, layout, bench, policy, cores=siblings)
        dep = describe("offline", result, ModelSource(str(args.model), Path(args.model)), coffers,
                       kernel_weighted_interleave=args.weighted_interleave)
    except OSError as e:
        error(f"{e.filename}: {e.strerror}")
        return ExitStatus.ERROR
    except UnicodeDecodeError:
        error(f"{args.topology}: not text: not numactl --hardware output")
        return ExitStatus.ERROR
    if args.json:
        print_json(plan_json(dep))
    else:
        show(dep)
    return ExitStatus.SUCCESS


def plan_json(dep: Deployment, deployed: dict[str, Any] | None = None, *, with_deployed: bool = False,
              files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One host's `plan --json` document: the plan, its deployment, and (inventory mode)
    what the host recorded at its last apply and (--files) every file apply installs."""
    doc = dep.plan.to_json()
    doc["warnings"] = list(dep.plan.warnings)
    doc["deployment"] = dep.to_json()
    if with_deployed:
        doc["deployed"] = deployed
    if files is not None:
        doc["files"] = files
    validate_plan_json(doc)
    return doc


def recorded(host: Any, conn: Any) -> dict[str, Any] | None:
    """The description the host recorded at its last apply (None: never applied)."""
    from ..deployment.apply import RECORD

    path = f"{str(host.vars.get('state_dir', '/var/lib/coffers')).rstrip('/')}/{RECORD}"
    try:
        doc = json.loads(conn.read(path))
    except FileNotFoundError:
        return None
    except ValueError:
        return {"unreadable": path}
    return doc if isinstance(doc, dict) else {"unreadable": path}


def drift(now: dict[str, Any], then: dict[str, Any] | None) -> dict[str, Any] | None:
    """What differs between the description computed now and the one the host recorded."""
    if then is None:
        return None
    from ..deployment.diff import changes

    return {"fingerprint": then.get("fingerprint"), "diff": changes(then, now)}


def cached_facts(facts_dir: Path, host: str, inventory: str) -> tuple[dict[str, Any], Path]:
    """A host's facts from the cache `probe` fills (inventory mode reads no facts from hosts)."""
    from ..facts.cache import cache_file

    path = cache_file(facts_dir, host)
    try:
        return json.loads(path.read_text()), path
    except OSError:
        raise PlanError(f"no cached facts in {path}: run `coffers-provision probe {inventory}` first") from None
    except ValueError as e:
        raise PlanError(f"{path}: not JSON: {e}") from None


def run_inventory(args: argparse.Namespace) -> ExitStatus:
    """Every selected host's deployment from its cached facts and its `coffers:` vars, with
    the difference from what the host recorded at its last apply (one read per host;
    --offline: no connection, no difference)."""
    from ..bench.planning import measured_results
    from ..deployment.apply import default_play_file
    from ..deployment.files import installed_files
    from ..engine.role import load_play
    from ..deployment.host import Sources, deployment_for
    from ..facts.cache import max_age_of
    from ..fanout import UNREACHABLE, run_hosts
    from ..inventory import load_inventory

    from ..vault import default_secret

    inv = load_inventory([args.inventory, *args.more_sources], vault_secret=default_secret(args.vault_password_file))
    hosts = inv.select(args.limit)
    bench = read_bench(args.bench) if args.bench else None
    sources = Sources(bench_results=None if bench else measured_results(args.bench_results), bench=bench, overrides=policy_vars(args),
                      tune_dir=args.tune_results)
    play = load_play(default_play_file()) if args.files else None  # read once for every host

    def one(host: Any, conn: Any) -> dict[str, Any]:
        facts, path = cached_facts(args.facts_dir, host.name, args.inventory)
        dep, src = deployment_for(host, facts, conn, sources)
        if time.time() - facts.get("probed_at_epoch", 0) > max_age_of(host):
            dep = replace(dep, plan=replace(dep.plan, warnings=dep.plan.warnings + (f"facts in {path} are older than facts_max_age_s: run probe",)))
        then = recorded(host, conn) if conn is not None else None
        files = installed_files(play, host, conn, facts, dep, src) if play is not None and conn is not None else None
        doc = plan_json(dep, drift(dep.to_json(), then), with_deployed=conn is not None, files=files)
        return {"dep": dep, "doc": doc}

    docs: dict[str, Any] = {}
    failed = unreachable = 0
    if args.offline:
        outcomes = []
        for host in hosts:
            try:
                outcomes.append((host.name, "ok", one(host, None), None))
            except CoffersError as e:
                outcomes.append((host.name, "failed", None, str(e)))
    else:
        ran = run_hosts(hosts, one, forks=args.forks, options=connect_options(args, inv), label="plan", progress=False)
        outcomes = [(o.host, "unreachable" if o.status == UNREACHABLE else ("ok" if o.value is not None else "failed"), o.value, o.error)
                    for o in ran]
    for name, status, value, why in outcomes:
        if status != "ok":
            failed += status == "failed"
            unreachable += status == "unreachable"
            docs[name] = {"error": why} if status == "failed" else {"unreachable": why}
            if not args.json:
                error(f"{name}: {'unreachable: ' if status == 'unreachable' else ''}{why}")
            continue
        docs[name] = value["doc"]
        if not args.json:
            out.rule(name)
            show(value["dep"], value["doc"].get("deployed"), connected=not args.offline, files=value["doc"].get("files"))
    if args.json:
        print_json({"hosts": docs})
    return ExitStatus.HOSTS_UNREACHABLE if unreachable else ExitStatus.ERROR if failed else ExitStatus.SUCCESS


def show(dep: Deployment, deployed: dict[str, Any] | None = None, *, connected: bool = False,
         files: list[dict[str, Any]] | None = None) -> None:
    p = dep.plan
    lay = p.layout
    asked = f" (asked: {p.requested_strategy})" if p.requested_strategy != p.strategy else ""
    out.print(f"[bold]strategy:[/] {p.strategy}{asked}   model: {lay.source} ({lay.architecture}, "
              f"{len(lay.layers)} layers, {human_bytes(lay.total_bytes)})", markup=True)
    out.print(f"[bold]GGML_NUMA_SHARD_MAP:[/] {p.shard_map or '(none: the kernel memory policy places pages)'}", markup=True)
    out.print(f"KV cache: {human_bytes(p.kv_bytes)} per instance ({p.kv_bytes_per_token} bytes/token)")

    nt = Table(title="nodes (bytes)", box=box.SIMPLE, padding=(0, 1), collapse_padding=True, show_edge=False)
    for col in ("node", "role", "free", "headroom", "reserved", "KV", "weights", "left", "speed"):
        nt.add_column(col, justify="left" if col == "role" else "right", no_wrap=True)
    for n in p.nodes:
        left = None if n.limit is None or n.free == 0 else n.limit - n.kv - n.weights
        nt.add_row(
            str(n.id), n.role, "?" if n.free is None else short_bytes(n.free), short_bytes(n.headroom),
            short_bytes(n.reserved), short_bytes(n.kv), short_bytes(n.weights),
            "" if left is None else short_bytes(left), f"{n.speed:g}" if n.speed else "",
        )
    out.print(nt)
    if p.layer_nodes:
        lt = Table(title="layers", box=box.SIMPLE, padding=(0, 1), collapse_padding=True, show_edge=False)
        for col in ("layers", "node", "bytes"):
            lt.add_column(col, justify="right", no_wrap=True)
        for first, last, node, b in layer_runs(p):
            lt.add_row(str(first) if first == last else f"{first}-{last}", str(node), short_bytes(b))
        layerless = [t for t in lay.tensors if t.layer is None]
        embed = sum(t.n_bytes for t in layerless if tensor_type(t.name) == "embed")
        if p.other_node is not None:
            lt.add_row("output, norms", str(p.other_node), short_bytes(sum(t.n_bytes for t in layerless) - embed))
        if p.embed_node is not None:
            lt.add_row("embedding", str(p.embed_node), short_bytes(embed))
        out.print(lt)
    it = Table(title="instances", box=box.SIMPLE, padding=(0, 1), collapse_padding=True, show_edge=False)
    for col in ("name", "port", "CPUAffinity", "-t", "-tb", "--numa", "NUMAPolicy", "weights on"):
        it.add_column(col, no_wrap=col != "CPUAffinity")
    for i in p.instances:
        it.add_row(
            i.name, str(i.port), i.cpu_affinity or "?", str(i.threads or "?"), str(i.threads_batch or "?"), i.numa or "",
            f"{i.numa_policy} {','.join(map(str, i.numa_mask))}" if i.numa_policy else "", ",".join(map(str, i.memory_nodes)),
        )
    out.print(it)
    for svc in dep.services:
        out.print(f"[bold]{svc.unit}[/] on {svc.host}:{svc.port}", markup=True)
        for k, v in svc.environment:
            out.print(f"  env {k}={'********' if v in dep.secrets else v}", markup=False)
        for argv in svc.pre:
            out.print(f"  pre {shlex.join(argv)}", markup=False)
        out.print(f"  run {shlex.join(svc.argv)}", markup=False)
    for f in files or ():
        out.print(f"  {f['kind']:<5} {f['mode'] or '    '} {f['sha256'][:16]}  {f['path']}", markup=False)
    if connected:
        if deployed is None:
            out.print("deployed: nothing recorded on the host (never applied)")
        elif not deployed["diff"]:
            out.print(f"deployed: {deployed['fingerprint']}, the same as this plan")
        else:
            out.print(f"deployed: {deployed['fingerprint']}; `apply` would change:")
            for line in deployed["diff"]:
                out.print(f"  {line}", markup=False)
    for r in p.reasons:
        out.print(f"[dim]why: {r}[/]", markup=True)
    for w in p.warnings:
        out.print(f"[yellow]warning:[/] {w}", markup=True)
