"""The planner: a pure function of (topology, model layout, bench results, policy) -> Plan.

No I/O. docs/planning.md explains the strategies, the capacity formula and the KV-cache
estimate; the comments here say why a step is done the way it is.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from itertools import chain
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from . import shardmap
from .errors import CoffersError
from .model import ModelLayout
from .topology import Node, Topology, cpulist_of, format_cpulist, parse_cpulist
from .units import human_bytes

MiB = 1 << 20
STRATEGIES = ("shard", "replicate", "interleave", "weighted-interleave", "auto")
# What a user runs without this tool, planned so `tune` can measure them side by side (and
# `auto` pick one, should it be fastest): llama-server's own --numa distribute on a cold page
# cache; the whole process interleaved (numactl --interleave=all); one node's CPUs and memory.
BASELINES = ("distribute", "interleave-all", "one-node")
VARIANTS = STRATEGIES[:4] + BASELINES
KV_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
WEIGHT_SCALE = 20  # the fastest node's weighted-interleave weight; the kernel takes 1..255


class PlanError(CoffersError, ValueError):
    """No sound plan exists (the model does not fit, a strategy is not allowed, ...)."""


class PolicyError(CoffersError, ValueError):
    """A bad policy variable; the message names it as `coffers.<name>`."""


# -- inputs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    strategy: str = "shard"
    nodes: tuple[int, ...] | None = None  # restrict the host to these node ids
    reserve_cpus: tuple[int, ...] = ()  # CPUs kept for other work
    reserve_memory_mb: int = 0  # kept free on every node
    headroom_percent: float = 10.0  # of each node's free memory
    context_length: int = 4096  # tokens per slot
    parallel: int = 1  # slots (llama-server -np)
    kv_cache_type: str = "f16"
    service_host: str = "127.0.0.1"
    service_port: int = 8080  # replicate: port, port+1, ...
    service_name: str = "llama"

    @classmethod
    def from_vars(cls, coffers: Mapping[str, Any] | None) -> Policy:
        """The policy from a host's merged `coffers:` mapping, already checked against its JSON
        Schema (schemas/inventory.schema.json, $defs/coffers); keys for other parts are ignored."""
        v = dict(coffers or {})
        service = v.get("service") or {}
        try:
            reserve_cpus = tuple(parse_cpulist(str(v.get("reserve_cpus", ""))))
        except ValueError as e:
            raise PolicyError(f"coffers.reserve_cpus: {e} (got {v.get('reserve_cpus')!r})") from None
        return cls(
            strategy=v.get("strategy", cls.strategy),
            nodes=tuple(v["nodes"]) if v.get("nodes") is not None else None,
            reserve_cpus=reserve_cpus,
            reserve_memory_mb=v.get("reserve_memory_mb", 0),
            headroom_percent=float(v.get("headroom_percent", cls.headroom_percent)),
            context_length=v.get("context_length", cls.context_length),
            parallel=v.get("parallel", cls.parallel),
            kv_cache_type=v.get("kv_cache_type", cls.kv_cache_type),
            service_host=service.get("host", cls.service_host),
            service_port=service.get("port", cls.service_port),
            service_name=str(service.get("name", cls.service_name)),
        )


@dataclass(frozen=True)
class Bench:
    """Measurements the planner uses; every part is optional.

    `node_bandwidth`: GB/s reading each memory node (node id -> GB/s).
    `strategy_speed`: a measured figure per strategy on this host, higher is better, in
    `speed_unit`: the model's tokens/s, or numa-shard-bench's read GB/s for that strategy
    (replicate: all copies together).
    """

    node_bandwidth: Mapping[int, float] = field(default_factory=dict)
    strategy_speed: Mapping[str, float] = field(default_factory=dict)
    speed_unit: str = "tokens/s"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Bench:
        """A numa-shard-bench result (schemas/bench-result.schema.json), or the short form
        `{"node_bandwidth_gbps": {"0": 80}, "strategy_tokens_per_s": {"shard": 9.5}}`."""
        if (data.get("tool") or {}).get("name") == "numa-shard-bench":
            bw = {int(n["id"]): float(n["read"]) for n in data["nodes"]}
            speed = {s: float(v["read"]) for s, v in data["strategies"].items() if isinstance(v, Mapping) and "read" in v}
            return cls(bw, speed, "GB/s read")
        bw = {int(k): float(v) for k, v in (data.get("node_bandwidth_gbps") or {}).items()}
        tps = {str(k): float(v) for k, v in (data.get("strategy_tokens_per_s") or {}).items()}
        for node, value in bw.items():
            if not value > 0:
                raise ValueError(f"node_bandwidth_gbps.{node}: bandwidth must be positive (got {value})")
        for name in tps:
            if name not in VARIANTS:
                raise ValueError(f"strategy_tokens_per_s.{name}: not a strategy or baseline ({', '.join(VARIANTS)})")
        return cls(bw, tps)


# -- outputs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    name: str
    host: str
    port: int
    cpus: tuple[int, ...] | None  # None: the topology did not list CPUs
    threads: int | None  # -t: physical cores
    threads_batch: int | None  # -tb: every CPU in the list
    numa: str | None  # llama-server --numa: distribute, isolate or numactl
    memory_nodes: tuple[int, ...]  # nodes holding this instance's weights
    numa_policy: str | None  # bind, interleave, weighted-interleave, preferred (for the unit)
    numa_mask: tuple[int, ...]
    shard_map: str
    kv_bytes: int
    context_length: int
    parallel: int
    kv_cache_type: str

    @property
    def cpu_affinity(self) -> str | None:
        return cpulist_of(self.cpus) if self.cpus else None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "cpus": list(self.cpus) if self.cpus is not None else None,
            "cpu_affinity": self.cpu_affinity,
            "threads": self.threads,
            "threads_batch": self.threads_batch,
            "numa": self.numa,
            "memory_nodes": list(self.memory_nodes),
            "numa_policy": self.numa_policy,
            "numa_mask": list(self.numa_mask),
            "shard_map": self.shard_map,
            "kv_bytes": self.kv_bytes,
        }


@dataclass(frozen=True)
class NodeBudget:
    """One node's memory arithmetic, in bytes. `room` is what weights may use."""

    id: int
    has_cpus: bool | None  # None: unknown
    free: int | None  # None: unknown (no NUMA facts)
    headroom: int
    reserved: int
    kv: int
    weights: int
    speed: float  # relative weight of the node in the split (bandwidth or 1.0); 0: not for weights
    role: str  # weights, threads, weights+threads, unused

    @property
    def limit(self) -> int | None:
        """free - headroom - reserved: what weights and KV cache together may use."""
        return None if self.free is None else self.free - self.headroom - self.reserved

    @property
    def left(self) -> int | None:
        """free - reserved - weights: what the node keeps for the KV cache and the OS once the
        model's share is in its page cache (the page-cache budget of a model spread over nodes)."""
        return None if self.free is None else self.free - self.reserved - self.weights

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "free_bytes": self.free,
            "headroom_bytes": self.headroom,
            "reserved_bytes": self.reserved,
            "kv_bytes": self.kv,
            "weight_bytes": self.weights,
            "limit_bytes": self.limit,
            "left_bytes": self.left,
            "speed": self.speed,
        }


