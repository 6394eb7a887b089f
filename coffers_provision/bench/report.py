"""The fleet report and the run comparison as terminal tables."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .analysis import Change, FleetReport


def _g(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _bw(gbps: float) -> str:
    """Short enough for a row of 8 nodes; the JSON and summary.csv keep every digit."""
    return f"{gbps:.0f}" if gbps >= 10 else f"{gbps:.1f}"


def fleet_table(report: FleetReport, title: str = "bench") -> Table:
    """One row per host: nodes, read GB/s per node, local/remote, latency, best strategy."""
    weak = {(o.host, o.node) for o in report.outliers}
    skewed = {a.host for a in report.asymmetric}
    t = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
    t.add_column("host", no_wrap=True)
    t.add_column("nodes", justify="right")
    t.add_column("read GB/s per node", overflow="fold")
    t.add_column("loc/rem", justify="right", no_wrap=True)
    t.add_column("latency ns", justify="right", no_wrap=True)
    t.add_column("best", no_wrap=True)
    t.add_column("flags")
    for s in report.summaries:
        per_node = " ".join(
            (f"[red]{n['id']}:{_bw(n['read'])}![/]" if (s.host, n["id"]) in weak else f"{n['id']}:{_bw(n['read'])}")
            + ("" if n["cpus"] else "m")
            for n in s.nodes
        )
        ratio = s.local_remote_ratio
        latency = _g(s.local_latency, 0) + ("" if s.remote_latency is None else f"/{s.remote_latency:.0f}")
        flags = []
        if any(h == s.host for h, _ in weak):
            flags.append("[red]slow node[/]")
        if s.host in skewed:
            flags.append("[yellow]asymmetric[/]")
        if s.meets_4x_llc is False:
            flags.append("[dim]cache-sized[/]")
        t.add_row(escape(s.host), str(len(s.nodes)), per_node, "-" if ratio is None else f"{ratio:.2f}", latency,
                  f"{s.best} {_bw(s.strategies[s.best])}", " ".join(flags))  # fmt: skip
    for host in report.failed:
        t.add_row(escape(host), "", "[red]no result[/]", "", "", "", "[red]failed[/]")
    return t


def print_report(console: Console, report: FleetReport, title: str = "bench") -> None:
    console.print(fleet_table(report, title))
    console.print("[dim]per node: id:read GB/s (m: memory-only, !: outlier); loc/rem: local/remote read; "
                  "latency: local/remote; cache-sized: arrays under 4x the last-level cache[/]", markup=True)
    for o in report.outliers:
        console.print(
            f"[red]outlier:[/] {escape(o.host)} node {o.node} ({o.kind}) reads {o.read:.1f} GB/s, "
            f"{o.deficit:.0%} below the median {o.median:.1f} of {o.peers} {escape(o.cpu_model or 'unknown-CPU')} {o.kind} nodes",
            markup=True, highlight=False,
        )  # fmt: skip
    by_host: dict[str, list] = {}
    for a in report.asymmetric:
        by_host.setdefault(a.host, []).append(a)
    for host, pairs in by_host.items():
        a = max(pairs, key=lambda p: p.difference)
        console.print(
            f"[yellow]asymmetric:[/] {escape(host)}: {len(pairs)} node pair(s) read more than {report.tolerance:.0%} apart "
            f"one way and the other; worst: node {a.a} CPUs -> node {a.b} memory {a.ab:.1f} GB/s, "
            f"node {a.b} -> node {a.a} {a.ba:.1f} GB/s ({a.difference:.0%} apart)",
            markup=True, highlight=False,
        )  # fmt: skip
    for host, why in report.failed.items():
        console.print(f"[red]{escape(host)}:[/] {escape(why)}", markup=True, highlight=False)


def compare_table(changes: list[Change], title: str, *, all_rows: bool = False) -> Table:
    """Regressions (and, with `all_rows`, every figure) per host, before -> after."""
    t = Table(title=title, box=box.SIMPLE_HEAD)
    for col, justify in (("host", "left"), ("figure", "left"), ("before", "right"), ("after", "right"), ("change", "right"), ("", "left")):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for c in changes:
        if not (all_rows or c.regression):
            continue
        colour = "red" if c.regression else "green" if (c.change > 0) == c.higher_is_better and abs(c.change) > 0.005 else ""
        change = f"{c.change:+.1%}"
        t.add_row(escape(c.host), c.metric, f"{c.before:.1f} {c.unit}", f"{c.after:.1f} {c.unit}",
                  f"[{colour}]{change}[/]" if colour else change, "[red]REGRESSION[/]" if c.regression else "")  # fmt: skip
    return t
