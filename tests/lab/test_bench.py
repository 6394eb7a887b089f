"""`coffers-provision bench` on the real 2- and 4-node guests (what docs/bench.md asks of the lab).

Under TCG all guest memory is the same host memory, so the figures say nothing about NUMA:
the checks are on shapes, placement and agreement between the parts of a result.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from coffers_provision.facts.numa import parse_numactl

from .conftest import INVENTORY
from .lab import GUESTS, REPO


def cli(lab: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coffers_provision", "bench", *args], capture_output=True,
                          text=True, timeout=3600, cwd=REPO, check=False)


@pytest.fixture(scope="module")
def bench_run(lab: dict, guests: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    results = tmp_path_factory.mktemp("bench-results")
    # Small arrays and few runs: TCG is slow, and lab4's smallest node (256 MiB) has under 100 MiB free.
    r = cli(lab, str(INVENTORY), "--known-hosts", lab["known_hosts"], "--results", str(results),
            "--size-mb", "8", "--iterations", "2", "--json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    topo = {g.name: parse_numactl(guests[g.name].run("numactl --hardware").stdout) for g in GUESTS}
    return {"results": results, "run": (results / "latest").resolve(), "topology": topo}


@pytest.mark.parametrize("name", [g.name for g in GUESTS])
def test_bench_result_matches_the_guest(bench_run: dict, name: str) -> None:
    result = json.loads((bench_run["run"] / f"{name}.json").read_text())
    schema = json.loads((REPO / "schemas" / "bench-result.schema.json").read_text())
    jsonschema.validate(result, schema)
    topo = bench_run["topology"][name]
    mem, cpu = sorted(topo.memory_nodes), sorted(topo.cpu_nodes)
    assert result["parameters"]["nodes"] == mem
    for table in ("matrix", "latency"):
        t = result[table]
        assert (t["rows"], t["columns"]) == (cpu, mem), table
        assert len(t["values"]) == len(cpu) and all(len(row) == len(mem) and min(row) > 0 for row in t["values"])
    by_id = {n["id"]: n for n in result["nodes"]}
    assert sorted(by_id) == mem
    for node in result["nodes"]:
        assert node["placement"] == 1.0, f"node {node['id']}: arrays not on the node"
    for i, c in enumerate(cpu):
        assert result["matrix"]["values"][i][mem.index(c)] == pytest.approx(by_id[c]["read"])


def test_bench_report_lists_every_guest(bench_run: dict, lab: dict) -> None:
    r = cli(lab, "report", str(bench_run["run"]), "--json")
    assert r.returncode == 0, r.stderr
    hosts = {h["host"]: h for h in json.loads(r.stdout)["report"]["hosts"]}
    assert set(hosts) == {g.name for g in GUESTS}
    for g in GUESTS:
        assert len(hosts[g.name]["nodes"]) == len(g.nodes)


def test_bench_store_has_the_run_files(bench_run: dict) -> None:
    run: Path = bench_run["run"]
    meta = json.loads((run / "run.json").read_text())
    assert {h: e["status"] for h, e in meta["hosts"].items()} == {g.name: "ok" for g in GUESTS}
    assert (run / "summary.csv").read_text().count("\n") >= 1 + sum(len(g.nodes) for g in GUESTS)