@dataclass(frozen=True)
class Plan:
    strategy: str
    requested_strategy: str
    shard_map: str  # "" when the kernel policy places pages (replicate: per instance)
    layer_nodes: Mapping[int, int]  # shard only
    embed_node: int | None
    other_node: int | None
    node_bytes: Mapping[int, int]
    nodes: tuple[NodeBudget, ...]
    instances: tuple[Instance, ...]
    kv_bytes_per_token: int
    kv_bytes: int  # per instance
    interleave_weights: Mapping[int, int] | None
    warnings: tuple[str, ...]
    reasons: tuple[str, ...]
    layout: ModelLayout = field(repr=False, compare=False)
    topology_fingerprint: str = ""

    def tensor_nodes(self) -> list[tuple[str, int | None]]:
        """(name, node) for every tensor; node is None when the kernel spreads its pages."""
        if self.strategy != "shard":
            return [(t.name, None) for t in self.layout.tensors]
        out = []
        for t in self.layout.tensors:
            if t.layer is not None:
                out.append((t.name, self.layer_nodes[t.layer]))
            elif shardmap.tensor_type(t.name) == "embed":
                out.append((t.name, self.embed_node))
            else:
                out.append((t.name, self.other_node))
        return out

    def to_json(self, *, tensors: bool = True) -> dict[str, Any]:
        """The `plan --json` document (schemas/plan.schema.json)."""
        lay = self.layout
        doc: dict[str, Any] = {
            "strategy": self.strategy,
            "requested_strategy": self.requested_strategy,
            "shard_map": self.shard_map,
            "node_bytes": {str(n): b for n, b in self.node_bytes.items()},
            "tensors": [],
            "instances": [i.to_json() for i in self.instances],
            "nodes": [n.to_json() for n in self.nodes],
            "kv_cache": {
                "type": self.instances[0].kv_cache_type if self.instances else "f16",
                "context_length": self.instances[0].context_length if self.instances else 0,
                "parallel": self.instances[0].parallel if self.instances else 1,
                "bytes_per_token": self.kv_bytes_per_token,
                "bytes": self.kv_bytes,
            },
            "interleave_weights": {str(n): w for n, w in self.interleave_weights.items()} if self.interleave_weights else None,
            "model": {
                "source": lay.source,
                "architecture": lay.architecture,
                "block_count": lay.block_count,
                "total_bytes": lay.total_bytes,
                **({"parts": [part.source for part in lay.parts]} if lay.parts else {}),
            },
            "topology_fingerprint": self.topology_fingerprint,
            "warnings": list(self.warnings),
            "reasons": list(self.reasons),
        }
        if tensors:
            doc["tensors"] = [
                {"name": t.name, "layer": t.layer, "kind": t.kind, "bytes": t.n_bytes, "node": node}
                for t, (_, node) in zip(lay.tensors, self.tensor_nodes())
            ]
        return doc


# -- the host as the policy leaves it -------------------------------------------------


