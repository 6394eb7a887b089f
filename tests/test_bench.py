"""The bench results store, fleet report, outliers, comparison, plots and measured planning,
on crafted result sets (schema-valid numa-shard-bench documents built here)."""

from __future__ import annotations

import csv
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from coffers_provision.bench import analysis, store
from coffers_provision.bench.planning import load_bench_for_host
from coffers_provision.bench.store import HostRecord, StoreError, load_run, resolve_run, write_run
from coffers_provision.cli import main

EPYC = "AMD EPYC 7742 64-Core Processor"
XEON = "Intel(R) Xeon(R) Platinum 8470 CPU @ 2.00GHz"


def crafted(
    hostname: str,
    reads: dict[int, float],
    *,
    cpu_model: str | None = EPYC,
    memory_only: tuple[int, ...] = (),
    remote: float = 0.45,
    cells: dict[tuple[int, int], float] | None = None,
    strategies: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A numa-shard-bench result: node id -> read GB/s; remote cells are `remote` x the
    memory node's read unless `cells` says otherwise. Memory-only nodes borrow the lowest
    CPU node's CPUs."""
    ids = sorted(reads)
    cpu_nodes = [n for n in ids if n not in memory_only]
    cpus = {n: list(range(4 * i, 4 * i + 4)) for i, n in enumerate(cpu_nodes)}
    near = {n: n if n in cpus else cpu_nodes[0] for n in ids}
    values = [[(cells or {}).get((r, c), reads[c] if r == near[c] else round(reads[c] * remote, 3)) for c in ids] for r in cpu_nodes]
    latency = [[100.0 if r == near[c] else 180.0 for c in ids] for r in cpu_nodes]
    hm = len(ids) / sum(1 / reads[n] for n in ids)
    strat = strategies or {"shard": round(hm * 1.1, 3), "interleave": round(sum(reads.values()) * 0.6, 3), "replicate": round(sum(reads[n] for n in cpu_nodes) * 0.9, 3)}
    return {
        "schema_version": 1,
        "tool": {"name": "numa-shard-bench", "version": "0.1.0", "compiler": "gcc 12.2.0"},
        "host": {"hostname": hostname, "cpu_model": cpu_model, "kernel": "6.1.0", "machine": "x86_64", "numa": True,
                 "page_size": 4096, "llc_bytes": 268435456, "thp": "madvise"},
        "parameters": {"size_mb": 1024, "array_bytes": 1 << 30, "iterations": 10, "threads_per_node": None, "nodes": ids,
                       "threads_total": 4 * len(cpu_nodes), "latency_hops": 1000, "latency_bytes": 3 << 30, "meets_4x_llc": True},
        "nodes": [{"id": n, "cpus": cpus.get(n, []), "memory_mb": 65536, "cpu_node": near[n], "threads": 4, "placement": 1.0,
                   "read": reads[n], "copy": reads[n] * 0.7, "triad": reads[n] * 0.75, "latency_ns": 100.0} for n in ids],
        "matrix": {"kernel": "read", "unit": "GB/s", "rows": cpu_nodes, "columns": ids, "values": values},
        "latency": {"unit": "ns", "rows": cpu_nodes, "columns": ids, "values": latency},
        "distances": {"nodes": ids, "values": [[10 if a == b else 32 for b in ids] for a in ids]},
        "strategies": {"shard": {"read": strat["shard"], "per_node": [{"node": n, "read": reads[n]} for n in ids]},
                       "interleave": {"read": strat["interleave"], "nodes": ids},
                       "replicate": {"read": strat["replicate"], "copies": len(cpu_nodes)},
                       "best": max(("shard", "interleave", "replicate"), key=lambda k: strat[k])},
        "validation": {"ok": True, "max_relative_error": 0},
        "elapsed_s": 12.5,
    }  # fmt: skip


def store_run(root: Path, results: dict[str, dict], *, failed: dict[str, str] | None = None, when: datetime | None = None) -> Path:
    when = when or datetime(2025, 3, 1, 10, 15, tzinfo=timezone.utc)
    records = [HostRecord(h, "ok", r, {"host": h, "toolchain": {"gcc": "12.2.0"}}) for h, r in results.items()]
    records += [HostRecord(h, "failed", error=e) for h, e in (failed or {}).items()]
    return write_run(root, records, {"command": "bench"}, started=when, finished=when)


def fleet_of_epycs(slow: dict[tuple[str, int], float] | None = None) -> dict[str, dict]:
    """Four 4-node EPYC hosts near 40 GB/s per node (small natural spread), with `slow` overrides."""
    out = {}
    for i in range(4):
        reads = {n: 40.0 + ((i + n) % 3) * 0.8 for n in range(4)}
        for (host, node), value in (slow or {}).items():
            if host == f"epyc-{i}":
                reads[node] = value
        out[f"epyc-{i}"] = crafted(f"epyc-{i}", reads)
    return out


# -- the crafted documents are real results -------------------------------------------


def test_crafted_results_validate():
    assert store.result_errors(crafted("h", {0: 40.0, 1: 41.0, 2: 20.0}, memory_only=(2,))) == []
    bad = crafted("h", {0: 40.0})
    bad["nodes"][0]["read"] = -1
    assert store.result_errors(bad) == ["$.nodes[0].read: -1 is less than or equal to the minimum of 0"]


# -- outliers -----------------------------------------------------------------------------


def test_a_node_16_percent_below_the_median_is_flagged_and_one_14_percent_below_is_not():
    base = fleet_of_epycs()
    results = fleet_of_epycs({("epyc-1", 2): 40.8 * 0.84, ("epyc-3", 0): 40.8 * 0.87})
    report = analysis.fleet_report(results)
    assert [(o.host, o.node) for o in report.outliers] == [("epyc-1", 2)]
    o = report.outliers[0]
    assert o.peers == 16 and o.kind == "cpu+memory" and o.cpu_model == EPYC
    assert 0.15 < o.deficit < 0.17
    assert analysis.fleet_report(base).outliers == ()


def test_outliers_compare_only_the_same_cpu_model_and_node_kind():
    results = fleet_of_epycs()
    # CXL memory-only nodes are far slower than DRAM nodes, but only compared with each other.
    results["cxl-0"] = crafted("cxl-0", {0: 60.0, 1: 60.0, 2: 20.0, 3: 20.0}, cpu_model=XEON, memory_only=(2, 3))
    results["cxl-1"] = crafted("cxl-1", {0: 61.0, 1: 59.0, 2: 20.5, 3: 12.0}, cpu_model=XEON, memory_only=(2, 3))
    report = analysis.fleet_report(results)
    assert [(o.host, o.node, o.kind) for o in report.outliers] == [("cxl-1", 3, "memory-only")]
    assert report.outliers[0].peers == 4
    # The same Xeon nodes among EPYCs of 40 GB/s are not outliers: they are another model.
    assert not any(o.host.startswith("epyc") for o in report.outliers)


def test_an_unknown_cpu_model_is_its_own_group():
    results = fleet_of_epycs()
    results["mystery"] = crafted("mystery", {0: 10.0, 1: 10.0}, cpu_model=None)
    assert analysis.fleet_report(results).outliers == ()


def test_asymmetric_matrix_is_flagged_beyond_the_tolerance():
    reads = {0: 40.0, 1: 40.0, 2: 40.0}
    ok = crafted("a", reads, cells={(0, 1): 18.0, (1, 0): 17.0})  # 5.6% apart
    skew = crafted("b", reads, cells={(0, 2): 18.0, (2, 0): 15.0})  # 16.7% apart
    assert analysis.asymmetries("a", ok) == []
    (a,) = analysis.asymmetries("b", skew)
    assert (a.a, a.b, a.ab, a.ba) == (0, 2, 18.0, 15.0)
    assert a.difference == pytest.approx(3 / 18)
    assert analysis.asymmetries("a", ok, tolerance=0.05) != []
    # CPU-less nodes have no row, so no pair to compare.
    assert analysis.asymmetries("c", crafted("c", {0: 40.0, 1: 20.0}, memory_only=(1,))) == []


def test_summary_figures():
    s = analysis.summarize("h", crafted("h", {0: 40.0, 1: 30.0}, remote=0.5))
    assert s.local_read == pytest.approx(35.0)
    assert s.remote_read == pytest.approx((20.0 + 15.0) / 2)
    assert s.local_remote_ratio == pytest.approx(2.0)
    assert (s.local_latency, s.remote_latency) == (100.0, 180.0)
    one = analysis.summarize("one", crafted("one", {0: 40.0}))
    assert one.remote_read is None and one.local_remote_ratio is None


# -- compare ------------------------------------------------------------------------------


def test_compare_flags_a_crafted_regression_only():
    before = fleet_of_epycs()
    after = fleet_of_epycs({("epyc-2", 1): 30.0})  # from 40.0: -25%; the shard figure falls 8%, within 10%
    after["epyc-0"]["nodes"][3]["latency_ns"] = 125.0  # +25% latency
    after["epyc-3"]["nodes"][0]["read"] *= 0.95  # noise
    changes = analysis.compare(before, after)
    flagged = {(c.host, c.metric) for c in changes if c.regression}
    assert flagged == {("epyc-2", "node 1 read"), ("epyc-2", "node 1 triad"), ("epyc-0", "node 3 latency")}
    assert not any(c.regression for c in analysis.compare(before, fleet_of_epycs()))
    # a looser threshold lets the 25% latency rise pass
    assert ("epyc-0", "node 3 latency") not in {(c.host, c.metric) for c in analysis.compare(before, after, 0.3) if c.regression}


def test_bench_compare_cli(tmp_path, capsys):
    a = store_run(tmp_path, fleet_of_epycs())
    b = store_run(tmp_path, fleet_of_epycs({("epyc-2", 1): 30.0}), when=datetime(2025, 3, 2, tzinfo=timezone.utc))
    assert main(["bench", "compare", a.name, b.name, "--results", str(tmp_path), "--json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["regressed_hosts"] == ["epyc-2"]
    assert {c["metric"] for c in doc["changes"]} == {"node 1 read", "node 1 triad"}
    assert main(["bench", "compare", a.name, a.name, "--results", str(tmp_path)]) == 0
    assert "4 host(s) compared, 0 regressed" in capsys.readouterr().out
    assert main(["bench", "compare", a.name, "latest", "--results", str(tmp_path)]) == 3
    text = capsys.readouterr().out
    assert "REGRESSION" in text and "epyc-2" in text and "-25.0%" in text
    assert main(["bench", "compare", a.name, "20990101T000000Z", "--results", str(tmp_path)]) == 1
    assert "no bench run '20990101T000000Z'" in capsys.readouterr().err
    assert main(["bench", "compare", a.name, "--results", str(tmp_path)]) == 2


# -- the store ----------------------------------------------------------------------------


def test_a_run_is_stored_whole_with_summary_and_latest(tmp_path):
    results = {"epyc-0": crafted("epyc-0", {0: 40.0, 1: 20.0}, memory_only=(1,)), "epyc-1": crafted("epyc-1", {0: 41.0})}
    run = store_run(tmp_path, results, failed={"down": "e: timed out"})
    assert run.name == "20250301T101500Z"
    assert sorted(p.name for p in run.iterdir()) == ["epyc-0.facts.json", "epyc-0.json", "epyc-1.facts.json", "epyc-1.json", "run.json", "summary.csv"]
    assert os.readlink(tmp_path / "latest") == run.name  # relative: the store moves with a git checkout
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dirs left
    for host, doc in results.items():
        assert json.loads((run / f"{host}.json").read_text()) == doc
        assert store.result_errors(json.loads((run / f"{host}.json").read_text())) == []
    meta = json.loads((run / "run.json").read_text())
    assert meta["hosts"]["down"] == {"status": "failed", "error": "e: timed out", "elapsed_s": 0.0}
    assert meta["hosts"]["epyc-0"]["tool"] == {"name": "numa-shard-bench", "version": "0.1.0", "compiler": "gcc 12.2.0"}
    assert meta["hosts"]["epyc-0"]["gcc"] == "12.2.0"
    rows = list(csv.DictReader((run / "summary.csv").open()))
    assert [(r["host"], r["node"], r["kind"], r["read_gbps"], r["status"]) for r in rows] == [
        ("epyc-0", "0", "cpu+memory", "40.0", "ok"), ("epyc-0", "1", "memory-only", "20.0", "ok"),
        ("epyc-1", "0", "cpu+memory", "41.0", "ok"), ("down", "", "", "", "failed")]  # fmt: skip
    loaded = load_run(resolve_run(tmp_path, None))
    assert loaded.run_id == run.name and loaded.results == results and loaded.failed() == {"down": "e: timed out"}
    assert loaded.facts("epyc-1") == {"host": "epyc-1", "toolchain": {"gcc": "12.2.0"}}


def test_runs_in_the_same_second_get_distinct_sortable_ids_and_latest_follows(tmp_path):
    first = store_run(tmp_path, {"a": crafted("a", {0: 40.0})})
    second = store_run(tmp_path, {"a": crafted("a", {0: 41.0})})
    later = store_run(tmp_path, {"a": crafted("a", {0: 42.0})}, when=datetime(2025, 3, 1, 10, 16, tzinfo=timezone.utc))
    assert (first.name, second.name) == ("20250301T101500Z", "20250301T101500Z-1")
    assert store.list_runs(tmp_path) == [first.name, second.name, later.name]
    assert os.readlink(tmp_path / "latest") == later.name
    # a run where every host failed is stored, but latest keeps pointing at results
    none = store_run(tmp_path, {}, failed={"a": "down"}, when=datetime(2025, 3, 1, 11, tzinfo=timezone.utc))
    assert (none / "run.json").is_file() and os.readlink(tmp_path / "latest") == later.name


def test_an_invalid_result_never_lands(tmp_path):
    bad = crafted("a", {0: 40.0})
    del bad["matrix"]
    with pytest.raises(StoreError, match=r"a: the bench result breaks .*'matrix' is a required property"):
        store_run(tmp_path, {"a": bad})
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_stored_result_is_named_when_read(tmp_path):
    run = store_run(tmp_path, {"a": crafted("a", {0: 40.0})})
    (run / "a.json").write_text('{"schema_version": 1,\n  "tool": }')
    with pytest.raises(StoreError, match=r"a\.json:2:11: not JSON"):
        load_run(run)
    doc = crafted("a", {0: 40.0})
    doc["strategies"]["best"] = "fastest"
    (run / "a.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match=r"a\.json: not a numa-shard-bench result: \$\.strategies\.best: 'fastest' is not one of"):
        load_run(run)


def test_bench_report_cli(tmp_path, capsys):
    results = fleet_of_epycs({("epyc-1", 2): 30.0})
    results["epyc-3"] = crafted("epyc-3", {n: 40.0 for n in range(4)}, cells={(0, 1): 18.0, (1, 0): 14.0})
    store_run(tmp_path, results, failed={"epyc-9": "CommandTimeout: timed out after 600s"})
    assert main(["bench", "report", "--results", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(o["host"], o["node"]) for o in doc["report"]["outliers"]] == [("epyc-1", 2)]
    # epyc-1's slow node 2 also makes its column lower than its row: a missing DIMM shows both ways
    assert [(a["host"], a["nodes"]) for a in doc["report"]["asymmetric"]] == [
        ("epyc-1", [0, 2]), ("epyc-1", [1, 2]), ("epyc-1", [2, 3]), ("epyc-3", [0, 1])]
    assert doc["report"]["failed"] == {"epyc-9": "CommandTimeout: timed out after 600s"}
    assert [h["host"] for h in doc["report"]["hosts"]] == ["epyc-0", "epyc-1", "epyc-2", "epyc-3"]
    assert main(["bench", "report", "latest", "--results", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "outlier: epyc-1 node 2 (cpu+memory) reads 30.0 GB/s" in text
    assert ("asymmetric: epyc-3: 1 node pair(s) read more than 10% apart one way and the other; "
            "worst: node 0 CPUs -> node 1 memory 18.0 GB/s, node 1 -> node 0 14.0 GB/s (22% apart)") in text
    assert "epyc-9: CommandTimeout" in text
    assert main(["bench", "report", "nope", "--results", str(tmp_path)]) == 1
    assert main(["bench", "report", "a", "b", "--results", str(tmp_path)]) == 2


# -- plots --------------------------------------------------------------------------------


def test_plots_exist_and_decode(tmp_path, capsys):
    from matplotlib.image import imread

    results = fleet_of_epycs({("epyc-1", 2): 30.0})
    results["cxl-0"] = crafted("cxl-0", {0: 60.0, 1: 60.0, 2: 20.0, 3: 20.0}, cpu_model=XEON, memory_only=(2, 3))
    run = store_run(tmp_path, results)
    assert main(["bench", "report", "--results", str(tmp_path), "--plot", "--json"]) == 0
    plots = [Path(p) for p in json.loads(capsys.readouterr().out)["plots"]]
    assert sorted(p.name for p in plots) == sorted([f"{h}.heatmap.png" for h in results] + ["fleet.png"])
    for p in plots:
        assert p.parent.resolve() == run.resolve()
        img = imread(p)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
        assert img[..., :3].std() > 0.05  # not a blank canvas
    # the 4-node heatmap is square-ish with a cell per node pair; the fleet chart is wider than tall
    h, w = imread(run / "cxl-0.heatmap.png").shape[:2]
    assert 0.5 < h / w < 1.5
    fh, fw = imread(run / "fleet.png").shape[:2]
    assert fw > fh


# -- measured planning --------------------------------------------------------------------


def test_load_bench_for_host(tmp_path):
    run = store_run(tmp_path, {"epyc-0": crafted("epyc-0", {0: 40.0, 1: 30.0})})
    for where, file in ((run, run), (tmp_path, tmp_path / "latest"), (tmp_path / "latest", tmp_path / "latest")):
        m = load_bench_for_host(where, "epyc-0")
        assert m is not None and dict(m.bench.node_bandwidth) == {0: 40.0, 1: 30.0}
        assert m.bench.speed_unit == "GB/s read" and set(m.bench.strategy_speed) == {"shard", "interleave", "replicate"}
        assert m.run_id == run.name and m.path == file / "epyc-0.json"
        assert m.note == f"measured: bench run {run.name}, {m.path} (numa-shard-bench 0.1.0 (gcc 12.2.0))"
    assert load_bench_for_host(run, "other") is None
    assert load_bench_for_host(None, "epyc-0") is None
    with pytest.raises(StoreError, match="not a bench run directory"):
        load_bench_for_host(tmp_path / "nowhere", "epyc-0")


def _plan_inventory(tmp_path: Path, strategy: str) -> Path:
    """One host `two` (the 2-socket fixture's cached facts) planning a small real model."""
    import time

    from coffers_provision import modelgen
    from coffers_provision.facts.numa import parse_numactl

    model = tmp_path / "m.gguf"
    modelgen.write_llama(model, n_layers=16, dim=256, n_head=4, n_head_kv=4, ffn=512)
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    two:\n      ansible_connection: local\n      coffers:\n"
                   f"        model: /models/m.gguf\n        model_local: m.gguf\n        strategy: {strategy}\n")  # fmt: skip
    topo = parse_numactl((Path(__file__).parent / "fixtures" / "numactl" / "aws-c5n-18xlarge-xeon-2s-2node.txt").read_text())
    (tmp_path / "facts").mkdir()
    (tmp_path / "facts" / "two.json").write_text(json.dumps({"topology": topo.to_json(), "probed_at_epoch": time.time()}))
    return inv


def _plan(capsys, inv: Path, *extra: str) -> dict:
    from jsonschema import Draft202012Validator

    from coffers_provision.resources import schema_path

    assert main(["plan", str(inv), "--facts-dir", str(inv.parent / "facts"), "--json", *extra]) == 0
    doc = json.loads(capsys.readouterr().out)["hosts"]["two"]
    Draft202012Validator(json.loads(schema_path("plan").read_text())).validate(doc)
    return doc


def test_the_plan_follows_the_measured_bandwidth_and_records_its_run(tmp_path, capsys):
    inv = _plan_inventory(tmp_path, "shard")
    even = store_run(tmp_path / "results", {"two": crafted("two", {0: 40.0, 1: 40.0})})
    skewed = store_run(tmp_path / "results", {"two": crafted("two", {0: 60.0, 1: 20.0})}, when=datetime(2025, 3, 2, tzinfo=timezone.utc))
    unmeasured = _plan(capsys, inv)  # no results/latest in the working directory
    a = _plan(capsys, inv, "--bench-results", str(even))
    b = _plan(capsys, inv, "--bench-results", str(tmp_path / "results"))  # a results directory: its latest
    assert not any(r.startswith("measured:") for r in unmeasured["reasons"])
    assert f"measured: bench run {even.name}, {even / 'two.json'} (numa-shard-bench 0.1.0 (gcc 12.2.0))" in a["reasons"]
    assert any(r.startswith(f"measured: bench run {skewed.name}, ") for r in b["reasons"])
    # 40:40 splits the layers evenly; 60:20 puts about three quarters on node 0
    share = {k: d["node_bytes"]["0"] / (d["node_bytes"]["0"] + d["node_bytes"]["1"]) for k, d in (("a", a), ("b", b))}
    assert abs(share["a"] - 0.5) < 0.1 and abs(share["b"] - 0.75) < 0.1
    assert a["shard_map"] != b["shard_map"]
    assert [n["speed"] for n in b["nodes"]] == [60.0, 20.0]
    # the default: results/latest under the working directory
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert _plan(capsys, inv)["shard_map"] == b["shard_map"]
    finally:
        os.chdir(cwd)


def test_auto_takes_the_strategy_the_run_measured_fastest(tmp_path, capsys):
    inv = _plan_inventory(tmp_path, "auto")
    fast_replicate = store_run(tmp_path / "r1", {"two": crafted("two", {0: 40.0, 1: 40.0}, strategies={"shard": 40, "interleave": 60, "replicate": 75})})
    fast_interleave = store_run(tmp_path / "r2", {"two": crafted("two", {0: 40.0, 1: 40.0}, strategies={"shard": 40, "interleave": 80, "replicate": 75})})
    assert _plan(capsys, inv, "--bench-results", str(fast_replicate))["strategy"] == "replicate"
    assert _plan(capsys, inv, "--bench-results", str(fast_interleave))["strategy"] == "interleave"


def test_plan_bench_results_errors(tmp_path, capsys):
    inv = _plan_inventory(tmp_path, "shard")
    assert main(["plan", str(inv), "--facts-dir", str(tmp_path / "facts"), "--bench-results", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert f"--bench-results {tmp_path / 'none'}: not a bench run directory" in err
    run = store_run(tmp_path / "results", {"two": crafted("two", {0: 40.0, 1: 40.0})})
    (run / "two.json").write_text("{}")
    assert main(["plan", str(inv), "--facts-dir", str(tmp_path / "facts"), "--bench-results", str(run), "--json"]) == 1
    assert "two.json: not a numa-shard-bench result" in json.loads(capsys.readouterr().out)["hosts"]["two"]["error"]
    assert main(["plan", "--topology", "x", "--model", "y", "--bench-results", str(run)]) == 2


def test_apply_plans_from_the_bench_results(tmp_path):
    """apply --check on this machine (local connection, paths under a temp root): the plan
    it would record follows the strategy the given run measured fastest."""
    import subprocess

    from tests.test_apply import apply, apply_cmd, env, inventory, snapshot

    inv = inventory(tmp_path, strategy="auto")
    best = {}
    for name, figures in (("replicate", {"shard": 20, "interleave": 30, "replicate": 50}),
                          ("interleave", {"shard": 20, "interleave": 60, "replicate": 50})):  # fmt: skip
        run = store_run(tmp_path / name, {"localhost": crafted("localhost", {0: 40.0}, strategies=figures)})
        rc, doc = apply(tmp_path, inv, "--check", "--diff", "--bench-results", str(run))
        assert rc == 0, doc
        record = next(t for t in doc["hosts"]["localhost"]["tasks"] if t["task"] == "record the deployment this host runs")
        best[name] = record["diff"]
    assert '"strategy": "replicate"' in best["replicate"] and '"strategy": "interleave"' in best["interleave"]
    # a wrong DIR stops apply before any host is touched
    before = snapshot(tmp_path / "root")
    proc = subprocess.run(apply_cmd(tmp_path, inv, "--bench-results", str(tmp_path / "nowhere")),
                          capture_output=True, text=True, env=env(tmp_path), timeout=300)  # fmt: skip
    assert proc.returncode == 1 and f"--bench-results {tmp_path / 'nowhere'}: not a bench run directory" in proc.stderr
    assert snapshot(tmp_path / "root") == before


def test_report_thresholds_are_flags(tmp_path, capsys):
    results = fleet_of_epycs({("epyc-1", 2): 36.0})  # 12% below the median
    results["epyc-3"] = crafted("epyc-3", {n: 40.0 for n in range(4)}, cells={(0, 1): 18.0, (1, 0): 16.5})  # 8% apart
    store_run(tmp_path, results)
    assert main(["bench", "report", "--results", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["report"]
    assert doc["outliers"] == [] and [a["host"] for a in doc["asymmetric"]] == ["epyc-1"] * 3
    assert doc["thresholds"] == {"node_outlier": 0.15, "asymmetry_tolerance": 0.10}
    argv = ["bench", "report", "--results", str(tmp_path), "--json", "--outlier-threshold", "10", "--asymmetry-tolerance", "5"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)["report"]
    assert [(o["host"], o["node"]) for o in doc["outliers"]] == [("epyc-1", 2)]
    assert {a["host"] for a in doc["asymmetric"]} == {"epyc-1", "epyc-3"}
    assert doc["thresholds"] == {"node_outlier": 0.10, "asymmetry_tolerance": 0.05}
    assert main(["bench", "report", "--results", str(tmp_path), "--outlier-threshold", "0"]) == 2
    assert "--outlier-threshold must be between 0 and 100 percent, not 0" in capsys.readouterr().err
