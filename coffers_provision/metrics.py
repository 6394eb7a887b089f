"""Prometheus text-format files for node_exporter's textfile collector (`--metrics-dir`).

`bench`, `tune` and `status` each turn what they measured into `Sample`s (the converters
below take their JSON documents) and `write` puts them in `<dir>/coffers_<job>.prom`.
prometheus_client formats the text and writes it atomically (a temp file, then a rename),
so the collector never reads half a file. Every sample carries a `host` label; per-node
figures a `node` label too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from .errors import CoffersError

PREFIX = "coffers_"


class MetricsError(CoffersError):
    """The metrics directory cannot be written; the message names it."""


@dataclass(frozen=True)
class Sample:
    name: str  # without the coffers_ prefix
    help: str
    labels: Mapping[str, str]
    value: float


def registry_of(samples: Iterable[Sample]) -> CollectorRegistry:
    """One gauge per metric name, one series per label set."""
    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for s in samples:
        gauge = gauges.get(s.name)
        if gauge is None:
            gauge = gauges[s.name] = Gauge(PREFIX + s.name, s.help, sorted(s.labels), registry=registry)
        gauge.labels(**{k: str(v) for k, v in s.labels.items()}).set(s.value)
    return registry


def write(directory: Path, job: str, samples: Iterable[Sample]) -> Path:
    """`<directory>/coffers_<job>.prom`, replaced atomically."""
    path = Path(directory) / f"{PREFIX}{job}.prom"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), registry_of(samples))
    except OSError as e:
        raise MetricsError(f"--metrics-dir {directory}: {e.strerror or e}") from None
    return path


# -- what each command measured ---------------------------------------------------------------


def bench_samples(results: Mapping[str, Mapping[str, Any]]) -> list[Sample]:
    """Per host and node pair: read GB/s (numa-shard-bench results, host -> result)."""
    out = []
    for host, doc in sorted(results.items()):
        m = doc["matrix"]
        for cpu_node, row in zip(m["rows"], m["values"]):
            for mem_node, gbps in zip(m["columns"], row):
                out.append(Sample("bench_read_bandwidth_gbps", "read bandwidth measured by numa-shard-bench, GB/s",
                                  {"host": host, "node": str(mem_node), "cpu_node": str(cpu_node)}, float(gbps)))
        for name, figures in sorted((doc.get("strategies") or {}).items()):
            if isinstance(figures, Mapping) and "read" in figures:
                out.append(Sample("bench_strategy_read_gbps", "read GB/s of a placement strategy in numa-shard-bench",
                                  {"host": host, "strategy": name}, float(figures["read"])))
    return out


def tune_samples(hosts: Mapping[str, Mapping[str, Any]]) -> list[Sample]:
    """Per host and strategy: median generation tokens/s (tune --json's hosts)."""
    out = []
    for host, doc in sorted(hosts.items()):
        for v in doc.get("variants") or []:
            record = v.get("record")
            if record:
                out.append(Sample("tune_generation_tokens_per_second", "median generation tokens/s measured by tune",
                                  {"host": host, "strategy": v["variant"]}, float(record["generation_tokens_per_s"]["median"])))
        if doc.get("winner"):
            out.append(Sample("tune_winner", "1 for the strategy tune left deployed", {"host": host, "strategy": doc["winner"]}, 1.0))
    return out


def status_samples(hosts: Mapping[str, Mapping[str, Any]]) -> list[Sample]:
    """Per host: reachable, drift; per instance: up, healthy, last tokens/s; per layer range:
    the share of resident pages on the planned node; per node: free memory (status --json's hosts)."""
    out = []
    for host, doc in sorted(hosts.items()):
        out.append(Sample("status_reachable", "1 when status reached the host", {"host": host}, 0.0 if doc.get("unreachable") else 1.0))
        if "drift" not in doc:
            continue
        out.append(Sample("status_drift", "1 when what the host runs differs from the plan", {"host": host}, 1.0 if doc["drift"]["drifted"] else 0.0))
        for inst in doc["instances"]:
            base = {"host": host, "instance": inst["unit"]}
            out.append(Sample("status_healthy", "1 healthy, 0 unhealthy, -1 not asked", base,
                              {True: 1.0, False: 0.0, None: -1.0}[inst["health"]["ok"]]))
            last = inst.get("last_check")
            if last and last.get("generation_tokens_per_s") is not None:
                out.append(Sample("status_generation_tokens_per_second", "generation tokens/s of the last health check", base,
                                  float(last["generation_tokens_per_s"])))
            for r in (inst.get("placement") or {}).get("ranges") or []:
                if r["share"] is not None:
                    out.append(Sample("status_placement_share", "share of resident model pages on the planned node",
                                      {**base, "node": str(r["node"]), "range": r["range"]}, float(r["share"])))
        for n in doc["kernel"]["nodes"]:
            out.append(Sample("status_node_free_bytes", "free memory per NUMA node", {"host": host, "node": str(n["node"])}, float(n["free_bytes"])))
    return out
