"""Figures from bench results: per-host summaries, outliers, asymmetric matrices, regressions.

Pure functions over the result documents (schemas/bench-result.schema.json); node ids are
used as keys, never as indices. docs/bench.md explains each threshold.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .store import node_kind

NODE_OUTLIER = 0.15  # a node this far below its group's fleet median is flagged
ASYMMETRY_TOLERANCE = 0.10  # matrix[i][j] and matrix[j][i] may differ by this much of the larger
REGRESSION = 0.10  # compare: a figure this much worse than before is a regression
STRATEGIES = ("shard", "interleave", "replicate")


# -- one host -----------------------------------------------------------------------------


def _cells(matrix: Mapping[str, Any]) -> dict[tuple[int, int], float]:
    """(row node, column node) -> value."""
    return {(r, c): v for r, row in zip(matrix["rows"], matrix["values"]) for c, v in zip(matrix["columns"], row)}


def _local_remote(matrix: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Mean of the cells where the CPUs' node is the memory's node, and of all the others."""
    cells = _cells(matrix)
    local = [v for (r, c), v in cells.items() if r == c]
    remote = [v for (r, c), v in cells.items() if r != c]
    return (statistics.fmean(local) if local else None, statistics.fmean(remote) if remote else None)


@dataclass(frozen=True)
class HostSummary:
    host: str
    cpu_model: str | None
    nodes: tuple[dict[str, Any], ...]  # the result's nodes, each with "kind" added
    local_read: float | None
    remote_read: float | None
    local_latency: float | None
    remote_latency: float | None
    strategies: dict[str, float]
    best: str
    meets_4x_llc: bool | None

    @property
    def local_remote_ratio(self) -> float | None:
        """Local over remote read bandwidth (None on a one-node host)."""
        if self.local_read is None or not self.remote_read:
            return None
        return self.local_read / self.remote_read

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "cpu_model": self.cpu_model,
            "nodes": [{k: n[k] for k in ("id", "kind", "cpu_node", "threads", "read", "copy", "triad", "latency_ns")} for n in self.nodes],
            "local_read_gbps": self.local_read,
            "remote_read_gbps": self.remote_read,
            "local_remote_ratio": self.local_remote_ratio,
            "local_latency_ns": self.local_latency,
            "remote_latency_ns": self.remote_latency,
            "strategies": self.strategies,
            "best": self.best,
            "meets_4x_llc": self.meets_4x_llc,
        }


def summarize(host: str, result: Mapping[str, Any]) -> HostSummary:
    local, remote = _local_remote(result["matrix"])
    lat_local, lat_remote = _local_remote(result["latency"])
    s = result["strategies"]
    return HostSummary(
        host=host,
        cpu_model=result["host"]["cpu_model"],
        nodes=tuple({**n, "kind": node_kind(n)} for n in result["nodes"]),
        local_read=local,
        remote_read=remote,
        local_latency=lat_local,
        remote_latency=lat_remote,
        strategies={k: s[k]["read"] for k in STRATEGIES},
        best=s["best"],
        meets_4x_llc=result["parameters"]["meets_4x_llc"],
    )


# -- outliers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeOutlier:
    host: str
    node: int
    cpu_model: str | None
    kind: str
    read: float
    median: float  # of every node of the same CPU model and kind in the run
    peers: int  # how many nodes that median is over

    @property
    def deficit(self) -> float:
        return 1 - self.read / self.median

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "node": self.node, "cpu_model": self.cpu_model, "kind": self.kind, "read_gbps": self.read,
                "median_gbps": self.median, "peers": self.peers, "below_median": round(self.deficit, 4)}  # fmt: skip


def node_outliers(summaries: Iterable[HostSummary], threshold: float = NODE_OUTLIER) -> list[NodeOutlier]:
    """Nodes reading more than `threshold` below the median of their group: the same CPU model
    and node kind (cpu+memory or memory-only) across the whole run, this host's other nodes
    included. A missing DIMM or a wrong BIOS setting shows up here."""
    groups: dict[tuple[str | None, str], list[tuple[str, dict[str, Any]]]] = {}
    for s in summaries:
        for n in s.nodes:
            groups.setdefault((s.cpu_model, n["kind"]), []).append((s.host, n))
    out = []
    for (model, kind), members in groups.items():
        median = statistics.median(n["read"] for _, n in members)
        for host, n in members:
            if n["read"] < (1 - threshold) * median:
                out.append(NodeOutlier(host, n["id"], model, kind, n["read"], median, len(members)))
    return sorted(out, key=lambda o: (o.host, o.node))


