"""Prometheus textfiles: what `bench` and `tune` write passes `promtool check metrics`,
one series per host and node (or strategy), replaced whole on every write.
The fleet tests check the same for files written by the commands themselves."""

from __future__ import annotations

from coffers_provision import metrics

from .promtool import check_metrics
from .test_bench import crafted


def test_bench_matrix_becomes_one_series_per_node_pair(tmp_path):
    results = {"a": crafted("a", {0: 80.0, 1: 60.0}), "b": crafted("b", {0: 75.5, 1: 70.25})}
    text = check_metrics(metrics.write(tmp_path, "bench", metrics.bench_samples(results)))
    for host, doc in results.items():
        for i, row in zip(doc["matrix"]["rows"], doc["matrix"]["values"]):
            for j, v in zip(doc["matrix"]["columns"], row):
                assert f'coffers_bench_read_bandwidth_gbps{{cpu_node="{i}",host="{host}",node="{j}"}} {float(v)!r}\n' in text
    assert text.count("coffers_bench_strategy_read_gbps{") == 6


def test_tune_and_a_rewrite_replaces_the_file(tmp_path):
    doc = {"variants": [{"variant": "shard", "record": {"generation_tokens_per_s": {"median": 12.5}}},
                        {"variant": "one-node", "record": None}], "winner": "shard"}
    path = metrics.write(tmp_path, "tune", metrics.tune_samples({"h1": doc}))
    text = check_metrics(path)
    assert 'coffers_tune_generation_tokens_per_second{host="h1",strategy="shard"} 12.5\n' in text
    assert 'strategy="one-node"' not in text and 'coffers_tune_winner{host="h1",strategy="shard"} 1.0' in text
    metrics.write(tmp_path, "tune", metrics.tune_samples({"h2": doc}))
    assert 'host="h1"' not in path.read_text() and list(tmp_path.iterdir()) == [path]  # no temp file left behind
