"""`apply INVENTORY`: facts -> plan -> roles on every host, then a recap.

Flags: --check (change nothing, say what would change), --diff (unified diffs of every
file), --limit PATTERN or --limit @RETRY_FILE, --forks N, --json (machine output).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..bench.planning import measured_results
from ..deployment.apply import ApplySettings, apply_host, default_play_file
from ..deployment.host import Sources, state_dir_of
from ..engine.recap import exit_status, print_tasks, recap_table, to_json, write_retry
from ..engine.result import HostReport
from ..engine.role import load_play
from ..engine.runner import Options
from ..facts.cache import DEFAULT_FACTS_DIR
from ..fanout import UNREACHABLE, HostOutcome, run_hosts
from ..hostlock import locked
from ..output import err, error, out, print_json
from ..rollout import Step, batches, format_serial, parse_percent, parse_serial, stop_reason
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
    p.add_argument("--serial", type=_serial, metavar="N|P%[,...]",
                   help="change hosts in batches of N hosts or P%% of them (a list such as 1,5,25%% sizes each batch, the last repeats); "
                        "each batch is healthy before the next starts")
    p.add_argument("--max-fail-percent", type=_percent, metavar="P",
                   help="stop the rollout when more than P%% of a batch failed (default: only when all of it failed)")
    p.set_defaults(func=run)


def _serial(text: str) -> tuple[Step, ...]:
    try:
        return parse_serial(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _percent(text: str) -> float:
    try:
        return parse_percent(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _report(o: HostOutcome[HostReport]) -> HostReport:
    if o.status == UNREACHABLE:
        return HostReport(o.host, unreachable=o.error)
    return o.value if o.value is not None else HostReport(o.host, error=o.error)


def run(args: argparse.Namespace) -> ExitStatus:
    play = load_play(args.play or default_play_file())
    selected = select_hosts(args)
    if isinstance(selected, ExitStatus):
        return selected
    inv, hosts = selected
    sources = Sources(bench_results=measured_results(args.bench_results), tune_dir=args.tune_results,
                      hash_model=True, write_state=not args.check)
    settings = ApplySettings(Options(check=args.check, diff=args.diff), facts_dir=args.facts_dir, refresh_facts=args.refresh_facts,
                             sources=sources)  # fmt: skip
    work = lambda host, conn: apply_host(host, conn, play, settings)  # noqa: E731
    if not args.check:  # --check changes nothing, so it takes no lock
        work = locked(work, state_dir_of, "apply")
    label = "apply --check" if args.check else "apply"
    groups = batches(hosts, args.serial or ())
    reports: list[HostReport] = []
    stopped = None
    for n, batch in enumerate(groups, 1):
        outcomes = run_hosts(batch, work, forks=args.forks, options=connect_options(args, inv),
                             label=label if len(groups) == 1 else f"{label} batch {n}/{len(groups)}",
                             progress=not args.json, failed=lambda report: report.failed)  # fmt: skip
        done = [_report(o) for o in outcomes]
        reports += done
        stopped = stop_reason(sum(1 for r in done if r.failed or r.unreachable is not None), len(done), args.max_fail_percent)
        if stopped is not None and n < len(groups):
            stopped = f"rollout stopped after batch {n}/{len(groups)}: {stopped}"
            reports += [HostReport(h.name, not_reached=stopped) for b in groups[n:] for h in b]
            break
        stopped = None
    status = exit_status(reports)
    if status is not ExitStatus.SUCCESS and not args.check:
        write_retry(args.retry_file, reports)
    rollout = {"serial": format_serial(args.serial or ()), "max_fail_percent": args.max_fail_percent,
               "batches": [[h.name for h in b] for b in groups], "stopped": stopped}  # fmt: skip
    if args.json:
        print_json({**to_json(reports, check=args.check), "rollout": rollout})
        return status
    print_tasks(out, reports, check=args.check, diff=args.diff, verbose=args.verbose)
    out.print(recap_table(reports, check=args.check))
    if stopped:
        err.print(stopped, markup=False)
    if status is not ExitStatus.SUCCESS and not args.check:
        err.print(f"failed, unreachable and not reached hosts listed in {args.retry_file}: re-run them with --limit @{args.retry_file}", markup=False)
    return status
