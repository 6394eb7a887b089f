"""Live placement: where a running server's pages are, from its /proc/PID/numa_maps.

numa_maps has one line per mapping (VMA): its start address, memory policy, file and
resident pages per node (`N<node>=<pages>`). /proc/PID/maps gives the same mapping's end
and file offset, so each mapping covers a known byte range of the model file, and the
model's tensor table says which layers those bytes hold. The shard map's mbind of each
tensor range splits the server's mapping of the model along the plan, so a mapping
seldom spans two planned nodes; where one does, its pages are counted in proportion to the
bytes on each side (`exact` is then false for the ranges it touches).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..model import ModelLayout
from ..planner import Plan, layer_runs

_NODE = re.compile(r"N(\d+)=(\d+)$")


@dataclass(frozen=True)
class Vma:
    start: int
    end: int
    offset: int  # file offset of `start` (0 for anonymous memory)
    file: str | None
    anon: bool
    pages: Mapping[int, int]  # resident pages per node


def parse(numa_maps: str, maps: str) -> list[Vma]:
    """Every mapping of numa_maps, with its end and file offset from maps (lines of maps
    that numa_maps does not list, or the reverse, are dropped)."""
    extent: dict[int, tuple[int, int]] = {}
    for line in maps.splitlines():
        words = line.split()
        if len(words) >= 3 and "-" in words[0]:
            lo, hi = (int(x, 16) for x in words[0].split("-", 1))
            extent[lo] = (hi, int(words[2], 16))
    out = []
    for line in numa_maps.splitlines():
        words = line.split()
        if len(words) < 2:
            continue
        start = int(words[0], 16)
        if start not in extent:
            continue
        end, offset = extent[start]
        pages = {int(m[1]): int(m[2]) for m in map(_NODE.match, words[2:]) if m}
        file = next((w[5:] for w in words if w.startswith("file=")), None)
        out.append(Vma(start, end, offset, file, any(w.startswith("anon=") for w in words), pages))
    return out


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def _intervals(layout: ModelLayout, first: int, last: int) -> list[tuple[int, int]]:
    return [(t.offset, t.offset + t.n_bytes) for t in layout.tensors if t.layer is not None and first <= t.layer <= last]


def layer_shares(plan: Plan, mappings: list[Vma], model: str) -> list[dict[str, Any]]:
    """Per run of consecutive layers on one planned node: resident pages, those on that
    node, and their share (None when none is resident)."""
    file_maps = [m for m in mappings if m.file == model and m.end > m.start]
    runs = [(first, last, node, _intervals(plan.layout, first, last)) for first, last, node, _ in layer_runs(plan)]
    out = []
    for first, last, node, spans in runs:
        resident = on_node = 0.0
        exact = True
        for m in file_maps:
            extent = (m.offset, m.offset + m.end - m.start)
            mine = sum(_overlap(extent, s) for s in spans)
            if not mine:
                continue
            fraction = mine / (extent[1] - extent[0])
            exact &= all(n == node or not any(_overlap(extent, s) for s in sp) for _, _, n, sp in runs)
            resident += fraction * sum(m.pages.values())
            on_node += fraction * m.pages.get(node, 0)
        out.append({
            "range": f"{first}" if first == last else f"{first}-{last}", "node": node, "resident_pages": round(resident),
            "on_node_pages": round(on_node), "share": round(on_node / resident, 4) if resident else None, "exact": exact,
        })  # fmt: skip
    return out


def own_node_share(mappings: list[Vma], node: int) -> dict[str, Any]:
    """replicate: the share of the process's anonymous pages (its copy of the model, its KV
    cache) on the instance's node."""
    anon = [m for m in mappings if m.anon]
    total = sum(sum(m.pages.values()) for m in anon)
    own = sum(m.pages.get(node, 0) for m in anon)
    return {"range": "all", "node": node, "resident_pages": total, "on_node_pages": own,
            "share": round(own / total, 4) if total else None, "exact": True}


def by_node(mappings: list[Vma], model: str) -> dict[str, int]:
    """Resident pages of the model file per node."""
    out: dict[str, int] = {}
    for m in mappings:
        if m.file == model:
            for n, c in m.pages.items():
                out[str(n)] = out.get(str(n), 0) + c
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))
