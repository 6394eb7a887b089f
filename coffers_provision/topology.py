"""The NUMA topology model and CPU-list helpers.

Node ids are kernel ids (sparse: 0, 8, 252, ...) and are never used as indices.
Anything the source did not print is None, never guessed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import chain
from typing import Any, Iterable

from .errors import CoffersError


class TopologyError(CoffersError, ValueError):
    """Text that is not a topology we understand. `line` is 1-based when known."""

    def __init__(self, message: str, *, source: str = "<text>", line: int | None = None):
        self.message, self.source, self.line = message, source, line
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Node:
    id: int
    cpus: tuple[int, ...] | None  # None: the source did not list CPUs
    size_mb: int | None
    free_mb: int | None

    @property
    def has_memory(self) -> bool:
        return bool(self.size_mb)

    @property
    def has_cpus(self) -> bool:
        return bool(self.cpus)


@dataclass(frozen=True)
class Topology:
    numa_available: bool
    nodes: tuple[Node, ...]
    distances: tuple[tuple[int, ...], ...] | None  # rows/columns in `nodes` order
    source: str = "numactl"  # "numactl" or "sysfs": how the facts were read

    # -- lookups ---------------------------------------------------------
    @property
    def node_ids(self) -> list[int]:
        return [n.id for n in self.nodes]

    def node(self, node_id: int) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(f"no NUMA node {node_id}")

    def distance(self, a: int, b: int) -> int | None:
        if self.distances is None:
            return None
        index = self._index
        return self.distances[index[a]][index[b]]

    @cached_property
    def _index(self) -> dict[int, int]:
        """node id -> its row in `distances` (the planner asks for distances often)."""
        return {n.id: i for i, n in enumerate(self.nodes)}

    @cached_property
    def all_cpus(self) -> frozenset[int]:
        return frozenset(chain.from_iterable(n.cpus or () for n in self.nodes))

    @cached_property
    def plain_ints(self) -> bool:
        """Every id, CPU and distance is an int. Only then may what is derived from them be
        shared through a memo: 1, 1.0 and True are equal as keys but print differently."""
        cpus = tuple(chain.from_iterable(n.cpus or () for n in self.nodes))
        distances = tuple(chain.from_iterable(self.distances or ()))
        return _ints(tuple(n.id for n in self.nodes)) and _ints(cpus) and _ints(distances)

    # -- derived facts ---------------------------------------------------
    @property
    def memory_nodes(self) -> list[int]:
        return [n.id for n in self.nodes if n.has_memory]

    @property
    def cpu_nodes(self) -> list[int]:
        return [n.id for n in self.nodes if n.has_cpus]

    @property
    def cpuless_memory_nodes(self) -> list[int]:
        """Memory with no CPUs of its own: CXL expanders, HBM, PMEM, GPU memory."""
        return [n.id for n in self.nodes if n.has_memory and n.cpus is not None and not n.cpus]

    @property
    def memoryless_cpu_nodes(self) -> list[int]:
        return [n.id for n in self.nodes if n.has_cpus and n.size_mb == 0]

    def nearest_cpu_node(self, node_id: int) -> int | None:
        """The CPU node closest to `node_id` (itself when it has CPUs); ties go to the lower id."""
        if self.node(node_id).has_cpus:
            return node_id
        if self.distances is None or not self.cpu_nodes:
            return None
        return min(self.cpu_nodes, key=lambda c: (self.distance(node_id, c), c))

    # -- serialisation ---------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The `topology parse --json` contract (ARCHITECTURE.md §4)."""
        return {
            "numa_available": self.numa_available,
            "nodes": [
                {
                    "id": n.id,
                    "cpus": list(n.cpus) if n.cpus is not None else None,
                    "size_mb": n.size_mb,
                    "free_mb": n.free_mb,
                }
                for n in self.nodes
            ],
            "distances": [list(r) for r in self.distances] if self.distances is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "numactl") -> Topology:
        nodes = tuple(
            Node(
                id=n["id"],
                cpus=tuple(n["cpus"]) if n.get("cpus") is not None else None,
                size_mb=n.get("size_mb"),
                free_mb=n.get("free_mb"),
            )
            for n in data["nodes"]
        )
        dist = data.get("distances")
        return cls(
            numa_available=data["numa_available"],
            nodes=nodes,
            distances=tuple(tuple(r) for r in dist) if dist is not None else None,
            source=data.get("source", source),
        )

    def fingerprint(self) -> str:
        """A stable hash of the hardware shape: node ids, CPUs, distances and each node's
        installed memory rounded to a GiB. Never free memory, and not the exact size either:
        a node's size moves by tens of MB across boots (kernel reservations), which must not
        restart a fleet."""
        nodes = tuple((n.id, n.cpus or (), None if n.size_mb is None else round(n.size_mb / 1024)) for n in self.nodes)
        return (_fingerprint if self.plain_ints else _fingerprint.__wrapped__)(nodes, self.distances)


def _ints(values: tuple) -> bool:
    """Every value is an int, not a bool, checked at C speed: a float, Decimal or numpy
    number makes the sum another type; a bool equals 0 or 1, so only those are looked at.
    (Another int subclass would pass; no parser or JSON document here makes one.)"""
    if type(sum(values)) is not int:
        return False
    for v in (0, 1):
        found = values.count(v)
        if found > 1:
            return bool not in set(map(type, values))
        if found and type(values[values.index(v)]) is not int:
            return False
    return True


@lru_cache(maxsize=256)
def _fingerprint(nodes: tuple[tuple[int, tuple[int, ...], int | None], ...], distances: tuple[tuple[int, ...], ...] | None) -> str:
    """The hash of one shape, computed once per shape: a fleet has a few."""
    shape = {
        "nodes": [[i, list(cpus), size] for i, cpus, size in nodes],
        "distances": [list(r) for r in distances] if distances is not None else None,
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


# -- CPU / node list syntax ("0-3,8,10-14:2") --------------------------------

_RANGE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")


def parse_cpulist(text: str) -> list[int]:
    """Parse the kernel's list syntax: `0-3,8,10-14`, with an optional `:stride`."""
    text = text.strip()
    if not text:
        return []
    out: list[int] = []
    for part in text.split(","):
        m = _RANGE.match(part.strip())
        if not m:
            raise ValueError(f"bad CPU list element {part!r} in {text!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        step = int(m.group(3)) if m.group(3) else 1
        if hi < lo or step < 1:
            raise ValueError(f"bad CPU range {part!r} in {text!r}")
        out.extend(range(lo, hi + 1, step))
    return out


def cpulist_of(ids: tuple[int, ...]) -> str:
    """format_cpulist, once per list of plain ints: hosts of one hardware type share their lists."""
    return _cpulist(ids) if _ints(ids) else format_cpulist(ids)


@lru_cache(maxsize=256)
def _cpulist(ids: tuple[int, ...]) -> str:
    return format_cpulist(ids)


def format_cpulist(ids: Iterable[int]) -> str:
    """The inverse of parse_cpulist, with runs compressed: [0,1,2,5] -> '0-2,5'."""
    ids = sorted(set(ids))
    parts: list[str] = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(parts)
