"""The guests' kernels see the NUMA topology QEMU was told to build (tests/lab/lab.py)."""

from __future__ import annotations

import pytest

from coffers_provision.facts.numa import parse_numactl

from .lab import GUESTS, Guest

# The kernel keeps part of each node for itself (memmap, reserved ranges): a node of
# 256 MiB reports about 207 MB, so sizes are checked against a band, not for equality.
MIN_SIZE_FRACTION = 0.75


def check_topology(g: Guest, topo) -> None:  # type: ignore[no-untyped-def]
    assert topo.numa_available
    assert topo.node_ids == list(range(len(g.nodes)))
    for node, spec in zip(topo.nodes, g.nodes):
        assert node.cpus == spec.cpus, f"{g.name} node {node.id}"
        assert MIN_SIZE_FRACTION * spec.mem_mb <= node.size_mb <= spec.mem_mb, f"{g.name} node {node.id}: {node.size_mb} MB"
    assert topo.distances == g.distances


@pytest.mark.parametrize("g", GUESTS, ids=[g.name for g in GUESTS])
def test_numactl_sees_the_qemu_topology(guests: dict, g: Guest) -> None:
    r = guests[g.name].run("numactl --hardware")
    assert r.ok, r.stderr
    check_topology(g, parse_numactl(r.stdout, source=f"{g.name}:numactl"))


def test_sizes_differ_on_the_four_node_guest(guests: dict) -> None:
    """The 4-node guest has unequal nodes, so a planner that assumed equal ones would show."""
    topo = parse_numactl(guests["lab4"].run("numactl --hardware").stdout)
    sizes = [n.size_mb for n in topo.nodes]
    assert sizes[0] > sizes[1] > sizes[2]
    assert len({d for row in topo.distances for d in row}) == 4  # 10, 12, 20, 22
