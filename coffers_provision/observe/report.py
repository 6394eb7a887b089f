"""`report --html`: the fleet on one self-contained static page.

The fleet table comes from `status` documents; per host, a heatmap of the node x node
read bandwidth (the stored bench run, bench/store.py) and a chart of the newest tune
records (results/tune). Charts are inline SVG drawn by the Jinja2 template from numbers
computed here (colours from matplotlib's viridis map), so the page makes no request of
any kind; its Content-Security-Policy forbids every load but inline styles and images.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import jinja2
from matplotlib import colormaps
from matplotlib.colors import to_hex

from ..bench.store import host_file
from ..bench.tuned import read_host

TEMPLATE = "report.html.j2"
CELL = 46  # heatmap cell, px


def _color(value: float, top: float) -> tuple[str, str]:
    """(fill, text colour) of a heatmap cell."""
    rgba = colormaps["viridis"](value / top if top > 0 else 0.0)
    light = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] > 0.55
    return to_hex(rgba), "#111" if light else "#fff"


def heatmap(result: Mapping[str, Any]) -> dict[str, Any]:
    """CPU node (row) x memory node (column) read GB/s as SVG cells."""
    m = result["matrix"]
    top = max((v for row in m["values"] for v in row), default=0.0)
    cells = []
    for i, row in enumerate(m["values"]):
        for j, v in enumerate(row):
            fill, ink = _color(v, top)
            cells.append({"x": j * CELL, "y": i * CELL, "fill": fill, "ink": ink, "text": f"{v:.1f}" if v < 100 else f"{v:.0f}",
                          "title": f"CPU node {m['rows'][i]} reading node {m['columns'][j]}: {v:.2f} GB/s"})
    stops = [{"offset": f"{100 * k / 8:.0f}%", "color": _color(top * (8 - k) / 8, top)[0]} for k in range(9)]  # top first
    return {"rows": m["rows"], "columns": m["columns"], "cells": cells, "cell": CELL, "max": top, "stops": stops,
            "width": CELL * len(m["columns"]), "height": CELL * len(m["rows"]), "cpu_model": result["host"].get("cpu_model")}


def newest_tune(tune_dir: Path | None, host: str) -> dict[str, Any] | None:
    """The newest tune run's records for `host`."""
    if tune_dir is None or not tune_dir.is_dir():
        return None
    for run in sorted((p for p in tune_dir.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True):
        path = run / f"{host_file(host)}.json"
        if path.is_file():
            return read_host(path)
    return None


def tune_chart(doc: Mapping[str, Any], deployed: str | None) -> dict[str, Any]:
    """Horizontal bars, median generation tokens/s with its min-max, fastest first."""
    records = sorted(doc["records"], key=lambda r: -r["generation_tokens_per_s"]["median"])
    top = max((r["generation_tokens_per_s"]["max"] for r in records), default=0.0) or 1.0
    width = 360
    bars = [{"name": r["variant"], "median": r["generation_tokens_per_s"]["median"],
             "w": width * r["generation_tokens_per_s"]["median"] / top,
             "lo": width * r["generation_tokens_per_s"]["min"] / top, "hi": width * r["generation_tokens_per_s"]["max"] / top,
             "y": 26 * i, "best": i == 0, "deployed": r["variant"] == deployed} for i, r in enumerate(records)]
    return {"run_id": doc["run_id"], "bars": bars, "width": width, "height": 26 * len(bars)}


def _min_share(doc: Mapping[str, Any]) -> float | None:
    shares = [r["share"] for i in doc.get("instances") or [] for r in ((i.get("placement") or {}).get("ranges") or []) if r["share"] is not None]
    return min(shares) if shares else None


def _tokens(doc: Mapping[str, Any]) -> float | None:
    figures = [i["last_check"]["generation_tokens_per_s"] for i in doc.get("instances") or []
               if i.get("last_check") and i["last_check"].get("generation_tokens_per_s") is not None]
    return sum(figures) if figures else None


def _health(doc: Mapping[str, Any]) -> tuple[str, str]:
    """(label, css class) of a host's instances."""
    oks = [i["health"]["ok"] for i in doc.get("instances") or []]
    if any(ok is False for ok in oks):
        return "unhealthy", "bad"
    if oks and all(ok is True for ok in oks):
        return "healthy", "good"
    return "not running", "muted"


def row(host: str, doc: Mapping[str, Any], facts: Mapping[str, Any] | None) -> dict[str, Any]:
    """One line of the fleet table."""
    cpu = ((facts or {}).get("cpu") or {}).get("model")
    if "unreachable" in doc or "error" in doc:
        why = doc.get("unreachable") or doc.get("error")
        return {"host": host, "state": "unreachable" if "unreachable" in doc else "error", "why": why, "cpu": cpu}
    health, health_class = _health(doc)
    share = _min_share(doc)
    return {
        "host": host, "state": "ok", "cpu": cpu, "topology": doc["topology"], "strategy": doc["strategy"], "tokens": _tokens(doc),
        "share": share, "share_class": "muted" if share is None else "good" if not any(i.get("placement") and i["placement"]["misplaced"] for i in doc["instances"]) else "bad",
        "drift": doc["drift"]["drifted"], "health": health, "health_class": health_class, "problems": doc["problems"], "warnings": doc["warnings"],
    }  # fmt: skip


def render(status: Mapping[str, Mapping[str, Any]], facts: Mapping[str, Mapping[str, Any] | None],
           bench: Mapping[str, Mapping[str, Any]], bench_run: str | None, tune_dir: Path | None, *, title: str) -> str:
    """The page. `status`: host -> status document; `facts`: host -> cached facts (or None);
    `bench`: host -> numa-shard-bench result of run `bench_run`."""
    hosts = []
    for name, doc in status.items():
        tune = newest_tune(tune_dir, name)
        hosts.append({
            "row": row(name, doc, facts.get(name)),
            "heatmap": heatmap(bench[name]) if name in bench else None,
            "tune": tune_chart(tune, doc.get("strategy")) if tune and tune["records"] else None,
        })
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    counts = {k: sum(1 for h in hosts if h["row"]["state"] == "ok" and h["row"][k]) for k in ("drift",)}
    bad = sum(1 for h in hosts if h["row"]["state"] != "ok" or h["row"]["problems"])
    return env.get_template(TEMPLATE).render(title=title, hosts=hosts, bench_run=bench_run, counts=counts, bad=bad,
                                             generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
