"""The guests' kernels see the NUMA topology QEMU was told to build (tests/lab/lab.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from coffers_provision.facts.numa import parse_numactl
from coffers_provision.topology import Topology

from .lab import GUESTS, REPO, Guest

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


def test_probe_sees_both_topologies(lab: dict, tmp_path: Path) -> None:
    """`coffers-provision probe` over real SSH, driven by inventories/lab.yml."""
    r = subprocess.run(
        [sys.executable, "-m", "coffers_provision", "probe", str(REPO / "inventories" / "lab.yml"), "--json",
         "--refresh", "--known-hosts", lab["known_hosts"], "--facts-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
    assert r.returncode == 0, r.stderr
    hosts = {h["host"]: h for h in json.loads(r.stdout)["hosts"]}
    assert set(hosts) == {g.name for g in GUESTS}
    for g in GUESTS:
        facts = hosts[g.name]["facts"]
        assert hosts[g.name]["status"] == "ok"
        check_topology(g, Topology.from_json(facts["topology"]))
        assert facts["systemd"]["is_pid1"] and facts["toolchain"]["libnuma_headers"]
        assert facts["cpu"]["cpus"] == g.n_cpus
