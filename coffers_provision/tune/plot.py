"""`tune --plot`: one bar chart per run, each host's variants by generation tokens/s."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .run import TuneReport, ratios


def plot(reports: Sequence[TuneReport], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    shown = [r for r in reports if any(v.record for v in r.variants)]
    fig, axes = plt.subplots(len(shown) or 1, 1, figsize=(8, 2.6 * max(1, len(shown))), squeeze=False)
    for ax, r in zip(axes[:, 0], shown):
        measured = [v for v in r.variants if v.record]
        names = [v.name for v in measured]
        med = [v.tokens_per_s or 0.0 for v in measured]
        lo = [m - v.record["generation_tokens_per_s"]["min"] for m, v in zip(med, measured) if v.record]
        hi = [v.record["generation_tokens_per_s"]["max"] - m for m, v in zip(med, measured) if v.record]
        bars = ax.barh(names, med, xerr=[lo, hi], color=["#d62728" if n == r.winner else "#1f77b4" for n in names])
        rel = ratios(r)
        ax.bar_label(bars, labels=[f"{m:.1f}" + (f"  ({rel[n]:.2f}x distribute)" if n in rel else "") for n, m in zip(names, med)], padding=3)
        ax.set_title(f"{r.host}: generation tokens/s (median, min-max); fastest in red")
        ax.invert_yaxis()
        ax.margins(x=0.35)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
