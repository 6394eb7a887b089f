"""`coffers-provision plan --topology --model`: every shared fixture, the JSON contract, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from coffers_provision import modelgen, shardmap
from coffers_provision.cli import main
from coffers_provision.facts.numa import parse_numactl

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "numactl").glob("*.txt"))
SCHEMA = Draft202012Validator(json.loads((ROOT / "schemas" / "plan.schema.json").read_text()))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tiny-llama.gguf"
    modelgen.write_arch(path, "llama")
    return path


@pytest.fixture(scope="module")
def l70(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "llama-70b.gguf"
    modelgen.write_header_only(path, modelgen.llama70b_spec())
    return path


def run_json(capsys, *argv) -> dict:
    assert main(["plan", *argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    SCHEMA.validate(doc)
    return doc


def test_every_fixture_is_covered():
    assert len(FIXTURES) == 13


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_offline_plan_on_every_fixture(fixture, tiny, capsys):
    doc = run_json(capsys, "--topology", str(fixture), "--model", str(tiny))
    topo = parse_numactl(fixture.read_text())
    memory = topo.memory_nodes or [0]
    assert doc["strategy"] == "shard"
    assignment = {t["name"]: t["node"] for t in doc["tensors"]}
    names = list(assignment)
    assert shardmap.assign(shardmap.parse(doc["shard_map"]), names, memory) == assignment
    assert set(assignment.values()) <= set(memory)
    assert sum(doc["node_bytes"].values()) == doc["model"]["total_bytes"]
    # and the table for people
    assert main(["plan", "--topology", str(fixture), "--model", str(tiny)]) == 0
    text = capsys.readouterr().out
    assert "strategy: shard" in text and f"GGML_NUMA_SHARD_MAP: {doc['shard_map']}" in text


@pytest.mark.parametrize("strategy", ["shard", "replicate", "interleave", "auto"])
def test_strategies_validate(strategy, l70, capsys):
    fixture = next(f for f in FIXTURES if f.stem.startswith("kunpeng"))
    doc = run_json(capsys, "--topology", str(fixture), "--model", str(l70), "--strategy", strategy)
    assert doc["requested_strategy"] == strategy and len(doc["tensors"]) == 724
    n_instances = 4 if doc["strategy"] == "replicate" else 1
    assert len(doc["instances"]) == n_instances


def test_policy_flags_bench_and_siblings(l70, tmp_path, capsys):
    fixture = next(f for f in FIXTURES if f.stem.startswith("aws"))
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"node_bandwidth_gbps": {"0": 60, "1": 30}}))
    siblings = tmp_path / "siblings.txt"
    siblings.write_text("".join(f"{c},{c + 36}\n" for c in range(36)))
    doc = run_json(capsys, "--topology", str(fixture), "--model", str(l70), "--bench", str(bench), "--siblings",
                   str(siblings), "--reserve-cpus", "0,36", "--context-length", "8192", "--port", "9100")
    (inst,) = doc["instances"]
    assert inst["threads"] == 35 and inst["threads_batch"] == 70 and inst["port"] == 9100
    assert inst["cpu_affinity"] == "1-35,37-71" and inst["numa"] == "numactl"
    assert doc["node_bytes"]["0"] > 1.5 * doc["node_bytes"]["1"]
    assert doc["kv_cache"]["bytes"] == 327680 * 8192


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--reserve-cpus", "5-2"], "coffers.reserve_cpus"),
        (["--strategy", "weighted-interleave"], "weighted-interleave needs measured bandwidth for node(s) [0, 1]"),
        (["--nodes", "0,9"], "node(s) [9] are not on this host"),
        (["--kv-cache-type", "q3_k"], "coffers.kv_cache_type"),
    ],
)
def test_bad_policy(argv, message, tiny, capsys):
    fixture = next(f for f in FIXTURES if f.stem.startswith("aws"))
    assert main(["plan", "--topology", str(fixture), "--model", str(tiny), *argv]) == 1
    assert message in capsys.readouterr().err.replace("\n", "")


def test_model_too_big_exits_1_with_numbers(l70, capsys):
    fixture = next(f for f in FIXTURES if f.stem.startswith("single-node"))
    assert main(["plan", "--topology", str(fixture), "--model", str(l70)]) == 1
    err = capsys.readouterr().err
    assert "does not fit" in err and "node 0: free 12.90 GiB" in err


def test_bad_inputs(tiny, tmp_path, capsys):
    fixture = FIXTURES[0]
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert main(["plan", "--topology", str(fixture), "--model", str(text)]) == 1
    assert f"{text}: offset 0: not a GGUF file" in capsys.readouterr().err.replace("\n", "")
    assert main(["plan", "--topology", str(text), "--model", str(tiny)]) == 1
    assert f"{text}:1: expected 'available" in capsys.readouterr().err.replace("\n", "")
    assert main(["plan", "--topology", str(tmp_path / "absent.txt"), "--model", str(tiny)]) == 1
    assert "absent.txt: No such file" in capsys.readouterr().err.replace("\n", "")
    bad_bench = tmp_path / "bench.json"
    bad_bench.write_text("{\n  nope")
    assert main(["plan", "--topology", str(fixture), "--model", str(tiny), "--bench", str(bad_bench)]) == 1
    assert f"{bad_bench}:2:3: not JSON" in capsys.readouterr().err.replace("\n", "")
    assert main(["plan", "--model", str(tiny)]) == 2


def test_console_script_entry(tiny):
    fixture = next(f for f in FIXTURES if f.stem.startswith("power9"))
    proc = subprocess.run([sys.executable, "-m", "coffers_provision", "plan", "--topology", str(fixture), "--model", str(tiny), "--json"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    SCHEMA.validate(doc)
    assert set(doc["node_bytes"]) <= {"0", "8"}


def test_inventory_mode_from_cached_facts(tiny, l70, tmp_path, capsys):
    """Per-host plans: one host probed for real (this machine), one with cached facts of a 2-socket fixture."""
    import time

    from coffers_provision.planner import Policy, plan_for_host
    from coffers_provision.model import read_layout

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "big.gguf").symlink_to(l70)
    inv = tmp_path / "inv.yml"
    inv.write_text(
        "all:\n  hosts:\n"
        f"    here:\n      ansible_connection: local\n      coffers:\n        model: {tiny}\n        context_length: 1024\n"
        "    twosocket:\n      ansible_connection: local\n      coffers:\n        model: /m/big.gguf\n        model_local: models/big.gguf\n"
        "        strategy: replicate\n        service: {port: 9300}\n"
        "    nofacts:\n      ansible_connection: local\n      coffers:\n        model: /m/big.gguf\n        model_local: models/big.gguf\n"
    )
    facts_dir = tmp_path / "facts"
    assert main(["probe", str(inv), "--limit", "here", "--facts-dir", str(facts_dir)]) == 0
    capsys.readouterr()
    aws = parse_numactl(next(f for f in FIXTURES if f.stem.startswith("aws")).read_text())
    facts = {"topology": aws.to_json(), "cpu": {"thread_siblings": [[c, c + 36] for c in range(36)]},
             "system": {"weighted_interleave": False}, "probed_at_epoch": time.time()}
    (facts_dir / "twosocket.json").write_text(json.dumps(facts))

    assert main(["plan", str(inv), "--facts-dir", str(facts_dir), "--json"]) == 1  # nofacts fails
    doc = json.loads(capsys.readouterr().out)["hosts"]
    assert "no cached facts" in doc["nofacts"]["error"] and "probe" in doc["nofacts"]["error"]
    SCHEMA.validate(doc["here"])
    SCHEMA.validate(doc["twosocket"])
    assert doc["here"]["model"]["source"] == f"here:{tiny}" and doc["here"]["kv_cache"]["context_length"] == 1024
    expected = plan_for_host(facts, read_layout(l70), None, Policy(strategy="replicate", service_port=9300)).to_json()
    assert doc["twosocket"]["instances"] == expected["instances"]
    assert [i["port"] for i in doc["twosocket"]["instances"]] == [9301]  # node 0 is too small for a copy
    assert doc["twosocket"]["instances"][0]["threads"] == 18

    assert main(["plan", str(inv), "--facts-dir", str(facts_dir), "--limit", "twosocket", "--strategy", "shard"]) == 0
    text = capsys.readouterr().out
    assert "twosocket" in text and "GGML_NUMA_SHARD_MAP: 0-38:node0,39-79:node1" in text