@dataclass(frozen=True)
class Asymmetry:
    host: str
    a: int  # node ids: a's CPUs reading b's memory is `ab`, the reverse `ba`
    b: int
    ab: float
    ba: float

    @property
    def difference(self) -> float:
        return abs(self.ab - self.ba) / max(self.ab, self.ba)

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "nodes": [self.a, self.b], "read_gbps": [self.ab, self.ba], "difference": round(self.difference, 4)}


def asymmetries(host: str, result: Mapping[str, Any], tolerance: float = ASYMMETRY_TOLERANCE) -> list[Asymmetry]:
    """Node pairs whose cross reads differ by more than `tolerance` of the larger one.

    Only pairs where both nodes have CPUs and memory have both directions measured. On sound
    hardware the two directions cross the same link to the same kind of memory."""
    cells = _cells(result["matrix"])
    ids = sorted({r for r, _ in cells} & {c for _, c in cells})
    out = []
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            ab, ba = cells.get((a, b)), cells.get((b, a))
            if ab is not None and ba is not None and abs(ab - ba) > tolerance * max(ab, ba):
                out.append(Asymmetry(host, a, b, ab, ba))
    return out


# -- the fleet ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetReport:
    summaries: tuple[HostSummary, ...]
    outliers: tuple[NodeOutlier, ...]
    asymmetric: tuple[Asymmetry, ...]
    failed: Mapping[str, str]  # hosts without a result: host -> why
    threshold: float = NODE_OUTLIER
    tolerance: float = ASYMMETRY_TOLERANCE

    def flagged_hosts(self) -> set[str]:
        return {o.host for o in self.outliers} | {a.host for a in self.asymmetric}

    def to_json(self) -> dict[str, Any]:
        return {
            "hosts": [s.to_json() for s in self.summaries],
            "outliers": [o.to_json() for o in self.outliers],
            "asymmetric": [a.to_json() for a in self.asymmetric],
            "failed": dict(self.failed),
            "thresholds": {"node_outlier": self.threshold, "asymmetry_tolerance": self.tolerance},
        }


def fleet_report(results: Mapping[str, Mapping[str, Any]], failed: Mapping[str, str] | None = None,
                 *, threshold: float = NODE_OUTLIER, tolerance: float = ASYMMETRY_TOLERANCE) -> FleetReport:  # fmt: skip
    summaries = tuple(summarize(h, r) for h, r in results.items())
    asym = tuple(a for h, r in results.items() for a in asymmetries(h, r, tolerance))
    return FleetReport(summaries, tuple(node_outliers(summaries, threshold)), asym, dict(failed or {}), threshold, tolerance)


# -- two runs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    host: str
    metric: str  # "node 0 read", "node 0 latency", "shard read", ...
    unit: str
    before: float
    after: float
    higher_is_better: bool
    regression: bool

    @property
    def change(self) -> float:
        return self.after / self.before - 1

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "metric": self.metric, "unit": self.unit, "before": self.before, "after": self.after,
                "change": round(self.change, 4), "regression": self.regression}  # fmt: skip


def _figures(result: Mapping[str, Any]) -> dict[str, tuple[float, str, bool]]:
    """metric -> (value, unit, higher is better)."""
    out: dict[str, tuple[float, str, bool]] = {}
    for n in result["nodes"]:
        out[f"node {n['id']} read"] = (n["read"], "GB/s", True)
        out[f"node {n['id']} triad"] = (n["triad"], "GB/s", True)
        out[f"node {n['id']} latency"] = (n["latency_ns"], "ns", False)
    for k in STRATEGIES:
        out[f"{k} read"] = (result["strategies"][k]["read"], "GB/s", True)
    return out


def compare(before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]], threshold: float = REGRESSION) -> list[Change]:
    """Every figure of every host in both runs; `regression` when it got worse by more than
    `threshold` (bandwidth fell, or latency rose, by that fraction)."""
    out = []
    for host in [h for h in after if h in before]:
        a, b = _figures(before[host]), _figures(after[host])
        for metric in [m for m in b if m in a]:
            (va, unit, up), (vb, _, _) = a[metric], b[metric]
            worse = vb < (1 - threshold) * va if up else vb > (1 + threshold) * va
            out.append(Change(host, metric, unit, va, vb, up, worse))
    return out
