"""`bench` on the sshd fleet: install, run, store, report, plot, one host timing out and one
unreachable. The fleet hosts share this machine's one real NUMA node, so they are given the
one-node spec and two threads (this machine's CPUs): their figures are real for it, and the
test asserts only what does not depend on a noisy shared machine."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml

from coffers_provision.bench.store import result_errors
from coffers_provision.cli import main
from tests.fleet.fleet import DEFAULT_SPECS

from .promtool import check_metrics

SINGLE = next(s for s in DEFAULT_SPECS if s.short == "single")
QUICK = {"threads": 2, "size_mb": 8, "iterations": 3, "timeout_s": 600}
SLOW = {"threads": 2, "size_mb": 512, "iterations": 100, "timeout_s": 2}  # seconds of work: it must time out


PREFIX = "/opt/coffers"  # overlaid per host, and not where anything on this machine may have installed tools
TOOL = f"{PREFIX}/bin/numa-shard-bench"


def _inventory(fleet, path: Path, bench: dict[str, dict]) -> Path:
    data = fleet.inventory_data()
    for name, settings in bench.items():
        data["all"]["hosts"][name]["coffers"] = {"bench": settings, "prefix": PREFIX}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _bench(tmp_path: Path, fleet, inv: Path, capsys, *flags: str) -> tuple[int, dict]:
    rc = main(["bench", str(inv), "--known-hosts", str(fleet.known_hosts), "--results", str(tmp_path / "results"),
               "--facts-dir", str(tmp_path / "facts"), "--json", *flags])  # fmt: skip
    return rc, json.loads(capsys.readouterr().out)


@pytest.mark.slow  # builds the tools on three hosts, one after the other
def test_bench_on_the_fleet(make_fleet, tmp_path, capsys):
    from matplotlib.image import imread

    fleet = make_fleet(specs=(SINGLE,) * 4, names=["s1", "s2", "slow", "down"])
    inv = _inventory(fleet, tmp_path / "inventory.yml", {"s1": QUICK, "s2": QUICK, "slow": SLOW, "down": QUICK})
    fleet.stop_host(fleet.host("down"))

    rc, doc = _bench(tmp_path, fleet, inv, capsys, "--serial", "--plot")
    assert rc == 4  # an unreachable host takes precedence over a failed one
    status = {h["host"]: (h["status"], h["error"] or "") for h in doc["hosts"]}
    assert status["s1"] == ("ok", "") and status["s2"] == ("ok", "")
    assert status["slow"][0] == "failed" and "timed out after 2s" in status["slow"][1]
    assert status["down"][0] == "unreachable"
    assert doc["summary"] == {"ok": 2, "failed": 1, "unreachable": 1}

    run = Path(doc["dir"])
    assert os.readlink(tmp_path / "results" / "latest") == run.name
    meta = json.loads((run / "run.json").read_text())
    for name in ("s1", "s2"):
        result = json.loads((run / f"{name}.json").read_text())
        assert result_errors(result) == []
        facts = json.loads((run / f"{name}.facts.json").read_text())
        assert facts["host"] == name
        # the tool measured what the host shows: one node, this machine's real memory
        assert result["host"]["cpu_model"] == SINGLE.model
        assert result["parameters"]["nodes"] == [0] and result["parameters"]["threads_per_node"] == 2
        assert result["parameters"]["size_mb"] == 8 and result["parameters"]["iterations"] == 3
        assert result["matrix"]["rows"] == [0] and result["matrix"]["columns"] == [0]
        assert result["matrix"]["values"] == [[result["nodes"][0]["read"]]] and result["nodes"][0]["placement"] == 1.0
        # built on the host by its own compiler, and the run records which
        assert result["tool"]["compiler"] == f"gcc {facts['toolchain']['gcc']}"
        assert meta["hosts"][name]["tool"] == result["tool"] and meta["hosts"][name]["gcc"] == facts["toolchain"]["gcc"]
        assert "build numa-shard-bench" in meta["hosts"][name]["installed"]
        assert fleet.host(name).inside(TOOL).is_file()
    assert meta["hosts"]["down"]["status"] == "unreachable" and not (run / "down.json").exists()
    assert meta["settings"]["hosts"]["slow"]["timeout_s"] == 2
    rows = list(csv.DictReader((run / "summary.csv").open()))
    assert [(r["host"], r["status"], r["node"]) for r in rows] == [("s1", "ok", "0"), ("s2", "ok", "0"), ("slow", "failed", ""), ("down", "unreachable", "")]
    assert [h["host"] for h in doc["report"]["hosts"]] == ["s1", "s2"]
    assert sorted(Path(p).name for p in doc["plots"]) == ["fleet.png", "s1.heatmap.png", "s2.heatmap.png"]
    for p in doc["plots"]:
        assert imread(p).shape[0] > 200

    # Again, after s1 lost its binary: s1 reinstalls it, s2's is current and is not rebuilt.
    assert fleet.host("s1").run_inside(f"rm {TOOL}").returncode == 0
    rc, again = _bench(tmp_path, fleet, inv, capsys, "--limit", "s1:s2", "--metrics-dir", str(tmp_path / "metrics"))
    assert rc == 0 and again["summary"] == {"ok": 2, "failed": 0, "unreachable": 0}
    text = check_metrics(tmp_path / "metrics" / "coffers_bench.prom")  # node_exporter's textfile collector reads it
    for name in ("s1", "s2"):
        read = json.loads((Path(again["dir"]) / f"{name}.json").read_text())["matrix"]["values"][0][0]
        assert f'coffers_bench_read_bandwidth_gbps{{cpu_node="0",host="{name}",node="0"}} {float(read)!r}' in text, text
    installed = {h["host"]: h["installed"] for h in again["hosts"]}
    assert "build numa-shard-bench" in installed["s1"] and installed["s2"] == []
    assert Path(again["dir"]).name > run.name  # run ids sort by time
    assert os.readlink(tmp_path / "results" / "latest") == Path(again["dir"]).name

    assert main(["bench", "compare", run.name, "latest", "--results", str(tmp_path / "results"), "--all", "--json"]) in (0, 3)
    compared = json.loads(capsys.readouterr().out)
    assert {c["host"] for c in compared["changes"]} == {"s1", "s2"}
    assert {c["metric"] for c in compared["changes"] if c["host"] == "s1"} == {
        "node 0 read", "node 0 triad", "node 0 latency", "shard read", "interleave read", "replicate read"}  # fmt: skip


def test_bench_no_install_fails_clearly_without_the_tool(make_fleet, tmp_path, capsys):
    fleet = make_fleet(specs=(SINGLE,), names=["bare"])
    inv = _inventory(fleet, tmp_path / "inventory.yml", {"bare": QUICK})
    rc, doc = _bench(tmp_path, fleet, inv, capsys, "--no-install")
    assert rc == 3
    (host,) = doc["hosts"]
    assert host["status"] == "failed" and "numa-shard-bench exited 127" in host["error"]
    assert not fleet.host("bare").inside(TOOL).exists()
