"""`report INVENTORY --html OUT.html`: status, bench and tune results as one static page (docs/status.md)."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..bench.store import DEFAULT_RESULTS_DIR, LATEST, RUN_FILE, StoreError, load_run, resolve_run
from ..errors import CoffersError
from ..facts.cache import cache_file
from ..output import error
from ..status import ExitStatus
from .status import add_fleet_arguments, documents, exit_status, gather


class ReportError(CoffersError):
    """The page cannot be written; the message names the file."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="the fleet as one static HTML page: table, bandwidth heatmaps, tune charts")
    add_fleet_arguments(p)
    p.add_argument("--html", type=Path, required=True, metavar="OUT.html", help="where to write the page")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, metavar="DIR",
                   help=f"bench results: a run, or a results directory whose latest run is shown (default {DEFAULT_RESULTS_DIR})")
    p.add_argument("--title", default="coffers-provision fleet", help="the page's title")
    p.set_defaults(func=run)


def _facts(facts_dir: Path, host: str) -> dict[str, Any] | None:
    try:
        return json.loads(cache_file(facts_dir, host).read_text())
    except (OSError, ValueError):
        return None


def _bench(results: Path) -> tuple[dict[str, Any], str | None]:
    """host -> result of the bench run to show, and its id (none stored: nothing)."""
    try:
        run = load_run(resolve_run(results, None))
    except StoreError:
        if (Path(results) / RUN_FILE).exists() or (Path(results) / LATEST).exists():  # there, but damaged
            raise
        return {}, None
    return run.results, run.run_id


def write_atomic(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise ReportError(f"{path}: {e.strerror or e}") from None


def run(args: argparse.Namespace) -> ExitStatus:
    from ..observe.report import render

    bench, bench_run = _bench(args.results)
    outcomes, bad = gather(args)
    if bad is not None:
        return bad
    docs = documents(outcomes)
    page = render(docs, {h: _facts(args.facts_dir, h) for h in docs}, bench, bench_run, args.tune_results, title=args.title)
    write_atomic(args.html, page)
    for host, doc in docs.items():
        if "unreachable" in doc or "error" in doc:
            error(f"{host}: {'unreachable: ' + doc['unreachable'] if 'unreachable' in doc else doc['error']}")
    return exit_status(docs)
