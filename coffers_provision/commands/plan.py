"""`plan --topology NUMACTL.txt --model MODEL.gguf`: an offline plan for one host."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from rich import box
from rich.table import Table

from ..errors import CoffersError
from ..facts.numa import parse_numactl
from ..model import GGUFError, read_layout
from ..output import error, out, print_json
from ..planner import STRATEGIES, Bench, Plan, PlanError, Policy, PolicyError, plan, plan_for_host, siblings_from_facts
from ..resources import schema_path
from ..status import ExitStatus
from ..topology import TopologyError, parse_cpulist
from ..shardmap import tensor_type
from .model import add_connect_arguments, connect_kwargs, human_bytes, short_bytes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="compute a host's plan: shard map, threads, CPU lists, strategy")
    p.add_argument("inventory", nargs="?", help="inventory: plan every host from its cached facts (run probe first)")
    p.add_argument("--topology", metavar="NUMACTL.txt", help="captured `numactl --hardware` text (offline plan)")
    p.add_argument("--model", "-m", metavar="MODEL.gguf", help="the GGUF model (only its header is read)")
    p.add_argument("--strategy", choices=STRATEGIES, help="default: shard (or the policy's)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON (schemas/plan.schema.json)")
    p.add_argument("--limit", metavar="PATTERN", help="only hosts matching this pattern (inventory mode)")
    p.add_argument("--facts-dir", type=Path, default=Path("facts"), metavar="DIR", help="facts cache (inventory mode; default ./facts)")
    add_connect_arguments(p)
    g = p.add_argument_group("policy (the inventory's coffers: variables)")
    g.add_argument("--nodes", help="restrict to these node ids, e.g. 0,1")
    g.add_argument("--reserve-cpus", help='CPUs kept for other work, e.g. "0-1"')
    g.add_argument("--reserve-memory-mb", type=int, help="MiB kept free on every node")
    g.add_argument("--headroom-percent", type=float, help="percent of each node's free memory kept free (default 10)")
    g.add_argument("--context-length", type=int, help="tokens of context per slot (default 4096)")
    g.add_argument("--parallel", type=int, help="slots (default 1)")
    g.add_argument("--kv-cache-type", help="f16 (default), q8_0, q4_0, ...")
    g.add_argument("--port", type=int, help="service port (replicate: port, port+1, ...)")
    f = p.add_argument_group("facts and measurements")
    f.add_argument("--bench", metavar="FILE", help='a numa-shard-bench --json result, or {"node_bandwidth_gbps": {"0": 80}, "strategy_tokens_per_s": {"shard": 9.5}}')
    f.add_argument("--bench-results", type=Path, metavar="DIR",
                   help="inventory mode: each host's result from this bench run or results directory (default results/latest when present; --bench wins)")
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


def read_siblings(path: str) -> dict[int, tuple[int, ...]]:
    lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    try:
        return siblings_from_facts(lines) or {}
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
    if args.inventory and args.topology is None:
        return run_inventory(args)
    if args.topology is None or args.model is None:
        error("give INVENTORY, or --topology NUMACTL.txt and --model MODEL.gguf")
        return ExitStatus.USAGE
    if args.bench_results is not None:
        error("--bench-results needs INVENTORY (host names); offline, give one host's result: --bench DIR/HOST.json")
        return ExitStatus.USAGE
    try:
        policy = Policy.from_vars(policy_vars(args))
        bench = read_bench(args.bench) if args.bench else None
        siblings = read_siblings(args.siblings) if args.siblings else None
        text = Path(args.topology).read_text()
        topo = parse_numactl(text, source=args.topology)
        layout = read_layout(args.model)
        result = plan(topo, layout, bench, policy, siblings=siblings, weighted_interleave=args.weighted_interleave)
    except OSError as e:
        error(f"{e.filename}: {e.strerror}")
        return ExitStatus.ERROR
    except UnicodeDecodeError:
        error(f"{args.topology}: not text: not numactl --hardware output")
        return ExitStatus.ERROR
    except (TopologyError, GGUFError, PolicyError, PlanError) as e:
        error(str(e))
        return ExitStatus.ERROR
    if args.json:
        doc = result.to_json()
        validate_plan_json(doc)
        print_json(doc)
    else:
        show(result)
    return ExitStatus.SUCCESS


def run_inventory(args: argparse.Namespace) -> ExitStatus:
    """Every selected host's plan from its cached facts and its `coffers:` vars.

    The model's header is read from `coffers.model_local` (a local copy, relative to the
    inventory) or from `coffers.model` on the host itself, once per distinct file.
    """
    from ..bench.planning import load_bench_for_host, measured_results, with_note
    from ..bench.store import StoreError
    from ..facts.cache import cache_file, max_age_of
    from ..inventory import InventoryError, PatternError, load_inventory
    from .model import load as load_model

    try:
        inv = load_inventory(args.inventory)
        hosts = inv.select(args.limit)
        overrides = policy_vars(args)
        bench = read_bench(args.bench) if args.bench else None
        measured_dir = None if bench else measured_results(args.bench_results)
    except InventoryError as e:
        for d in e.diagnostics:
            error(str(d))
        return ExitStatus.ERROR
    except (PatternError, PolicyError, StoreError) as e:
        error(str(e))
        return ExitStatus.ERROR
    layouts: dict[str, Any] = {}
    docs: dict[str, Any] = {}
    failed = 0
    for host in hosts:
        try:
            path = cache_file(args.facts_dir, host.name)
            try:
                facts = json.loads(path.read_text())
            except OSError:
                raise PlanError(f"no cached facts in {path}: run `coffers-provision probe {args.inventory}` first") from None
            except ValueError as e:
                raise PlanError(f"{path}: not JSON: {e}") from None
            if not isinstance(facts, dict) or not isinstance(facts.get("numa") or facts.get("topology"), dict):
                raise PlanError(f"{path}: no NUMA topology in these facts (run `coffers-provision probe --refresh`)")
            coffers = host.coffers
            policy = Policy.from_vars({**coffers, **overrides, "service": {**(coffers.get("service") or {}), **overrides.get("service", {})}})
            if coffers.get("model_local"):
                target = str(Path(args.inventory).parent / coffers["model_local"])
                where = None
            elif coffers.get("model"):
                target, where = f"{host.name}:{coffers['model']}", args.inventory
            else:
                raise PlanError("coffers.model: no model set for this host")
            if target not in layouts:
                layouts[target] = load_model(target, where, connect_kwargs(args))
            measured = load_bench_for_host(measured_dir, host.name)
            try:
                result = with_note(plan_for_host(facts, layouts[target], measured.bench if measured else bench, policy), measured)
            except TopologyError as e:
                raise PlanError(f"{path}: {e}") from None
            except CoffersError:
                raise
            except (KeyError, TypeError, AttributeError, IndexError, ValueError) as e:  # facts of the wrong shape
                raise PlanError(f"{path}: facts this version cannot read ({type(e).__name__}: {e}); run probe --refresh") from None
            probed_at = facts.get("probed_at_epoch", 0)
            if not isinstance(probed_at, (int, float)) or time.time() - probed_at > max_age_of(host):
                result = replace(result, warnings=result.warnings + (f"facts in {path} are older than facts_max_age_s: run probe",))
        except (GGUFError, PolicyError, PlanError, TopologyError, StoreError, KeyError, TypeError) as e:
            failed += 1
            docs[host.name] = {"error": str(e)}
            if not args.json:
                error(f"{host.name}: {e}")
            continue
        docs[host.name] = result.to_json()
        if not args.json:
            out.rule(host.name)
            show(result)
    if args.json:
        for doc in docs.values():
            if "error" not in doc:
                validate_plan_json(doc)
        print_json({"hosts": docs})
    return ExitStatus.ERROR if failed else ExitStatus.SUCCESS


def layer_runs(p: Plan) -> list[tuple[int, int, int, int]]:
    """(first, last, node, bytes) runs of consecutive layers on one node."""
    runs: list[list[int]] = []
    for layer in sorted(p.layer_nodes):
        node, b = p.layer_nodes[layer], p.layout.layer_bytes[layer]
        if runs and runs[-1][2] == node and runs[-1][1] == layer - 1:
            runs[-1][1] = layer
            runs[-1][3] += b
        else:
            runs.append([layer, layer, node, b])
    return [tuple(r) for r in runs]  # type: ignore[misc]


def show(p: Plan) -> None:
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
    for i in p.instances:
        out.print(f"{i.name}: llama-server {' '.join(i.args)}" + (f"  (map {i.shard_map})" if p.strategy == "replicate" else ""))
    for r in p.reasons:
        out.print(f"[dim]why: {r}[/]", markup=True)
    for w in p.warnings:
        out.print(f"[yellow]warning:[/] {w}", markup=True)