@dataclass
class _Host:
    topo: Topology
    nodes: list[Node]  # eligible nodes, CPUs less the reserved ones
    restricted: bool  # some CPU of the host is not ours (node restriction or reserve)
    free: dict[int, int | None]  # memory node -> free bytes
    headroom: dict[int, int]
    reserved: dict[int, int]
    speed: dict[int, float]  # primary memory nodes -> relative speed
    last_resort: list[int]  # CPU-less memory nodes without measurements, in order of use
    warnings: list[str]
    reasons: list[str]

    def limit(self, n: int) -> float:
        f = self.free[n]
        return math.inf if f is None else f - self.headroom[n] - self.reserved[n]

    @property
    def memory_nodes(self) -> list[int]:
        return list(self.free)

    # derived once here (every strategy reads them):
    all_cpus: tuple[int, ...] | None = field(init=False)  # None: some node does not list CPUs
    cpu_nodes: list[int] = field(init=False)
    cpu_distance: Mapping[int, int] = field(init=False)  # memory node -> sum of distances to cpu_nodes

    def __post_init__(self) -> None:
        node_cpus = tuple(n.cpus for n in self.nodes)
        known = None not in node_cpus
        self.all_cpus = (_sorted_cpus if self.topo.plain_ints else _sorted_cpus.__wrapped__)(node_cpus) if known else None
        self.cpu_nodes = [x.id for x in self.nodes if x.cpus]
        t = self.topo  # the distance sums are a shape fact: memoised
        self.cpu_distance = _cpu_distance(tuple(n.id for n in t.nodes), t.distances, tuple(self.free), tuple(self.cpu_nodes))

    def dist(self, a: int, b: int) -> int:
        return _dist(self.topo, a, b)


