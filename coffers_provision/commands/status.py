"""`status INVENTORY`: what every host runs against its plan, read-only (docs/status.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..fanout import UNREACHABLE, HostOutcome, run_hosts
from ..output import error, out, print_json
from ..status import ExitStatus
from .plan import cached_facts
from .probe import add_connection_arguments, connect_options, select_hosts


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="what every host runs against its plan: drift, health, live placement, kernel hygiene")
    add_fleet_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON (schemas/status.schema.json)")
    p.add_argument("--metrics-dir", type=Path, metavar="DIR", help="also write coffers_status.prom there (node_exporter textfile collector)")
    p.set_defaults(func=run)


def add_fleet_arguments(p: argparse.ArgumentParser) -> None:
    """What `status` and `report` read: the inventory, the facts cache, results, the play."""
    p.add_argument("inventory", help="inventory file, directory or script")
    p.add_argument("--limit", metavar="PATTERN", help="only hosts matching this pattern")
    p.add_argument("-i", "--inventory-source", dest="more_sources", action="append", default=[], metavar="SRC",
                   help="another inventory source, read after INVENTORY (may be given more than once)")
    p.add_argument("--vault-password-file", metavar="FILE", help="password for vault-encrypted inventory values (default $ANSIBLE_VAULT_PASSWORD_FILE)")
    p.add_argument("--facts-dir", type=Path, default=Path("facts"), metavar="DIR", help="facts cache (default ./facts; run probe or apply first)")
    p.add_argument("--bench-results", type=Path, metavar="DIR", help="the bench run the plan reads (default results/latest when present)")
    p.add_argument("--tune-results", type=Path, metavar="DIR", default=Path("results/tune"), help="tune records (default results/tune)")
    p.add_argument("--play", type=Path, metavar="FILE", help="the play apply runs, whose unit templates are compared (default: the shipped roles/site.yml)")
    p.add_argument("--min-placement", type=float, default=90.0, metavar="PERCENT",
                   help="a layer range with fewer of its resident pages on its planned node is misplaced (default 90)")
    add_connection_arguments(p)


def gather(args: argparse.Namespace) -> tuple[list[HostOutcome], ExitStatus | None]:
    """Every selected host's status document, or the exit status after saying what is wrong."""
    from ..bench.planning import measured_results
    from ..deployment.apply import default_play_file
    from ..deployment.host import Sources, deployment_for
    from ..engine.role import load_play
    from ..observe.status import host_status

    if not 0 <= args.min_placement <= 100:
        error(f"--min-placement must be a percentage (0-100), not {args.min_placement:g}")
        return [], ExitStatus.USAGE
    chosen = select_hosts(args)
    if isinstance(chosen, ExitStatus):
        return [], chosen
    inv, hosts = chosen
    play = load_play(args.play or default_play_file())
    sources = Sources(bench_results=measured_results(args.bench_results), tune_dir=args.tune_results)

    def one(host: Any, conn: Any) -> dict[str, Any]:
        facts, _ = cached_facts(args.facts_dir, host.name, args.inventory)
        dep, src = deployment_for(host, facts, conn, sources)
        return host_status(host, conn, play, facts, dep, src, min_share=args.min_placement / 100)

    return run_hosts(hosts, one, forks=args.forks, options=connect_options(args, inv), label="status", progress=False), None


def documents(outcomes: list[HostOutcome]) -> dict[str, Any]:
    """hosts -> status document, or {"unreachable": why} / {"error": why}."""
    return {o.host: o.value if o.ok else {"unreachable" if o.status == UNREACHABLE else "error": o.error} for o in outcomes}


def exit_status(docs: dict[str, Any]) -> ExitStatus:
    """4 when a host is unreachable, 3 on drift, an unhealthy instance, misplaced pages or a
    host that could not be checked, else 0."""
    if any("unreachable" in d for d in docs.values()):
        return ExitStatus.HOSTS_UNREACHABLE
    if any("error" in d or not d["ok"] for d in docs.values()):
        return ExitStatus.HOSTS_FAILED
    return ExitStatus.SUCCESS


def run(args: argparse.Namespace) -> ExitStatus:
    outcomes, bad = gather(args)
    if bad is not None:
        return bad
    docs = documents(outcomes)
    if args.metrics_dir:
        from ..metrics import status_samples, write

        write(args.metrics_dir, "status", status_samples(docs))
    if args.json:
        print_json({"hosts": docs})
    else:
        for o in outcomes:
            show(o, docs[o.host])
    return exit_status(docs)


def _share(inst: dict[str, Any]) -> str:
    ranges = [r for r in ((inst.get("placement") or {}).get("ranges") or []) if r["share"] is not None]
    return ", ".join(f"layers {r['range']}@{r['node']} {r['share']:.0%}" for r in ranges) or "-"


def show(o: HostOutcome, doc: dict[str, Any]) -> None:
    if not o.ok:
        error(f"{o.host}: {'unreachable: ' if o.status == UNREACHABLE else ''}{o.error}")
        return
    verdict = "[green]as planned[/]" if doc["ok"] else "[red]not as planned[/]"
    out.print(f"[bold]{o.host}[/]: {verdict}, strategy {doc['strategy']}, {doc['topology']}", markup=True, highlight=False)
    d = doc["drift"]
    out.print(f"  deployed {d['deployed'] or '-'}, planned {d['planned']}" + ("" if doc["systemd"] else "  (systemd is not PID 1)"),
              markup=False, highlight=False)
    for line in d["diff"]:
        out.print(f"  drift: {line}", markup=False, highlight=False)
    for inst in doc["instances"]:
        last = inst["last_check"]
        tps = f", last check {last['generation_tokens_per_s']:.1f} tokens/s" if last and last.get("generation_tokens_per_s") is not None else ""
        health = {True: "healthy", False: "UNHEALTHY", None: "not asked"}[inst["health"]["ok"]]
        out.print(f"  {inst['unit']}: {inst['state'] or '-'}, {health}{tps}; placement: {_share(inst)}", markup=False, highlight=False)
    k = doc["kernel"]
    free = " ".join(f"{n['node']}:{n['free_bytes'] // 2**20}M" for n in k["nodes"])
    out.print(f"  kernel: numa_balancing {k['numa_balancing']}, THP {k['thp']}, swap used {k['swap_used_bytes'] // 2**20} MiB, free {free}",
              markup=False, highlight=False)
    prov = doc.get("provenance") or {}
    if prov:
        inv = prov.get("inventory") or {}
        decided = "; ".join(f"{k} run {v['run_id']}" for k, v in prov.items() if k in ("bench", "tune") and v) or "no measurements"
        commit = f"inventory commit {inv['commit'][:12]}{' (dirty)' if inv.get('dirty') else ''}" if inv.get("commit") else "inventory not in git"
        out.print(f"  deployed by {prov['tool']['name']} {prov['tool']['version']}; decided by {decided}; {commit}", markup=False, highlight=False)
    for p in doc["problems"]:
        out.print(f"  [red]problem:[/] {p}", markup=True, highlight=False)
    for w in doc["warnings"]:
        out.print(f"  [yellow]warning:[/] {w}", markup=True, highlight=False)
