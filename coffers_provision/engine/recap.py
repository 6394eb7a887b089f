"""After a run: the per-host recap, the JSON document, the retry file, the exit status."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..status import ExitStatus, fleet_status
from .result import HostReport, Status

COLORS = {Status.OK: "green", Status.CHANGED: "yellow", Status.SKIPPED: "cyan", Status.FAILED: "red"}


def exit_status(reports: Sequence[HostReport]) -> ExitStatus:
    return fleet_status(
        failed=sum(1 for r in reports if r.unreachable is None and (r.failed or r.not_reached is not None)),
        unreachable=sum(1 for r in reports if r.unreachable is not None),
    )


def to_json(reports: Sequence[HostReport], *, check: bool) -> dict[str, Any]:
    return {
        "check": check,
        "status": exit_status(reports).name.lower(),
        "hosts": {r.host: r.to_json() for r in reports},
    }


def retry_hosts(reports: Sequence[HostReport]) -> list[str]:
    """The hosts that did not get the change: failed, unreachable, or not reached."""
    return [r.host for r in reports if r.unreachable is not None or r.failed or r.not_reached is not None]


def write_retry(path: Path, reports: Sequence[HostReport]) -> bool:
    """List the failed and unreachable hosts for `--limit @FILE`; False when there are none."""
    hosts = retry_hosts(reports)
    if not hosts:
        return False
    path.write_text("".join(f"{h}\n" for h in hosts))
    return True


def read_retry(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def print_tasks(console: Console, reports: Sequence[HostReport], *, check: bool, diff: bool, verbose: bool = False) -> None:
    """One line per task that did something or measured something (every task with
    `verbose`), diffs under them."""
    for r in reports:
        if r.unreachable is not None:
            console.print(f"[magenta]{escape(r.host)}: UNREACHABLE:[/] {escape(r.unreachable)}")
            continue
        if r.not_reached is not None:
            console.print(f"[blue]{escape(r.host)}: NOT REACHED:[/] {escape(r.not_reached)}")
            continue
        if r.error is not None:
            console.print(f"[red]{escape(r.host)}: FAILED before any task:[/] {escape(r.error)}")
        for t in r.results:
            if t.status is Status.OK and not verbose and not t.data:
                continue
            word = "would change" if check and t.status is Status.CHANGED else t.status.value
            label = f"{t.role}/{t.task}" + (" (handler)" if t.handler else "")
            console.print(f"[{COLORS[t.status]}]{escape(r.host)}: {word}:[/] {escape(label)}: {escape(t.message)}")
            if diff and t.diff:
                console.print(escape(t.diff.rstrip("\n")), markup=True, highlight=False)


def recap_table(reports: Sequence[HostReport], *, check: bool) -> Table:
    table = Table(title="apply recap" + (" (--check: nothing was changed)" if check else ""))
    table.add_column("host")
    keys = ["ok", "changed", "skipped", "failed", "unreachable"] + (["not_reached"] if any(r.not_reached for r in reports) else [])
    for key in keys:
        table.add_column({"changed": "would change" if check else "changed", "not_reached": "not reached"}.get(key, key), justify="right")
    for r in reports:
        c = {**r.counts(), "not_reached": int(r.not_reached is not None)}
        cells = [str(c[k]) for k in keys]
        styles = ["green", "yellow", "cyan", "red", "magenta", "blue"]
        table.add_row(escape(r.host), *(f"[{s}]{v}[/]" if v != "0" else v for s, v in zip(styles, cells)))
    return table
