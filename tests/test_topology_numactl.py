"""numactl --hardware parsing: every real fixture against its JSON spec, variants, and errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coffers_provision.facts.numa import parse_numactl
from coffers_provision.topology import Node, Topology, TopologyError

from .conftest import FIXTURES, SPEC

NUMACTL = sorted((FIXTURES / "numactl").glob("*.txt"))


def test_every_fixture_has_a_spec_and_back():
    assert {p.stem for p in NUMACTL} == {p.stem for p in (SPEC / "numactl").glob("*.json")}
    assert len(NUMACTL) >= 13


@pytest.mark.parametrize("path", NUMACTL, ids=lambda p: p.stem)
def test_fixture_matches_spec(path: Path):
    spec = json.loads((SPEC / "numactl" / f"{path.stem}.json").read_text())
    topo = parse_numactl(path.read_text(), source=str(path))
    assert topo.numa_available == spec["numa_available"]
    assert topo.node_ids == spec["node_ids"]
    assert [len(n.cpus) if n.cpus is not None else None for n in topo.nodes] == spec["cpu_counts"]
    assert [
        [min(n.cpus), max(n.cpus)] if n.cpus else ([] if n.cpus is not None else None) for n in topo.nodes
    ] == spec["cpu_ranges"]
    assert [n.size_mb for n in topo.nodes] == spec["size_mb"]
    assert [n.free_mb for n in topo.nodes] == spec["free_mb"]
    assert topo.to_json()["distances"] == spec["distances"]
    assert topo.memory_nodes == spec["memory_nodes"]
    assert topo.cpu_nodes == spec["cpu_nodes"]
    assert topo.cpuless_memory_nodes == spec["cpuless_memory_nodes"]
    assert topo.memoryless_cpu_nodes == spec["memoryless_cpu_nodes"]


@pytest.mark.parametrize("path", NUMACTL, ids=lambda p: p.stem)
def test_trailing_spaces_do_not_matter(path: Path):
    text = path.read_text()
    stripped = "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
    padded = "\n".join(line.rstrip() + "  " for line in text.splitlines()) + "\n"
    assert parse_numactl(stripped) == parse_numactl(padded) == parse_numactl(text)


def test_sparse_ids_are_ids():
    topo = parse_numactl((FIXTURES / "numactl" / "power9-ac922-6node-gpu-memory-nodes.txt").read_text())
    assert topo.node_ids == [0, 8, 252, 253, 254, 255]
    assert topo.distance(8, 252) == 80 and topo.distance(0, 8) == 40
    assert topo.nearest_cpu_node(252) == 0  # ties between 0 and 8 go to the lower id


def test_cxl_nearest_cpu_node_follows_distance():
    topo = parse_numactl((FIXTURES / "numactl" / "xeon-2s-cxl-expanders-4node-2-memoryonly-dist14-24-26.txt").read_text())
    assert topo.nearest_cpu_node(2) == 0 and topo.nearest_cpu_node(3) == 1


def test_cpu_compress_form():
    topo = parse_numactl("available: 2 nodes (0-1)\nnode 0 cpus: 0-3,8-11 (8)\nnode 0 size: 10 MB\nnode 0 free: 5 MB\n"
                         "node 1 cpus: 4-7,12-15 (8)\nnode 1 size: 10 MB\nnode 1 free: 5 MB\n")
    assert topo.node(0).cpus == (0, 1, 2, 3, 8, 9, 10, 11)


GOOD = "available: 2 nodes (0-1)\nnode 0 cpus: 0 1\nnode 0 size: 100 MB\nnode 0 free: 50 MB\nnode 1 cpus: 2 3\nnode 1 size: 100 MB\nnode 1 free: 50 MB\nnode distances:\nnode   0   1\n  0:  10  20\n  1:  20  10\n"

BAD = [
    ("", None, "empty input"),
    ("hello world\n", 1, "not numactl --hardware output"),
    ("No NUMA available on this system\nnode 0 cpus: 1\n", 2, "unexpected text"),
    (GOOD.replace("available: 2 nodes (0-1)", "available: 3 nodes (0-1)"), 1, "says 3 nodes but lists 2"),
    (GOOD.replace("node 1 cpus: 2 3", "node 7 cpus: 2 3"), 5, "node 7 is not in the 'available' list"),
    (GOOD.replace("node 0 size: 100 MB", "node 0 size: lots"), 3, "unrecognised line"),
    (GOOD.replace("  1:  20  10\n", ""), 9, "1 rows for 2 nodes"),
    (GOOD.replace("  1:  20  10", "  1:  20"), 11, "not square"),
    (GOOD.replace("  1:  20  10", "  3:  20  10"), 11, "node 3 where node 1 was expected"),
    (GOOD.replace("node   0   1", "node   1   0"), 10, "where node 1 was expected"),
    (GOOD.split("node distances:")[0] + "node distances:\n", 8, "truncated"),
    (GOOD.replace("node 1 free: 50 MB\n", ""), None, "node 1 has no 'free:' line"),
    (GOOD.replace("node 0 cpus: 0 1", "node 0 cpus: 0-3 (5)"), 2, "holds 4 CPUs, not 5"),
    (GOOD.replace("node 0 cpus: 0 1", "node 0 cpus: 0 x"), 2, "bad CPU list"),
    (GOOD.replace("node 0 size: 100 MB\n", "node 0 size: 100 MB\nnode 0 size: 100 MB\n"), 4, "given twice"),
    ("available: 1 nodes (0)\nnode 0 cpus: 0\nnode 0 size: 1 MB\nnode 0 free: 1 MB\nnode distances:\nbogus\n", 6, "distance header"),
]


@pytest.mark.parametrize("text,line,message", BAD, ids=[b[2] for b in BAD])
def test_bad_text_names_the_line(text, line, message):
    with pytest.raises(TopologyError) as e:
        parse_numactl(text, source="x.txt")
    assert message in e.value.message
    assert e.value.line == line
    assert str(e.value).startswith(f"x.txt:{line}:" if line else "x.txt:")


# -- a renderer and a property: any topology printed the way numactl prints it parses back --

def render(topo: Topology, *, compress: bool = False, trailing: bool = True) -> str:
    from coffers_provision.topology import format_cpulist

    ids = topo.node_ids
    lines = [f"available: {len(ids)} nodes ({format_cpulist(ids)})"]
    for n in topo.nodes:
        if n.cpus is not None:
            body = f" {format_cpulist(n.cpus)} ({len(n.cpus)})" if compress and n.cpus else "".join(f" {c}" for c in n.cpus)
            lines.append(f"node {n.id} cpus:{body}")
        lines += [f"node {n.id} size: {n.size_mb} MB", f"node {n.id} free: {n.free_mb} MB"]
    if topo.distances is not None:
        width = max(3, *(len(str(i)) for i in ids))
        pad = " " if trailing else ""
        lines.append("node distances:")
        lines.append("node " + " ".join(f"{i:>{width}}" for i in ids) + pad)
        for i, row in zip(ids, topo.distances):
            lines.append(f"{i:>{width}}: " + " ".join(f"{d:>{width}}" for d in row) + pad)
    return "\n".join(lines) + "\n"


@st.composite
def topologies(draw):
    ids = sorted(draw(st.sets(st.integers(0, 1023), min_size=1, max_size=10)))
    with_cpus = draw(st.booleans())
    next_cpu = 0
    nodes = []
    for i in ids:
        cpus = None
        if with_cpus:
            count = draw(st.integers(0, 6))
            stride = draw(st.integers(1, 3))
            cpus = tuple(range(next_cpu, next_cpu + count * stride, stride))
            next_cpu += count * stride + draw(st.integers(0, 4))
        size = draw(st.integers(0, 10**6))
        nodes.append(Node(i, cpus, size, draw(st.integers(0, size + 1000))))
    dist = None
    if with_cpus and draw(st.booleans()):
        n = len(ids)
        dist = tuple(tuple(10 if a == b else draw(st.integers(11, 254)) for b in range(n)) for a in range(n))
    return Topology(True, tuple(nodes), dist)


@settings(max_examples=150, deadline=None)
@given(topologies(), st.booleans(), st.booleans())
def test_rendered_topologies_round_trip(topo, compress, trailing):
    assert parse_numactl(render(topo, compress=compress, trailing=trailing)) == topo


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coffers_provision", *args], input=stdin, capture_output=True, text=True)


def test_cli_json_contract():
    path = FIXTURES / "numactl" / "power9-ac922-6node-gpu-memory-nodes.txt"
    proc = run_cli("topology", "parse", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"numa_available", "nodes", "distances"}
    assert [set(n) for n in data["nodes"]] == [{"id", "cpus", "size_mb", "free_mb"}] * 6
    assert data["nodes"][2] == {"id": 252, "cpus": [], "size_mb": 32256, "free_mb": 30807}
    assert data["distances"][0] == [10, 40, 80, 80, 80, 80]


def test_cli_legacy_reports_null_not_guesses():
    path = FIXTURES / "numactl" / "legacy-numactl-1.0.2-16node-14-memoryless-no-cpus-no-distances.txt"
    data = json.loads(run_cli("topology", "parse", str(path), "--json").stdout)
    assert data["distances"] is None and all(n["cpus"] is None for n in data["nodes"])


def test_cli_no_numa():
    data = json.loads(run_cli("topology", "parse", "-", "--json", stdin="No NUMA available on this system\n").stdout)
    assert data == {"numa_available": False, "nodes": [], "distances": None}


def test_cli_rejects_garbage_with_exit_1(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("this is not numactl\n")
    proc = run_cli("topology", "parse", str(bad))
    assert proc.returncode == 1
    assert f"{bad}:1:" in proc.stderr and "not numactl --hardware output" in proc.stderr
    proc = run_cli("topology", "parse", str(tmp_path / "missing.txt"))
    assert proc.returncode == 1 and "No such file" in proc.stderr


def test_cli_local_says_how_it_read():
    proc = run_cli("topology", "local", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["source"] in ("numactl", "sysfs")
    assert data["numa_available"] is False or len(data["nodes"]) >= 1
