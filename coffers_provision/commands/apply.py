"""`apply INVENTORY`: facts -> plan -> roles on every host, then a recap.

Flags: --check (change nothing, say what would change), --diff (unified diffs of every
file), --limit PATTERN or --limit @RETRY_FILE, --forks N, --json (machine output).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..bench.planning import measured_results
from ..deployment.apply import ApplySettings, apply_host, default_play_file
from ..deployment.host import Sources
from ..engine.recap import exit_status, print_tasks, read_retry, recap_table, to_json, write_retry
from ..engine.result import HostReport
from ..engine.role import load_play
from ..engine.runner import Options
from ..facts.cache import DEFAULT_FACTS_DIR
from ..fanout import UNREACHABLE, run_hosts
from ..output import err, error, out, print_json
from ..status import ExitStatus
from .probe import add_fleet_arguments, connect_options, select_hosts

DEFAULT_RETRY = Path("apply.retry")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("apply", help="plan and deploy: native tools, units carrying the plan, restarts (roles/site.yml)")
    add_fleet_arguments(p)
    p.add_argument("--check", action="store_true", help="change nothing; report what would change")
    p.add_argument("--diff", action="store_true", help="show unified diffs of every file that changes (units too)")
    p.add_argument("--json", action="store_true", help="print per-host counts and task results as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="list every task, ok ones too")
    p.add_argument("--facts-dir", type=Path, default=DEFAULT_FACTS_DIR, metavar="DIR", help="facts cache (default ./facts)")
    p.add_argument("--refresh-facts", action="store_true", help="probe even when the cached facts are fresh")
    p.add_argument("--bench-results", type=Path, metavar="DIR", help="plan from this bench run or results directory (default results/latest when present)")
    p.add_argument("--tune-results", type=Path, default=Path("results/tune"), metavar="DIR",
                   help="tune records that decide strategy auto (default results/tune)")
    p.add_argument("--play", type=Path, metavar="FILE", help="the play to run (default: the shipped roles/site.yml)")
    p.add_argument("--retry-file", type=Path, default=DEFAULT_RETRY, metavar="FILE",
                   help=f"where failed and unreachable hosts are listed after a run (default {DEFAULT_RETRY}); re-run them with --limit @FILE")
    p.set_defaults(func=run)


def _limit_from_file(args: argparse.Namespace) -> ExitStatus | None:
    """`--limit @FILE`: the host names listed in FILE (a retry file), as a host pattern."""
    if not args.limit or not args.limit.startswith("@"):
        return None
    path = Path(args.limit[1:])
    try:
        names = read_retry(path)
    except OSError as e:
        error(f"--limit {args.limit}: {e.strerror}")
        return ExitStatus.USAGE
    if not names:
        error(f"--limit {args.limit}: the file lists no hosts")
        return ExitStatus.USAGE
    args.limit = ":".join(names)
    return None


def run(args: argparse.Namespace) -> ExitStatus:
    if (status := _limit_from_file(args)) is not None:
        return status
    play = load_play(args.play or default_play_file())
    selected = select_hosts(args)
    if isinstance(selected, ExitStatus):
        return selected
    inv, hosts = selected
    sources = Sources(bench_results=measured_results(args.bench_results), tune_dir=args.tune_results,
                      hash_model=True, write_state=not args.check)
    settings = ApplySettings(Options(check=args.check, diff=args.diff), facts_dir=args.facts_dir, refresh_facts=args.refresh_facts,
                             sources=sources)  # fmt: skip
    outcomes = run_hosts(
        hosts,
        lambda host, conn: apply_host(host, conn, play, settings),
        forks=args.forks,
        options=connect_options(args, inv),
        label="apply --check" if args.check else "apply",
        progress=not args.json,
        failed=lambda report: report.failed,
    )
    reports = []
    for o in outcomes:
        if o.status == UNREACHABLE:
            reports.append(HostReport(o.host, unreachable=o.error))
        elif o.value is None:
            reports.append(HostReport(o.host, error=o.error))
        else:
            reports.append(o.value)
    status = exit_status(reports)
    if status is not ExitStatus.SUCCESS and not args.check:
        write_retry(args.retry_file, reports)
    if args.json:
        print_json(to_json(reports, check=args.check))
        return status
    print_tasks(out, reports, check=args.check, diff=args.diff, verbose=args.verbose)
    out.print(recap_table(reports, check=args.check))
    if status is not ExitStatus.SUCCESS and not args.check:
        err.print(f"failed or unreachable hosts listed in {args.retry_file}: re-run them with --limit @{args.retry_file}", markup=False)
    return status
