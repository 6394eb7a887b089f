"""PNG charts next to a run's results: a read-bandwidth heatmap per host and a fleet overview.

Figures are drawn on matplotlib's Agg canvas directly, with no pyplot state and no display.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .analysis import STRATEGIES, FleetReport
from .store import host_file

FLEET_FILE = "fleet.png"


def heatmap_file(host: str) -> str:
    return f"{host_file(host)}.heatmap.png"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def heatmap(host: str, result: Mapping[str, Any], path: Path) -> Path:
    """CPU node (row) x memory node (column) read GB/s, each cell labelled with its value."""
    m = result["matrix"]
    values = np.array(m["values"], dtype=float)
    rows, cols = len(m["rows"]), len(m["columns"])
    fig = _figure(max(3.6, 1.0 + 0.75 * cols), max(3.0, 1.4 + 0.6 * rows))
    ax = fig.subplots()
    im = ax.imshow(values, cmap="viridis", vmin=0, aspect="auto")
    ax.set_xticks(range(cols), [str(c) for c in m["columns"]])
    ax.set_yticks(range(rows), [str(r) for r in m["rows"]])
    ax.set_xlabel("memory node")
    ax.set_ylabel("CPU node")
    top = values.max() if values.size else 0
    for i in range(rows):
        for j in range(cols):
            v = values[i, j]
            ax.text(j, i, f"{v:.1f}" if v < 100 else f"{v:.0f}", ha="center", va="center",
                    color="black" if v > 0.6 * top else "white", fontsize=8 if cols > 6 else 10)  # fmt: skip
    fig.colorbar(im, ax=ax, label="read GB/s")
    model = result["host"]["cpu_model"] or "CPU model unknown"
    ax.set_title(f"{host}: read GB/s\n{model}", fontsize=10)
    return _save(fig, path)


def fleet_chart(report: FleetReport, path: Path) -> Path:
    """Top: every node's read GB/s, grouped by host, outliers in red and memory-only nodes
    hatched. Bottom: the three strategy figures per host."""
    hosts = [s.host for s in report.summaries]
    weak = {(o.host, o.node) for o in report.outliers}
    width = max(7.5, 0.9 + 0.45 * sum(len(s.nodes) + 1 for s in report.summaries))
    fig = _figure(width, 6.4)
    top, bottom = fig.subplots(2, 1)
    x, ticks, labels = 0.0, [], []
    for s in report.summaries:
        start = x
        for n in s.nodes:
            bar = top.bar(x, n["read"], width=0.8, color="tab:red" if (s.host, n["id"]) in weak else "tab:blue",
                          hatch="//" if not n["cpus"] else None, edgecolor="white")  # fmt: skip
            top.bar_label(bar, labels=[str(n["id"])], fontsize=7, padding=1, color="tab:red" if (s.host, n["id"]) in weak else "black")
            x += 1
        ticks.append((start + x - 1) / 2)
        labels.append(s.host)
        x += 1  # a gap between hosts
    top.set_xticks(ticks, labels, rotation=30 if len(hosts) > 6 else 0, ha="right" if len(hosts) > 6 else "center")
    top.set_ylabel("read GB/s per node\n(bar label: node id)")
    top.legend(handles=[Patch(facecolor="tab:blue", label="node"),
                        Patch(facecolor="tab:red", label=f"outlier: >{report.threshold:.0%} below its group's median"),
                        Patch(facecolor="tab:blue", hatch="//", edgecolor="white", label="memory-only")],
               fontsize=7, ncols=3, loc="lower right", bbox_to_anchor=(1, 1), frameon=False, borderaxespad=0.2)
    idx = np.arange(len(hosts))
    w = 0.8 / len(STRATEGIES)
    for k, name in enumerate(STRATEGIES):
        bottom.bar(idx + (k - 1) * w, [s.strategies[name] for s in report.summaries], width=w, label=name)
    bottom.set_xticks(idx, hosts, rotation=30 if len(hosts) > 6 else 0, ha="right" if len(hosts) > 6 else "center")
    bottom.set_ylabel("aggregate read GB/s")
    bottom.set_title("strategies", fontsize=9, loc="left")
    bottom.legend(fontsize=7, ncols=3, loc="lower right", bbox_to_anchor=(1, 1), frameon=False, borderaxespad=0.2)
    for ax in (top, bottom):
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    return _save(fig, path)


def plot_run(run_dir: Path, results: Mapping[str, Mapping[str, Any]], report: FleetReport) -> list[Path]:
    """Every chart of a run, written into its directory; returns the files."""
    paths = [heatmap(h, r, run_dir / heatmap_file(h)) for h, r in results.items()]
    if report.summaries:
        paths.append(fleet_chart(report, run_dir / FLEET_FILE))
    return paths
