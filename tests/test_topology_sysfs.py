"""sysfs node-tree parsing, against trees the tests build."""

from pathlib import Path

import pytest

from coffers_provision.facts.numa import parse_numactl, parse_sysfs, write_sysfs
from coffers_provision.topology import Node, Topology, TopologyError

from .conftest import FIXTURES

NUMACTL = sorted((FIXTURES / "numactl").glob("*.txt"))


@pytest.mark.parametrize("path", NUMACTL, ids=lambda p: p.stem)
def test_generated_tree_reads_back_as_the_fixture(path: Path, tmp_path: Path):
    topo = parse_numactl(path.read_text())
    if not topo.numa_available:
        pytest.skip("no nodes to write")  # covered by test_no_nodes_means_no_numa
    write_sysfs(topo, tmp_path)
    back = parse_sysfs(tmp_path)
    assert back.source == "sysfs"
    assert back.node_ids == topo.node_ids
    assert [n.size_mb for n in back.nodes] == [n.size_mb for n in topo.nodes]
    assert [n.free_mb for n in back.nodes] == [n.free_mb for n in topo.nodes]
    assert [n.cpus for n in back.nodes] == [n.cpus if n.cpus is not None else () for n in topo.nodes]
    if topo.distances is not None:
        assert back.distances == topo.distances


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def kernel_like_tree(root: Path) -> Path:
    """Written the way the kernel prints it: sparse ids, a memoryless CPU node with a token zone."""
    return write_tree(root, {
        "online": "0,8\n",
        "possible": "0-15\n",
        "has_memory": "0\n",
        "has_cpu": "0,8\n",
        "node0/cpulist": "0-3,8-11\n",
        "node0/meminfo": "\nNode 0 MemTotal:       16318776 kB\nNode 0 MemFree:        10220340 kB\nNode 0 MemUsed:         6098436 kB\n",
        "node0/distance": "10 20\n",
        "node8/cpulist": "4-7\n",
        "node8/meminfo": "Node 8 MemTotal:          10240 kB\nNode 8 MemFree:            9000 kB\n",
        "node8/distance": "20 10\n",
    })


def test_kernel_like_tree(tmp_path):
    topo = parse_sysfs(kernel_like_tree(tmp_path))
    assert topo.node_ids == [0, 8]
    assert topo.node(0) == Node(0, (0, 1, 2, 3, 8, 9, 10, 11), 15936, 9980)
    # has_memory wins over the token zone the kernel reports for a memoryless node
    assert topo.node(8).size_mb == 0 and topo.memoryless_cpu_nodes == [8]
    assert topo.distances == ((10, 20), (20, 10))


def test_no_nodes_means_no_numa(tmp_path):
    assert parse_sysfs(tmp_path) == Topology(False, (), None, source="sysfs")


@pytest.mark.parametrize("breakage,message", [
    (("node8/distance", "20\n"), "expected 2 distances"),
    (("node8/distance", "20 x\n"), "expected 2 distances"),
    (("node8/meminfo", "garbage\n"), "no MemTotal/MemFree"),
    (("node8/meminfo", "Node 3 MemTotal: 1 kB\nNode 3 MemFree: 1 kB\n"), "meminfo speaks of node 3"),
    (("online", "0,x\n"), "bad CPU list element"),
])
def test_broken_trees_name_the_file(tmp_path, breakage, message):
    kernel_like_tree(tmp_path)
    rel, text = breakage
    (tmp_path / rel).write_text(text)
    with pytest.raises(TopologyError) as e:
        parse_sysfs(tmp_path)
    assert message in str(e.value)
    assert rel.split("/")[-1] in e.value.source


def test_missing_node_dir_is_an_error(tmp_path):
    kernel_like_tree(tmp_path)
    for f in (tmp_path / "node8").iterdir():
        f.unlink()
    (tmp_path / "node8").rmdir()
    with pytest.raises(TopologyError, match="cannot read"):
        parse_sysfs(tmp_path)


def test_real_sysfs_of_this_machine():
    root = Path("/sys/devices/system/node")
    if not (root / "online").exists():
        pytest.skip("this kernel exposes no NUMA sysfs tree")
    topo = parse_sysfs(root)
    assert topo.numa_available and topo.nodes
    assert sum(len(n.cpus) for n in topo.nodes) >= 1
