"""`tune INVENTORY`: measure every placement's tokens/s on each host, keep the fastest.

    tune INVENTORY [--limit P] [--strategies LIST] [--requests N] [--n-predict N]
                   [--prompt-tokens N] [--results DIR] [--json] [--plot]

docs/tune.md has the procedure. Records go to DIR/RUN/HOST.json (default results/tune);
`plan` and `apply` with `strategy: auto` then pick the fastest for the same hardware and model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CoffersError
from ..facts.cache import DEFAULT_FACTS_DIR
from ..fanout import UNREACHABLE, run_hosts
from ..output import err, error, out, print_json
from ..status import ExitStatus, fleet_status
from .probe import add_fleet_arguments, connect_options, select_hosts


def _variants(text: str) -> tuple[str, ...]:
    from ..planner import VARIANTS

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown) or 'nothing'}: not a variant (choose from {', '.join(VARIANTS)})")
    return names


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least 1")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    from ..planner import VARIANTS
    from ..bench.tuned import TUNE_DIR

    p = sub.add_parser("tune", help="deploy each strategy and baseline in turn, measure tokens/s, leave the fastest deployed",
                       description="On each host: deploy every feasible strategy and the baselines in turn, measure "
                       "llama-server's own prompt and generation tokens/s, store one record per variant, and leave the "
                       "fastest deployed. `strategy: auto` then prefers these records.")
    add_fleet_arguments(p)
    p.add_argument("--strategies", type=_variants, default=VARIANTS, metavar="LIST", help=f"variants to measure (default {','.join(VARIANTS)})")
    p.add_argument("--requests", type=_positive, default=5, metavar="N", help="timed completions per variant (default 5)")
    p.add_argument("--n-predict", type=_positive, default=32, metavar="N", help="tokens generated per completion (default 32)")
    p.add_argument("--prompt-tokens", type=_positive, default=64, metavar="N", help="about this many tokens of prompt (default 64)")
    p.add_argument("--results", type=Path, default=TUNE_DIR, metavar="DIR", help=f"where records are stored (default ./{TUNE_DIR})")
    p.add_argument("--json", action="store_true", help="print every host's variants and records as JSON")
    p.add_argument("--plot", action="store_true", help="write DIR/RUN/tune.png: each host's variants side by side")
    p.add_argument("--metrics-dir", type=Path, metavar="DIR", help="also write coffers_tune.prom there (node_exporter textfile collector)")
    p.add_argument("--facts-dir", type=Path, default=DEFAULT_FACTS_DIR, metavar="DIR", help="facts cache (default ./facts)")
    p.add_argument("--bench-results", type=Path, metavar="DIR", help="bench run to plan node weights from (default results/latest when present)")
    p.add_argument("--play", type=Path, metavar="FILE", help="the play to run (default: the shipped roles/site.yml)")
    p.set_defaults(func=run)


def _table(reports) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    from ..tune.run import ratios

    for r in reports:
        t = Table(title=f"tune {r.host}" + (f": {r.winner} is fastest and deployed" if r.winner else ""))
        for col in ("variant", "generation tokens/s (min-max)", "prompt tokens/s", "vs distribute", "note"):
            t.add_column(col, justify="right" if "tokens" in col or "vs" in col else "left")
        rel = ratios(r)
        for v in r.variants:
            if v.record:
                g, pr = v.record["generation_tokens_per_s"], v.record["prompt_tokens_per_s"]
                t.add_row(v.name, f"{g['median']:.2f} ({g['min']:.2f}-{g['max']:.2f})", f"{pr['median']:.1f}",
                          f"{rel[v.name]:.2f}x" if v.name in rel else "", "fastest" if v.name == r.winner else "")
            else:
                t.add_row(v.name, "", "", "", f"{v.status}: {v.message.splitlines()[0] if v.message else ''}")
        out.print(t)
        if r.error:
            err.print(f"{r.host}: {r.error}", markup=False, highlight=False)


def run(args: argparse.Namespace) -> ExitStatus:
    from ..bench.planning import measured_results
    from ..deployment.apply import ApplySettings, default_play_file
    from ..deployment.host import Sources, state_dir_of
    from ..engine.role import load_play
    from ..bench import tuned as records
    from ..hostlock import locked
    from ..tune.run import TuneReport, TuneSettings, tune_host

    play = load_play(args.play or default_play_file())
    selected = select_hosts(args)
    if isinstance(selected, ExitStatus):
        return selected
    inv, hosts = selected
    sources = Sources(bench_results=measured_results(args.bench_results), hash_model=True)
    settings = TuneSettings(ApplySettings(facts_dir=args.facts_dir, sources=sources), tune_dir=args.results,
                            variants=args.strategies, requests=args.requests, n_predict=args.n_predict, prompt_tokens=args.prompt_tokens)
    run_id = records.run_id()
    work = locked(lambda host, conn: tune_host(host, conn, play, settings, run_id), state_dir_of, "tune")
    outcomes = run_hosts(hosts, work, forks=args.forks,
                         options=connect_options(args, inv), label="tune", progress=not args.json, failed=lambda r: r.failed)
    reports = [o.value if o.value is not None else TuneReport(o.host, error=o.error) for o in outcomes]
    unreachable = sum(o.status == UNREACHABLE for o in outcomes)
    status = fleet_status(sum(r.failed for r in reports) - unreachable, unreachable)
    if args.metrics_dir:
        from ..metrics import tune_samples, write

        write(args.metrics_dir, "tune", tune_samples({r.host: r.to_json() for r in reports}))
    png = None
    if args.plot:
        from ..tune.plot import plot

        try:
            png = plot(reports, args.results / run_id / "tune.png")
        except (OSError, CoffersError) as e:
            error(f"--plot: {e}")
    if args.json:
        print_json({"run_id": run_id, "status": status.name.lower(), "plot": str(png) if png else None,
                    "hosts": {r.host: r.to_json() for r in reports}})
        return status
    _table(reports)
    if png:
        out.print(f"plot: {png}", markup=False)
    return status
