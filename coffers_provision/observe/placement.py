"""Live placement: where a running server's pages are, from its /proc/PID/numa_maps.

numa_maps has one line per mapping (VMA): its start address, memory policy, file and
resident pages per node (`N<node>=<pages>`). /proc/PID/maps gives the same mapping's end
and file offset, so each mapping covers a known byte range of the model file, and the
model's tensor table and the plan say which node each of those bytes belongs on.

numa_maps counts pages per node and mapping, not per page: an unmodified llama-server
maps the whole model as one mapping, so pages are judged per node within a mapping. For a
planned node k of a mapping, the pages the plan puts there (every tensor a forward pass
reads whole: the layers, output and norms; the embedding is read a row at a time) are
P_k, and N_k are resident there; min(N_k, P_k) of them count as placed. A layer range on
node k gets placed / planned over its part of every mapping. Moving node k's pages away
(migratepages, automatic NUMA balancing) drops its ranges' share; pages of two ranges on
two nodes swapped one for one would not show (`exact` is false wherever a mapping holds
several planned nodes). Where the mapping is split along the plan (a server that mbinds
each tensor range), every range is judged on its own pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..planner import Plan, layer_runs
from ..shardmap import tensor_type

_NODE = re.compile(r"N(\d+)=(\d+)$")
PAGE = 4096  # numa_maps counts base pages (kernelpagesize_kB=4 on x86-64 and most arm64)


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


def _planned_spans(plan: Plan) -> dict[int, list[tuple[int, int]]]:
    """node -> byte ranges a forward pass reads whole there (layers, output, norms)."""
    out: dict[int, list[tuple[int, int]]] = {}
    for t in plan.layout.tensors:
        node = plan.layer_nodes.get(t.layer) if t.layer is not None else None if tensor_type(t.name) == "embed" else plan.other_node
        if node is not None:
            out.setdefault(node, []).append((t.offset, t.offset + t.n_bytes))
    return out


def layer_shares(plan: Plan, mappings: list[Vma], model: str, page: int = PAGE) -> list[dict[str, Any]]:
    """Per run of consecutive layers on one planned node: its planned pages, how many of
    them count as placed on that node (see above), and the share."""
    spans = _planned_spans(plan)
    file_maps = [m for m in mappings if m.file == model and m.end > m.start]
    extents = [(m, (m.offset, m.offset + m.end - m.start)) for m in file_maps]
    # per mapping and node: planned bytes, and the pages that count as placed
    planned = [{k: sum(_overlap(e, s) for s in sp) for k, sp in spans.items()} for _, e in extents]
    placed = [{k: min(m.pages.get(k, 0), b / page) for k, b in p.items() if b} for (m, _), p in zip(extents, planned)]
    out = []
    for first, last, node, _ in layer_runs(plan):
        mine = [(t.offset, t.offset + t.n_bytes) for t in plan.layout.tensors if t.layer is not None and first <= t.layer <= last]
        want = got = 0.0
        exact = True
        for (m, e), p, ok in zip(extents, planned, placed):
            b = sum(_overlap(e, s) for s in mine)
            if not b:
                continue
            exact &= sum(1 for v in p.values() if v) == 1
            want += b / page
            got += ok.get(node, 0.0) * b / p[node]
        out.append({
            "range": f"{first}" if first == last else f"{first}-{last}", "node": node, "planned_pages": round(want),
            "on_node_pages": round(got), "share": round(min(1.0, got / want), 4) if want else None, "exact": exact,
        })  # fmt: skip
    return out


def own_node_share(mappings: list[Vma], node: int) -> dict[str, Any]:
    """replicate: the share of the process's anonymous pages (its copy of the model, its KV
    cache) on the instance's node."""
    anon = [m for m in mappings if m.anon]
    total = sum(sum(m.pages.values()) for m in anon)
    own = sum(m.pages.get(node, 0) for m in anon)
    return {"range": "all", "node": node, "planned_pages": total, "on_node_pages": own,
            "share": round(own / total, 4) if total else None, "exact": True}


def by_node(mappings: list[Vma], model: str) -> dict[str, int]:
    """Resident pages of the model file per node."""
    out: dict[str, int] = {}
    for m in mappings:
        if m.file == model:
            for n, c in m.pages.items():
                out[str(n)] = out.get(str(n), 0) + c
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))
