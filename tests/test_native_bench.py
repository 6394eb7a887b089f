"""numa-shard-bench on this machine: its JSON validates against the schema and is consistent;
bad flags and impossible requests fail clearly."""

from __future__ import annotations

import json
import subprocess

import jsonschema
import pytest

from coffers_provision.facts.numa import parse_sysfs
from coffers_provision.resources import schema_path
from tests.c.nativebuild import BENCH, C_TESTS, build, sanitized

SMALL = ["--size-mb", "4", "--iterations", "3"]


def bench(*args: str, binary=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary or build(BENCH, "gcc", ("-O3", "-march=native"))), *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def result() -> dict:
    proc = bench("--json", *SMALL)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_json_validates_against_the_schema(result):
    schema = json.loads(schema_path("bench-result").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(result)


def test_json_describes_this_machine(result):
    topo = parse_sysfs("/sys/devices/system/node")
    mem, cpu_nodes = topo.memory_nodes, topo.cpu_nodes
    assert result["parameters"]["nodes"] == mem
    assert [n["id"] for n in result["nodes"]] == mem
    assert result["parameters"]["size_mb"] == 4 and result["parameters"]["array_bytes"] == 4 << 20
    assert result["parameters"]["threads_total"] == sum(len(topo.node(c).cpus) for c in cpu_nodes)
    for node in result["nodes"]:
        assert node["cpus"] == list(topo.node(node["id"]).cpus)
        assert node["placement"] == 1.0  # move_pages found every page of the arrays on the node
        assert node["cpu_node"] == topo.nearest_cpu_node(node["id"])
    # One matrix row per CPU node, one column per memory node, a value in every cell.
    for m in (result["matrix"], result["latency"]):
        assert m["rows"] == cpu_nodes and m["columns"] == mem
        assert len(m["values"]) == len(cpu_nodes) and all(len(r) == len(mem) for r in m["values"])
    # The matrix cell of a node's own CPUs is that node's read figure.
    for node in result["nodes"]:
        row, col = cpu_nodes.index(node["cpu_node"]), mem.index(node["id"])
        assert result["matrix"]["values"][row][col] == node["read"]
        assert result["latency"]["values"][row][col] == node["latency_ns"]


def test_strategies_and_validation_are_consistent(result):
    s = result["strategies"]
    per_node = [p["read"] for p in s["shard"]["per_node"]]
    assert s["shard"]["read"] == pytest.approx(len(per_node) / sum(1 / x for x in per_node), rel=1e-3)
    assert s["best"] == max(("shard", "interleave", "replicate"), key=lambda k: s[k]["read"])
    assert result["validation"]["ok"]
    assert result["validation"]["max_relative_error"] <= 1e-9


def test_human_output_names_every_section():
    proc = bench(*SMALL)
    assert proc.returncode == 0, proc.stderr
    for heading in ("read GB/s", "triad GB/s", "latency ns, CPU node (row) x memory node (column)", "strategies",
                    "validation: ok"):
        assert heading in proc.stdout


def test_sanitized_build_runs_clean():
    proc = bench("--json", "--size-mb", "2", "--iterations", "2", binary=sanitized(BENCH))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["validation"]["ok"]


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["--iterations", "1"], 2, "--iterations: expected a number in 2..100, got '1'"),
        (["--size-mb"], 2, "--size-mb needs a value"),
        (["--threads", "0"], 2, "--threads: expected a number in 1..1048576, got '0'"),
        (["--nodes", "x"], 2, "--nodes: expected a node list such as 0,2-3, got 'x'"),
        (["--nodes", "1023"], 1, "--nodes: node 1023 is offline or does not exist"),
        (["--size-mb", "16000000"], 1, "use a smaller --size-mb"),
        (["--nodes", "0,0"], 2, "--nodes: node 0 given twice"),
        (["--frobnicate"], 2, "unknown option '--frobnicate'"),
    ],
)
def test_bad_requests_fail_clearly(args, status, message):
    proc = bench(*args)
    assert proc.returncode == status, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("numa-shard-bench: ") and message in line
    assert proc.stdout == ""


def test_help_goes_to_stdout():
    proc = bench("--help")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: numa-shard-bench [--size-mb N]")


# -- fail fast: a CPU it cannot pin to stops the run at once, naming the CPU ------------------

def test_a_cpu_outside_the_allowed_set_is_named_before_any_thread_starts():
    """taskset hides the node's other CPUs (a cpuset or CPUAffinity= does the same)."""
    cpus = parse_sysfs("/sys/devices/system/node").node(0).cpus
    if len(cpus) < 2:
        pytest.skip("node 0 has one CPU here: nothing to hide")
    binary = build(BENCH, "gcc", ("-O3", "-march=native"))
    proc = subprocess.run(["taskset", "-c", str(cpus[0]), str(binary), "--nodes", "0", *SMALL],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert f"numa-shard-bench: cannot pin to CPU {cpus[1]} of node 0: it is not in this process's allowed CPUs ({cpus[0]})" in line


def test_a_worker_that_cannot_pin_stops_the_run_and_nothing_waits_for_it(tmp_path):
    """Workers fail to pin after the allowed-set check passed (tests/c/failpin.c injects
    that); the main thread, waiting for every worker to pin, exits at once naming the CPU
    rather than spinning on a barrier the failed worker never reaches (timeout: a hang fails)."""
    cpus = parse_sysfs("/sys/devices/system/node").node(0).cpus
    if len(cpus) < 2:
        pytest.skip("node 0 has one CPU here: no worker thread")
    shim = tmp_path / "failpin.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", str(C_TESTS / "failpin.c"), "-o", str(shim), "-ldl"], check=True)
    binary = build(BENCH, "gcc", ("-O3", "-march=native"))
    proc = subprocess.run([str(binary), "--nodes", "0", *SMALL], capture_output=True, text=True, timeout=60,
                          env={"LD_PRELOAD": str(shim), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1 and "read GB/s" not in proc.stdout  # no figure from unpinned threads
    [line] = proc.stderr.splitlines()
    assert line.startswith("numa-shard-bench: cannot pin a thread to CPU ") and line.endswith(": Invalid argument")
    assert int(line.split("CPU ")[1].split(":")[0]) in cpus[1:]