@lru_cache(maxsize=256)
def _sorted_cpus(node_cpus: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    """Every CPU of these nodes, sorted: once per shape (plain ints only, as they are printed)."""
    return tuple(sorted(chain.from_iterable(node_cpus)))


def _dist(topo: Topology, a: int, b: int) -> int:
    d = topo.distance(a, b) if topo.distances is not None else None
    return d if d is not None else (10 if a == b else 20)


@lru_cache(maxsize=256)
def _cpu_distance(ids: tuple[int, ...], distances: tuple[tuple[int, ...], ...] | None,
                  memory: tuple[int, ...], cpu_nodes: tuple[int, ...]) -> Mapping[int, int]:
    # Only compared, never printed: 20 and 20.0 may share an entry.
    topo = Topology(True, tuple(Node(i, None, None, None) for i in ids), distances)
    return MappingProxyType({n: sum(_dist(topo, n, c) for c in cpu_nodes) for n in memory})


def _host(topo: Topology, policy: Policy, bench: Bench | None) -> _Host:
    warnings: list[str] = []
    reasons: list[str] = []
    nodes = list(topo.nodes)
    if not topo.numa_available or not nodes:
        # One flat memory domain: the kernel calls it node 0. Sizes and CPUs were not printed.
        nodes = [Node(0, None, None, None)]
        warnings.append("NUMA not available: one flat memory domain (node 0); memory sizes unknown, capacity not checked")
    ids = [n.id for n in nodes]
    if policy.nodes is not None:
        missing = [n for n in policy.nodes if n not in ids]
        if missing:
            raise PlanError(f"coffers.nodes: node(s) {missing} are not on this host (nodes: {ids})")
        nodes = [n for n in nodes if n.id in policy.nodes]
    reserve = set(policy.reserve_cpus)
    host_cpus = topo.all_cpus if reserve else frozenset()  # only a reservation asks
    if reserve - host_cpus and host_cpus:
        warnings.append(f"reserve_cpus {format_cpulist(reserve - host_cpus)} are not on this host")
    restricted = len(nodes) != len(topo.nodes) or bool(reserve & host_cpus)
    if reserve:
        nodes = [Node(n.id, tuple(c for c in n.cpus if c not in reserve) if n.cpus is not None else None, n.size_mb, n.free_mb) for n in nodes]

    free: dict[int, int | None] = {}
    headroom: dict[int, int] = {}
    reserved: dict[int, int] = {}
    for n in nodes:
        if n.size_mb is None and n.free_mb is None:
            free[n.id] = None  # flat host: unknown
        elif n.size_mb:
            free[n.id] = (n.size_mb if n.free_mb is None else min(n.size_mb, n.free_mb)) * MiB
        else:
            continue  # memoryless: threads only
        headroom[n.id] = math.ceil((free[n.id] or 0) * policy.headroom_percent / 100)
        reserved[n.id] = policy.reserve_memory_mb * MiB
    if not free:
        raise PlanError(f"no node with memory among nodes {[n.id for n in nodes]}: nowhere to put the weights")

    # CPU-less is a hardware fact (CXL, HBM, GPU memory): judged on the printed CPUs, not on
    # what reserve_cpus leaves; an unknown CPU list (old numactl) is not CPU-less.
    printed = {n.id: n.cpus for n in topo.nodes}
    cpuless = [i for i in free if printed.get(i) is not None and not printed[i]]
    attached = [i for i in free if i not in cpuless]
    bw = dict(bench.node_bandwidth) if bench else {}
    measured = bool(attached) and all(i in bw for i in attached)
    if bw and not measured:
        warnings.append(f"bench bandwidth misses node(s) {[i for i in attached if i not in bw]}: layers split in equal shares")
    speed = {i: (bw[i] if measured else 1.0) for i in attached}
    if measured:
        reasons.append("layers split in proportion to measured bandwidth: " + ", ".join(f"node{i} {bw[i]:g} GB/s" for i in attached))
    else:
        reasons.append("no bandwidth measurements: memory nodes with CPUs take equal shares")
    last_resort = []
    for i in cpuless:
        if measured and i in bw:
            speed[i] = bw[i]
        else:
            last_resort.append(i)
    cpu_nodes = [n.id for n in nodes if n.cpus] or attached
    h = _Host(topo, nodes, restricted, free, headroom, reserved, speed, [], warnings, reasons)
    # Unmeasured CPU-less memory is used only when the rest is full, nearest to the CPUs first.
    h.last_resort = sorted(last_resort, key=lambda i: (min((h.dist(i, c) for c in cpu_nodes), default=0), i))
    if not speed:  # nothing but CPU-less memory: use it all, in that order
        speed = {i: 1.0 for i in h.last_resort}
        h.speed, h.last_resort = speed, []
    return h


# -- threads ---------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _cpu_set(cpus: tuple[int, ...]) -> frozenset[int]:
    """An instance's CPUs as a set, once per list (only tested for overlap: 1 and 1.0 may share)."""
    return frozenset(cpus)


def _cores(cpus: Sequence[int], cores: Mapping[int, int] | None) -> int:
    """Physical cores among `cpus`; a CPU the facts do not list is its own core."""
    if cores is None:
        return len(cpus)
    return len(set(map(cores.get, cpus, cpus)))


def _instance(
    h: _Host,
    policy: Policy,
    *,
    name: str,
    port: int,
    cpus: tuple[int, ...] | None,
    memory_nodes: Sequence[int],
    numa_policy: str | None,
    numa_mask: Sequence[int],
    shard_map: str,
    kv_bytes: int,
    cores: Mapping[int, int] | None,
) -> Instance:
    numa_on = h.topo.numa_available and len(h.topo.nodes) > 1
    if cpus is not None and not cpus:
        raise PlanError(f"instance {name}: no CPUs left (reserve_cpus {format_cpulist(policy.reserve_cpus)} takes them all)")
    numa = _numa_mode(cpus, tuple(n.cpus for n in h.topo.nodes), h.restricted) if numa_on else None
    return Instance(
        name=name,
        host=policy.service_host,
        port=port,
        cpus=cpus,
        threads=_cores(cpus, cores) if cpus else None,
        threads_batch=len(cpus) if cpus else None,
        numa=numa,
        memory_nodes=tuple(memory_nodes),
        numa_policy=numa_policy if numa_on else None,
        numa_mask=tuple(numa_mask) if numa_on else (),
        shard_map=shard_map,
        kv_bytes=kv_bytes,
        context_length=policy.context_length,
        parallel=policy.parallel,
        kv_cache_type=policy.kv_cache_type,
    )


@lru_cache(maxsize=256)
def _numa_mode(cpus: tuple[int, ...] | None, node_cpus: tuple[tuple[int, ...] | None, ...], restricted: bool) -> str | None:
    """llama-server --numa for an instance on `cpus` of a NUMA host whose nodes list
    `node_cpus`. A shape fact, memoised; set logic only, so 1 and 1.0 may share an entry."""
    if cpus is None:
        return None if restricted else "distribute"
    mine = set(cpus)
    spans = [c for c in node_cpus if c and not mine.isdisjoint(c)]
    if not restricted and len(spans) > 1 and mine == set(chain.from_iterable(c or () for c in node_cpus)):
        return "distribute"  # every CPU of the host: ggml spreads threads over the nodes itself
    if len(spans) == 1 and mine == set(spans[0]):
        return "isolate"  # exactly one node's CPUs: threads stay where execution starts
    return "numactl"  # a subset: keep the affinity systemd gives, never widen it


# -- capacity ----------------------------------------------------------------------------


def _no_fit(h: _Host, what: str, total: int, kv: Mapping[int, int], need: Mapping[int, int] | None = None) -> PlanError:
    """The error for a model that does not fit, with every node's arithmetic."""
    rows, rooms = [], 0
    for n in h.memory_nodes:
        f = h.free[n]
        if f is None:
            continue
        room = h.limit(n) - kv.get(n, 0)
        rooms += max(room, 0)
        short = need[n] - room if need and n in need else 0
        rows.append(
            f"  node {n}: free {human_bytes(f)} - headroom {human_bytes(h.headroom[n])} - reserved {human_bytes(h.reserved[n])}"
            f" - KV {human_bytes(kv.get(n, 0))} = room {human_bytes(room)}"
            + (f", needs {human_bytes(need[n])}" if need and n in need else "")
            + (f": {human_bytes(short)} short" if short > 0 else "")
        )
    short = f", {human_bytes(total - rooms)} more than the nodes' room" if total > rooms and not need else ""
    return PlanError(f"{what}: the weights need {human_bytes(total)}{short}\n" + "\n".join(rows))


def _water_fill(total: float, speed: Mapping[int, float], cap: Mapping[int, float]) -> dict[int, float]:
    """Split `total` in proportion to `speed`, no node above its `cap`; excess goes to the others."""
    out = dict.fromkeys(speed, 0.0)
    left, open_ = float(total), {n: s for n, s in speed.items() if s > 0 and cap[n] > 0}
    while open_ and left > 0:
        ssum = sum(open_.values())
        over = [n for n, s in open_.items() if left * s / ssum > cap[n]]
        if not over:
            for n, s in open_.items():
                out[n] = left * s / ssum
            return out
        for n in over:
            out[n] = cap[n]
            left -= cap[n]
            del open_[n]
    return out


# -- strategies ----------------------------------------------------------------------------


def _preference(h: _Host, n: int) -> tuple:
    """Order of preference for the hot layerless tensors and the KV cache: fastest, has CPUs,
    nearest to the CPUs (distances break ties), lowest id (node 0 keeps the map seed-only)."""
    return (-h.speed.get(n, 0.0), n not in h.cpu_nodes, h.cpu_distance[n], n)


def _shard(h: _Host, lay: ModelLayout, policy: Policy, kv_total: int, cores: Any) -> dict[str, Any]:
    embed_bytes, other_bytes = lay.map_groups["embed"][1], lay.map_groups["other"][1]
    need_total = lay.total_bytes
    order = sorted(h.speed, key=partial(_preference, h))
    # The home node holds the KV cache and, if it can, the output tensors beside it.
    home = next((n for n in order if h.limit(n) >= kv_total + other_bytes), None)
    home = home if home is not None else next((n for n in order + h.last_resort if h.limit(n) >= kv_total), None)
    if home is None:
        raise _no_fit(h, f"the KV cache ({human_bytes(kv_total)}) fits on no node", need_total, {})
    kv = {home: kv_total}
    room = {n: h.limit(n) - kv.get(n, 0) for n in h.memory_nodes}
    used = dict.fromkeys(h.memory_nodes, 0)
    if need_total > sum(max(r, 0) for r in room.values()):
        raise _no_fit(h, f"model {lay.source} does not fit (KV cache {human_bytes(kv_total)} on home node {home})", need_total, kv)

    candidates = order + h.last_resort

    def place(nbytes: int, prefer: list[int]) -> int | None:
        if not nbytes:
            return None
        for n in prefer:
            if used[n] + nbytes <= room[n]:
                used[n] += nbytes
                return n
        raise _no_fit(h, f"model {lay.source}: no node has room for {human_bytes(nbytes)} of layerless tensors", need_total, kv)

    # Output (read every token) on the home node; the embedding (a few rows per token) beside it.
    other_node = place(other_bytes, candidates)
    embed_node = place(embed_bytes, [other_node] + candidates if other_node is not None else candidates)

    # Hot bytes (layers + output) split by speed among the primary nodes; overflow to last resort.
    layer_total = lay.layer_prefix[-1]
    hot_cap = {n: room[n] - (embed_bytes if n == embed_node else 0) for n in order}
    hot = _water_fill(layer_total + other_bytes, h.speed, {n: max(c, 0) for n, c in hot_cap.items()})
    target = {n: max(hot[n] - (other_bytes if n == other_node else 0), 0.0) for n in order}
    spill = layer_total - sum(target.values())
    for n in h.last_resort:
        take = min(max(room[n] - used[n], 0), max(spill, 0))
        target[n] = float(take)
        spill -= take
    layer_room = {n: room[n] - used[n] for n in candidates}

    node_bytes = dict(used)
    runs = _contiguous(lay, [n for n in candidates if target.get(n, 0) > 0], target, layer_room)
    if runs is not None:
        layer_nodes = _assignment(lay, runs)
        for start, end, n in runs:
            node_bytes[n] += lay.layer_prefix[end] - lay.layer_prefix[start]
    else:
        scattered = _scattered(lay.layer_bytes, candidates, target, layer_room)
        if scattered is None:
            raise _no_fit(h, f"model {lay.source} does not fit in whole layers", need_total, kv)
        h.reasons.append("layers could not stay in contiguous runs within capacity; the map lists them one by one")
        layer_nodes = scattered
        for layer, n in layer_nodes.items():
            node_bytes[n] += lay.layer_bytes[layer]
    used_last = [n for n in h.last_resort if node_bytes[n]]
    if used_last:
        h.warnings.append(f"CPU-less memory node(s) {used_last} hold weights without bandwidth measurements: run bench to plan by speed")
    smap = _shard_map(lay, runs, layer_nodes, embed_node, other_node)
    cpus = h.all_cpus
    inst = _instance(
        h, policy, name=policy.service_name, port=policy.service_port, cpus=cpus,
        memory_nodes=[n for n in node_bytes if node_bytes[n]], numa_policy="preferred", numa_mask=[home],
        shard_map=smap, kv_bytes=kv_total, cores=cores,
    )
    h.reasons.append(f"home node {home}: output tensors and the KV cache ({human_bytes(kv_total)}) stay there")
    return dict(layer_nodes=layer_nodes, embed_node=embed_node, other_node=other_node, shard_map=smap,
                node_bytes={n: b for n, b in node_bytes.items() if b}, kv=kv, instances=(inst,), weights=None)


Run = tuple[int, int, int]  # (start, end, node): layers[start:end] of the layout on node


def _contiguous(lay: ModelLayout, seq: list[int], target: Mapping[int, float], room: Mapping[int, float]) -> list[Run] | None:
    """Layers in order, in runs: each goes to the node whose share its midpoint falls in,
    moving on when a node is full. None when the runs cannot be packed. A run ends at the
    first layer whose midpoint passes the node's share or that overflows its room; both
    only grow along the layers, so each run's end is a binary search."""
    layers, prefix, mids = lay.layers, lay.layer_prefix, lay.layer_midpoints
    if not seq:
        return [] if not layers else None
    bounds, acc = [], 0.0
    for n in seq:
        acc += target[n]
        bounds.append(acc)
    runs: list[Run] = []
    start, last = 0, len(seq) - 1
    for k, node in enumerate(seq):
        if start == len(layers):
            break
        by_share = len(layers) if k == last else bisect_right(mids, bounds[k], start)
        by_room = max(bisect_right(prefix, prefix[start] + room[node], start) - 1, start)
        end = min(by_share, by_room)
        if end > start:
            runs.append((start, end, node))
        start = end
    return runs if start == len(layers) else None


def _assignment(lay: ModelLayout, runs: list[Run]) -> dict[int, int]:
    """layer -> node, in layer order."""
    out: dict[int, int] = {}
    for start, end, node in runs:
        out.update(dict.fromkeys(lay.layers[start:end], node))
    return out


def _shard_map(lay: ModelLayout, runs: list[Run] | None, layer_nodes: Mapping[int, int], embed: int | None, other: int | None) -> str:
    """The map text; straight from the runs when the layer ids have no gap (each run is then
    one range, and neighbouring runs are on different nodes), else layer by layer."""
    ids = lay.layers
    if runs is None or (ids and ids[-1] - ids[0] != len(ids) - 1):
        return shardmap.format_map(shardmap.from_assignment(layer_nodes, embed, other))
    return shardmap.format_map(shardmap.from_ranges([(ids[s], ids[e - 1], n) for s, e, n in runs], embed, other))


def _scattered(layer_bytes: Mapping[int, int], nodes: list[int], target: Mapping[int, float], room: Mapping[int, float]) -> dict[int, int] | None:
    """Largest layers first, each to the node furthest below its target that still has room."""
    used = dict.fromkeys(nodes, 0)
    out: dict[int, int] = {}
    for layer, b in sorted(layer_bytes.items(), key=lambda kv: (-kv[1], kv[0])):
        fits = [n for n in nodes if used[n] + b <= room[n]]
        if not fits:
            return None
        n = max(fits, key=lambda x: (target.get(x, 0) - used[x], -nodes.index(x)))
        out[layer] = n
        used[n] += b
    return dict(sorted(out.items()))


def _replicate(h: _Host, lay: ModelLayout, policy: Policy, kv_total: int, cores: Any) -> dict[str, Any]:
    if not h.topo.numa_available or not h.topo.nodes:
        raise PlanError("replicate needs NUMA nodes; this host has one flat memory domain")
    if any(n.cpus is None for n in h.nodes):
        raise PlanError("replicate binds each copy to a node's CPUs, and the topology does not list CPUs")
    node_cpus = {x.id: x.cpus for x in h.nodes}
    homes = [n for n in sorted(h.free) if node_cpus[n]]
    if not homes:
        raise PlanError("replicate needs a node with both CPUs and memory; there is none")
    need = lay.total_bytes + kv_total
    fits = [n for n in homes if h.limit(n) >= need]
    if not fits:
        raise _no_fit(h, f"replicate: no node holds a full copy of {lay.source} plus its KV cache ({human_bytes(kv_total)})",
                      lay.total_bytes, {n: kv_total for n in homes})
    if len(fits) < len(homes):
        h.warnings.append(f"replicate: node(s) {[n for n in homes if n not in fits]} cannot hold a copy and run none")
    # Memoryless CPU nodes lend their CPUs to the nearest replica.
    cpus = {n: list(node_cpus[n] or ()) for n in fits}
    for x in h.nodes:
        if x.cpus and x.id not in h.free:
            if h.topo.distances is None and len(fits) > 1:
                h.warnings.append(f"node {x.id} has CPUs but no memory, and without distances no replica is nearest: its CPUs stay idle")
                continue
            near = min(fits, key=lambda n: (h.dist(x.id, n), n))
            cpus[near] += list(x.cpus)
    instances = []
    for i, n in enumerate(fits):
        smap = _shard_map(lay, [(0, len(lay.layers), n)] if lay.layers else [], dict.fromkeys(lay.layers, n),
                          n if _has_embed(lay) else None, n if _has_other(lay) else None)
        instances.append(_instance(
            h, policy, name=f"{policy.service_name}-node{n}", port=policy.service_port + 1 + i, cpus=tuple(sorted(cpus[n])),
            memory_nodes=[n], numa_policy="bind", numa_mask=[n], shard_map=smap, kv_bytes=kv_total, cores=cores,
        ))
    h.reasons.append(f"replicate: {len(fits)} full copies, one per node with CPUs and memory, each bound to its node, "
                     f"on ports {policy.service_port + 1}..{policy.service_port + len(fits)} behind one front-end on {policy.service_port}")
    return dict(layer_nodes={}, embed_node=None, other_node=None, shard_map="",
                node_bytes={n: lay.total_bytes for n in fits}, kv={n: kv_total for n in fits}, instances=tuple(instances), weights=None)


def _has_embed(lay: ModelLayout) -> bool:
    return lay.map_groups["embed"][0] > 0


def _has_other(lay: ModelLayout) -> bool:
    return lay.map_groups["other"][0] > 0


def _split(total: int, shares: Mapping[int, float]) -> dict[int, int]:
    """Integer bytes per node in proportion to `shares`, summing exactly to `total`."""
    s = sum(shares.values())
    out = {n: int(total * w // s) for n, w in shares.items()}
    for n in list(out)[: total - sum(out.values())]:
        out[n] += 1
    return out


def _interleave(h: _Host, lay: ModelLayout, policy: Policy, kv_total: int, cores: Any, *, weighted: bool, bench: Bench | None) -> dict[str, Any]:
    nodes = sorted(h.speed)
    if h.last_resort:
        h.reasons.append(f"interleave leaves out CPU-less node(s) {h.last_resort}: no bandwidth measurements")
    weights: dict[int, int] | None = None
    if weighted:
        bw = dict(bench.node_bandwidth) if bench else {}
        missing = [n for n in nodes if n not in bw]
        if missing:
            raise PlanError(f"weighted-interleave needs measured bandwidth for node(s) {missing}: run bench first")
        top = max(bw[n] for n in nodes)
        weights = {n: max(1, round(WEIGHT_SCALE * bw[n] / top)) for n in nodes}
        shares: dict[int, float] = {n: float(w) for n, w in weights.items()}
        h.reasons.append("weighted-interleave weights from measured bandwidth: " + ", ".join(f"node{n}={w}" for n, w in weights.items()))
    else:
        shares = {n: 1.0 for n in nodes}
    node_bytes = _split(lay.total_bytes, shares)
    kv = _split(kv_total, shares)
    if any(node_bytes[n] + kv[n] > h.limit(n) for n in nodes):
        raise _no_fit(h, f"{'weighted-' if weighted else ''}interleave: {lay.source} does not fit when spread over nodes {nodes}", lay.total_bytes, kv, node_bytes)
    inst = _instance(
        h, policy, name=policy.service_name, port=policy.service_port, cpus=h.all_cpus, memory_nodes=nodes,
        numa_policy="weighted-interleave" if weighted else "interleave", numa_mask=nodes, shard_map="", kv_bytes=kv_total, cores=cores,
    )
    return dict(layer_nodes={}, embed_node=None, other_node=None, shard_map="", node_bytes=node_bytes, kv=kv, instances=(inst,), weights=weights)


# -- the entry points ---------------------------------------------------------------------


def plan(
    topology: Topology,
    layout: ModelLayout,
    bench: Bench | None = None,
    policy: Policy | None = None,
    *,
    cores: Mapping[int, int] | None = None,
) -> Plan:
    """Plan one host. `cores`: cpu -> its physical core, the lowest CPU of its SMT sibling
    group (`cores_from_facts`).
    Whether the kernel has weighted interleave matters only to how it is deployed
    (deployment.describe), not to the plan."""
    policy = policy or Policy()
    h = _host(topology, policy, bench)
    if topology.numa_available and any(n.cpus is None for n in topology.nodes):
        h.warnings.append("the topology lists no CPUs (old numactl format): no -t/-tb and no CPU affinity")
    if cores is None and any(n.cpus for n in h.nodes):
        h.warnings.append("no SMT sibling facts: -t counts every CPU, not physical cores")
    kv_per_token = layout.kv_bytes_per_token(policy.kv_cache_type)
    kv_total = kv_per_token * policy.context_length * policy.parallel

    def placed(strategy: str) -> dict[str, Any]:
        if strategy == "shard":
            return _shard(h, layout, policy, kv_total, cores)
        if strategy == "replicate":
            return _replicate(h, layout, policy, kv_total, cores)
        return _interleave(h, layout, policy, kv_total, cores, weighted=strategy == "weighted-interleave", bench=bench)

    def run(strategy: str) -> dict[str, Any]:
        return _baseline(h, layout, policy, kv_total, cores, strategy, placed) if strategy in BASELINES else placed(strategy)

    strategy = policy.strategy
    if strategy == "auto":
        strategy = _choose(h, policy, bench, run)
    result = run(strategy)

    roles = []
    inst_cpus = [_cpu_set(inst.cpus) for inst in result["instances"] if inst.cpus]
    for n in h.nodes:
        holds = result["node_bytes"].get(n.id, 0) > 0
        threads = bool(n.cpus) and any(not mine.isdisjoint(n.cpus) for mine in inst_cpus)
        role = "weights+threads" if holds and threads else "weights" if holds else "threads" if threads else "unused"
        roles.append(NodeBudget(
            id=n.id, has_cpus=None if n.cpus is None else bool(n.cpus), free=h.free.get(n.id, 0 if n.size_mb == 0 else None),
            headroom=h.headroom.get(n.id, 0), reserved=h.reserved.get(n.id, 0), kv=result["kv"].get(n.id, 0),
            weights=result["node_bytes"].get(n.id, 0), speed=h.speed.get(n.id, 0.0), role=role,
        ))
    return Plan(
        strategy=strategy,
        requested_strategy=policy.strategy,
        shard_map=result["shard_map"],
        layer_nodes=result["layer_nodes"],
        embed_node=result["embed_node"],
        other_node=result["other_node"],
        node_bytes=result["node_bytes"],
        nodes=tuple(roles),
        instances=result["instances"],
        kv_bytes_per_token=kv_per_token,
        kv_bytes=kv_total,
        interleave_weights=result["weights"],
        warnings=tuple(h.warnings),
        reasons=tuple(h.reasons),
        layout=layout,
        topology_fingerprint=topology.fingerprint(),
    )


def _baseline(h: _Host, lay: ModelLayout, policy: Policy, kv_total: int, cores: Any, name: str, run: Any) -> dict[str, Any]:
    """A baseline's bytes and instance: interleave's for distribute and interleave-all (the
    kernel spreads them; how the pages get there is the deployment's), shard on the one
    node that suits best for one-node."""
    if name != "one-node":
        result = run("interleave")
        inst = result["instances"][0]
        numa = "distribute" if name == "distribute" and inst.numa else inst.numa
        policy_name = "interleave" if name == "interleave-all" else None
        result["instances"] = (replace(inst, numa=numa, numa_policy=policy_name if inst.numa_policy else None,
                                       numa_mask=inst.numa_mask if policy_name else ()),)
        h.reasons.append(f"{name}: the baseline {'llama-server --numa distribute on a cold page cache' if name == 'distribute' else 'every allocation interleaved over all nodes'}")
        return result
    homes = [n for n in h.nodes if n.cpus and n.id in h.free]
    if not homes:
        raise PlanError("one-node needs a node with both CPUs and memory; there is none")
    need = lay.total_bytes + kv_total
    fits = [n.id for n in homes if h.limit(n.id) >= need]
    if not fits:
        raise _no_fit(h, f"one-node: no node holds {lay.source} plus its KV cache ({human_bytes(kv_total)})", lay.total_bytes, {n.id: kv_total for n in homes})
    best = max(fits, key=lambda n: (h.speed.get(n, 0.0), h.limit(n), -n))
    one = _host(h.topo, replace(policy, nodes=(best,)), None)  # the host as if it had only that node
    result = _shard(one, lay, policy, kv_total, cores)
    h.warnings += [w for w in one.warnings if w not in h.warnings]
    h.reasons.append(f"one-node: node {best}'s CPUs and memory only (the fastest node that holds the model)")
    return result


def _choose(h: _Host, policy: Policy, bench: Bench | None, run: Any) -> str:
    """`auto`: the best measured variant that is feasible here (a baseline too, when `tune`
    measured it fastest), else a documented heuristic among the strategies."""
    measured = set(bench.strategy_speed) if bench else set()
    replicas = [x.id for x in h.nodes if x.cpus and x.id in h.free] if h.topo.numa_available and h.topo.nodes else []
    wants_replicate = len(replicas) > 1 and policy.parallel >= len(replicas)
    # without measurements only replicate's feasibility can change the answer: try only it
    trials = STRATEGIES[:4] + tuple(b for b in BASELINES if b in measured) if measured else ("replicate",) * wants_replicate
    feasible = []
    for s in trials:
        saved = (list(h.warnings), list(h.reasons))
        try:
            run(s)
            feasible.append(s)
        except PlanError:
            pass
        h.warnings[:], h.reasons[:] = saved  # a trial leaves no trace
    if measured and not feasible:
        return "shard"  # let shard raise its own error, with the numbers
    speed = {s: v for s, v in (bench.strategy_speed if bench else {}).items() if s in feasible}
    if speed:
        best = max(speed, key=lambda s: (speed[s], -feasible.index(s)))
        h.reasons.append(f"auto: measured {bench.speed_unit} " + ", ".join(f"{s} {v:g}" for s, v in speed.items())  # type: ignore[union-attr]
                         + f": {best} is fastest" + (f" ({', '.join(s for s in feasible if s not in speed)} not measured)" if len(speed) < len(feasible) else ""))
        return best
    if "replicate" in feasible and wants_replicate:
        h.reasons.append(f"auto without measurements: {policy.parallel} parallel slots >= {len(replicas)} nodes that each hold a copy: replicate")
        return "replicate"
    h.reasons.append("auto without measurements: shard (the default); run bench to let measurements decide")
    return "shard"


def cores_from_facts(value: Any) -> dict[int, int] | None:
    """cpu -> its physical core (the lowest CPU of its group) from SMT sibling facts: a
    mapping cpu -> list or cpulist, or a list of groups (sysfs thread_siblings_list).
    Built once per distinct facts (a fleet has a few hardware types), copied per call: a
    dict's copy costs less than parsing, and its lookups less than a read-only view's."""
    if value is None:
        return None
    return _cores_of(_sibling_key(value)).copy()  # the underlying dict's copy: C speed


def _sibling_key(value: Any) -> tuple:
    """An exact, hashable copy of the sibling facts (a fleet repeats a few of them): a
    group stays a string or becomes a tuple, so "036" and ["0", "3", "6"] never meet."""
    if isinstance(value, list) and str not in set(map(type, value)):
        return ("list", tuple(map(tuple, value)))  # the usual JSON facts: lists of ints, at C speed
    if isinstance(value, Mapping):
        return ("map", tuple((k, g if isinstance(g, str) else tuple(g)) for k, g in value.items()))
    return ("list", tuple(g if isinstance(g, str) else tuple(g) for g in value))


@lru_cache(maxsize=256)
def _cores_of(key: tuple) -> MappingProxyType[int, int]:
    out: dict[int, int] = {}
    groups = (g for _, g in key[1]) if key[0] == "map" else key[1]
    for g in groups:
        ids = parse_cpulist(g) if isinstance(g, str) else list(map(int, g))
        if ids:
            out.update(dict.fromkeys(ids, min(ids)))
    return MappingProxyType(out)  # shared between calls: never to be changed


def plan_for_host(facts: Mapping[str, Any], layout: ModelLayout, bench: Bench | None, policy: Policy) -> Plan:
    """Plan from a host's cached facts: `numa` (the topology JSON), optional `cpu.thread_siblings`."""
    topo_json = facts.get("numa") or facts.get("topology")
    if topo_json is None:
        raise PlanError("facts have no NUMA topology")
    topo = Topology.from_json(topo_json)
    cores = cores_from_facts((facts.get("cpu") or {}).get("thread_siblings"))
    return plan(topo, layout, bench, policy, cores=cores)


def layer_runs(p: Plan) -> list[tuple[int, int, int, int]]:
    """(first, last, node, bytes) runs of consecutive layers on one node."""
    runs: list[list[int]] = []
    for layer in sorted(p.layer_nodes):
        node, b = p.layer_nodes[layer], p.layout.layer_bytes[layer]
        if runs and runs[-1][2] == node and runs[-1][1] == layer - 1:
            runs[-1][1] = layer
            runs[-1][3] += b
        else:
            runs.append([layer, layer, node, b])
    return [tuple(r) for r in runs]  # type: ignore[misc]
