"""`bench INVENTORY`: numa-shard-bench on every host into the results store, then the report.

    bench INVENTORY [--limit P] [--serial] [--size-mb N] [--plot] [--json] ...
    bench report [RUN] [--plot] [--json]
    bench compare RUN_A RUN_B [--threshold PCT] [--all] [--json]

RUN is a run id, a run directory, or `latest` (the default). docs/bench.md has the details.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..connect import ConnectionPool
from ..engine.role import RoleError
from ..facts.cache import DEFAULT_FACTS_DIR
from ..fanout import HostOutcome, counts, exit_status, run_hosts
from ..inventory import Host
from ..output import diagnostics, err, error, out, print_json
from ..status import ExitStatus
from .probe import add_fleet_arguments, connect_options, select_hosts

MODES = ("report", "compare")


def register(sub: argparse._SubParsersAction) -> None:
    from ..bench.analysis import ASYMMETRY_TOLERANCE, NODE_OUTLIER, REGRESSION
    from ..bench.store import DEFAULT_RESULTS_DIR

    p = sub.add_parser(
        "bench",
        help="run numa-shard-bench fleet-wide and store the results; `bench report`, `bench compare A B`",
        usage="%(prog)s INVENTORY [options] | report [RUN] | compare RUN_A RUN_B",
        description="Run numa-shard-bench on every host (installing it when missing or stale), store the results "
        "under --results, and print the fleet report. `bench report [RUN]` shows a stored run; "
        "`bench compare RUN_A RUN_B` lists the figures that got worse from A to B.",
    )
    add_fleet_arguments(p)
    p.add_argument("runs", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, metavar="DIR", help=f"the results store (default ./{DEFAULT_RESULTS_DIR})")
    p.add_argument("--json", action="store_true", help="print the run, report or comparison as JSON")
    p.add_argument("--plot", action="store_true", help="write a heatmap per host and fleet.png next to the results")
    p.add_argument("--metrics-dir", type=Path, metavar="DIR", help="also write coffers_bench.prom there (node_exporter textfile collector)")
    p.add_argument("--outlier-threshold", type=float, default=NODE_OUTLIER * 100, metavar="PCT",
                   help=f"flag a node this many percent below the median of its CPU model and node kind (default {NODE_OUTLIER * 100:g})")
    p.add_argument("--asymmetry-tolerance", type=float, default=ASYMMETRY_TOLERANCE * 100, metavar="PCT",
                   help=f"flag a host whose matrix[a][b] and [b][a] differ by more than this percent (default {ASYMMETRY_TOLERANCE * 100:g})")
    g = p.add_argument_group("running (INVENTORY); unset values come from each host's coffers.bench, then the tool's defaults")
    g.add_argument("--serial", action="store_true", help="one host at a time (hosts that share hardware do not disturb each other)")
    g.add_argument("--size-mb", type=int, metavar="N", help="MiB per array")
    g.add_argument("--iterations", type=int, metavar="N", help="timed runs per kernel (2..100)")
    g.add_argument("--threads", type=int, metavar="N", help="threads per CPU node (default: every CPU)")
    g.add_argument("--timeout", type=float, metavar="S", dest="timeout_s", help="seconds one host's bench may take (default 3600)")
    g.add_argument("--no-install", action="store_true", help="run the numa-shard-bench already installed; do not build it")
    g.add_argument("--facts-dir", type=Path, default=DEFAULT_FACTS_DIR, metavar="DIR", help="facts cache (default ./facts)")
    g.add_argument("--refresh-facts", action="store_true", help="probe even when the cached facts are fresh")
    c = p.add_argument_group("compare")
    c.add_argument("--threshold", type=float, default=REGRESSION * 100, metavar="PCT",
                   help=f"a figure this many percent worse is a regression (default {REGRESSION * 100:g})")
    c.add_argument("--all", action="store_true", help="list every figure, not only regressions")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> ExitStatus:
    if args.inventory == "report":
        if len(args.runs) > 1:
            error("bench report takes at most one RUN")
            return ExitStatus.USAGE
        return run_report(args, args.runs[0] if args.runs else None)
    if args.inventory == "compare":
        if len(args.runs) != 2:
            error("bench compare takes two runs: RUN_A RUN_B")
            return ExitStatus.USAGE
        return run_compare(args, *args.runs)
    if args.runs:
        error(f"unexpected argument(s) after INVENTORY: {' '.join(args.runs)}")
        return ExitStatus.USAGE
    return run_fleet(args)


# -- bench INVENTORY ---------------------------------------------------------------------------


def _bad_numbers(args: argparse.Namespace) -> str | None:
    for flag, value, lo in (("--size-mb", args.size_mb, 1), ("--iterations", args.iterations, 2), ("--threads", args.threads, 1)):
        if value is not None and value < lo:
            return f"{flag} must be at least {lo}, not {value}"
    if args.iterations is not None and args.iterations > 100:
        return f"--iterations must be at most 100, not {args.iterations}"
    if args.timeout_s is not None and not args.timeout_s > 0:
        return f"--timeout must be positive, not {args.timeout_s:g}"
    return _bad_percent(args)


def _bad_percent(args: argparse.Namespace) -> str | None:
    for flag, value in (("--outlier-threshold", args.outlier_threshold), ("--asymmetry-tolerance", args.asymmetry_tolerance),
                        ("--threshold", args.threshold)):  # fmt: skip
        if not 0 < value < 100:
            return f"{flag} must be between 0 and 100 percent, not {value:g}"
    return None


def run_fleet(args: argparse.Namespace) -> ExitStatus:
    from ..bench.run import BenchSettings, bench_host, install_play
    from ..bench.store import HostRecord, StoreError, write_run
    from ..hostlock import locked
    from ..deployment.host import state_dir_of

    if problem := _bad_numbers(args):
        error(problem)
        return ExitStatus.USAGE
    selected = select_hosts(args)
    if isinstance(selected, ExitStatus):
        return selected
    inv, hosts = selected
    try:
        play = None if args.no_install else install_play()
    except RoleError as e:
        diagnostics(e.diagnostics)
        return ExitStatus.ERROR
    overrides = {"size_mb": args.size_mb, "iterations": args.iterations, "threads": args.threads, "timeout_s": args.timeout_s}
    settings = {h.name: BenchSettings().merged(h.coffers.get("bench"), overrides) for h in hosts}

    def bench(host: Host, conn: Any) -> HostRecord:
        return bench_host(host, conn, settings[host.name], play=play, facts_dir=args.facts_dir, refresh_facts=args.refresh_facts)

    one = locked(bench, state_dir_of, "bench")

    started = datetime.now(timezone.utc)
    # Hosts marked serial (or all, with --serial) run one at a time, after the others.
    alone = [h for h in hosts if args.serial or settings[h.name].serial]
    together = [h for h in hosts if h not in alone]
    pool = ConnectionPool(connect_options(args, inv))
    outcomes: dict[str, HostOutcome[HostRecord]] = {}
    try:
        for group, forks in ((together, args.forks), (alone, 1)):
            if group:
                for o in run_hosts(group, one, forks=forks, pool=pool, label="bench --serial" if forks == 1 else "bench", progress=not args.json):
                    outcomes[o.host] = o
    finally:
        pool.close()
    ordered = [outcomes[h.name] for h in hosts]
    records = [o.value if o.ok else HostRecord(o.host, o.status, error=o.error, elapsed_s=o.elapsed) for o in ordered]
    recorded = {"command": "bench", "inventory": str(args.inventory), "limit": args.limit, "serial": args.serial,
                "hosts": {h.name: settings[h.name].to_json() for h in hosts}}  # fmt: skip
    try:
        run_dir = write_run(args.results, records, recorded, started=started, finished=datetime.now(timezone.utc))
    except (OSError, StoreError) as e:
        error(f"storing the results in {args.results}: {e}")
        return ExitStatus.ERROR
    if args.metrics_dir:
        from ..metrics import bench_samples, write

        write(args.metrics_dir, "bench", bench_samples({r.host: r.result for r in records if r.result}))
    status = exit_status(ordered)
    shown = _show_run(args, run_dir)
    if args.json:
        doc = {"run_id": run_dir.name, "dir": str(run_dir), "summary": counts(ordered),
               "hosts": [{"host": r.host, "status": r.status, "error": r.error, "installed": r.installed} for r in records]}  # fmt: skip
        print_json({**doc, **(shown if isinstance(shown, dict) else {})})
    else:
        c = counts(ordered)
        out.print(f"{c['ok']} ok, {c['failed']} failed, {c['unreachable']} unreachable; results in {run_dir}/", markup=False)
    return status if not isinstance(shown, ExitStatus) else max(status, shown)


# -- bench report / compare --------------------------------------------------------------------


def _load(args: argparse.Namespace, ref: str | None) -> Any:
    from ..bench.store import StoreError, load_run, resolve_run

    try:
        return load_run(resolve_run(args.results, ref))
    except StoreError as e:
        error(str(e))
        return ExitStatus.ERROR


def _show_run(args: argparse.Namespace, run_dir: Path) -> dict[str, Any] | ExitStatus:
    """Report (and plot) a stored run: the JSON document with --json, else print the tables."""
    from ..bench.analysis import fleet_report
    from ..bench.report import print_report

    run = _load(args, str(run_dir))
    if isinstance(run, ExitStatus):
        return run
    report = fleet_report(run.results, run.failed(), threshold=args.outlier_threshold / 100, tolerance=args.asymmetry_tolerance / 100)
    doc: dict[str, Any] = {"run_id": run.run_id, "dir": str(run.path), "report": report.to_json(), "plots": []}
    if args.plot:
        from ..bench.plot import plot_run

        doc["plots"] = [str(p) for p in plot_run(run.path, run.results, report)]
    if not args.json:
        print_report(out, report, title=f"bench run {run.run_id}")
        for p in doc["plots"]:
            out.print(f"plot: {p}", markup=False)
    return doc


def run_report(args: argparse.Namespace, ref: str | None) -> ExitStatus:
    if problem := _bad_percent(args):
        error(problem)
        return ExitStatus.USAGE
    run = _load(args, ref)
    if isinstance(run, ExitStatus):
        return run
    shown = _show_run(args, run.path)
    if isinstance(shown, ExitStatus):
        return shown
    if args.json:
        print_json(shown)
    return ExitStatus.SUCCESS


def run_compare(args: argparse.Namespace, ref_a: str, ref_b: str) -> ExitStatus:
    """Exit 0 when nothing regressed, 3 (HOSTS_FAILED) when a host did."""
    from ..bench.analysis import compare
    from ..bench.report import compare_table

    if problem := _bad_percent(args):
        error(problem)
        return ExitStatus.USAGE
    a, b = _load(args, ref_a), _load(args, ref_b)
    for r in (a, b):
        if isinstance(r, ExitStatus):
            return r
    changes = compare(a.results, b.results, args.threshold / 100)
    regressed = sorted({c.host for c in changes if c.regression})
    only = {"only_in_a": sorted(set(a.results) - set(b.results)), "only_in_b": sorted(set(b.results) - set(a.results))}
    if args.json:
        print_json({"a": a.run_id, "b": b.run_id, "threshold": args.threshold / 100, "regressed_hosts": regressed,
                    "changes": [c.to_json() for c in changes if args.all or c.regression], **only})  # fmt: skip
    else:
        title = f"bench compare {a.run_id} -> {b.run_id} (regression: {args.threshold:g}% worse)"
        if regressed or args.all:
            out.print(compare_table(changes, title, all_rows=args.all))
        compared = len({c.host for c in changes})
        out.print(f"{compared} host(s) compared, {len(regressed)} regressed" + (f": {', '.join(regressed)}" if regressed else ""), markup=False)
        for key, hosts in only.items():
            if hosts:
                err.print(f"{key.replace('_', ' ')}: {', '.join(hosts)}", markup=False)
    return ExitStatus.HOSTS_FAILED if regressed else ExitStatus.SUCCESS
