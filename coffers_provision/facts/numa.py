"""NUMA topology facts: parsers for `numactl --hardware` text and for a sysfs node tree.

Both are pure functions of their input (text, or a directory you pass in).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Mapping

from ..topology import Node, Topology, TopologyError, parse_cpulist

NO_NUMA = "No NUMA available on this system"

_AVAILABLE = re.compile(r"^available:\s+(\d+)\s+nodes?\s+\(([^)]*)\)$")
_CPUS = re.compile(r"^node\s+(\d+)\s+cpus:(.*)$")
_SIZE = re.compile(r"^node\s+(\d+)\s+(size|free):\s+(-?\d+)\s+MB$")
_COMPRESSED = re.compile(r"^(\S+)\s+\((\d+)\)$")  # --cpu-compress: "0-15 (16)"
_DIST_ROW = re.compile(r"^(\d+):((?:\s+\d+)*)$")


def parse_numactl(text: str, source: str = "<numactl>") -> Topology:
    """Parse `numactl --hardware` output.

    Handles sparse ids, empty CPU lists, the `--cpu-compress` form, the numactl 1.0.2 form
    (no cpus lines, no distance table) and "No NUMA available". Raises TopologyError naming
    the line for anything else.
    """

    def fail(msg: str, line: int | None) -> TopologyError:
        return TopologyError(msg, source=source, line=line)

    lines = [(i, raw.strip()) for i, raw in enumerate(text.splitlines(), 1) if raw.strip()]
    if not lines:
        raise fail("empty input: not numactl --hardware output", None)
    if lines[0][1] == NO_NUMA:
        if len(lines) > 1:
            raise fail(f"unexpected text after {NO_NUMA!r}", lines[1][0])
        return Topology(numa_available=False, nodes=(), distances=None)

    first_no, first = lines[0]
    m = _AVAILABLE.match(first)
    if not m:
        raise fail(f"expected 'available: N nodes (...)', got {first[:60]!r}: not numactl --hardware output", first_no)
    declared_count = int(m.group(1))
    try:
        declared_ids = parse_cpulist(m.group(2))
    except ValueError as e:
        raise fail(f"bad node list: {e}", first_no) from None
    if len(declared_ids) != declared_count:
        raise fail(f"'available' says {declared_count} nodes but lists {len(declared_ids)}", first_no)

    cpus: dict[int, tuple[int, ...]] = {}
    mem: dict[int, dict[str, int]] = {}
    order: list[int] = []  # nodes in printed order
    distances: list[tuple[int, ...]] | None = None
    header: list[int] | None = None
    header_no = 0

    def known(node_id: int, line_no: int) -> int:
        if node_id not in declared_ids:
            raise fail(f"node {node_id} is not in the 'available' list {declared_ids}", line_no)
        if node_id not in order:
            order.append(node_id)
        return node_id

    idx = 1
    while idx < len(lines):
        no, line = lines[idx]
        idx += 1
        if header is not None:
            rm = _DIST_ROW.match(line)
            if not rm:
                raise fail(f"expected a distance row 'ID: d d ...', got {line[:60]!r}", no)
            row_id, values = int(rm.group(1)), [int(v) for v in rm.group(2).split()]
            expected_row = header[len(distances)] if len(distances) < len(header) else None
            if row_id != expected_row:
                raise fail(f"distance row for node {row_id} where node {expected_row} was expected", no)
            if len(values) != len(header):
                raise fail(f"distance row for node {row_id} has {len(values)} values, the header has {len(header)} nodes (matrix not square)", no)
            distances.append(tuple(values))
            continue
        if line == "node distances:":
            if idx >= len(lines):
                raise fail("'node distances:' with no table after it (truncated)", no)
            header_no, hline = lines[idx]
            idx += 1
            parts = hline.split()
            if not parts or parts[0] != "node" or not all(p.isdigit() for p in parts[1:]) or len(parts) < 2:
                raise fail(f"expected the distance header 'node ID ID ...', got {hline[:60]!r}", header_no)
            header = [int(p) for p in parts[1:]]
            distances = []
            continue
        if cm := _CPUS.match(line):
            node_id = known(int(cm.group(1)), no)
            body = cm.group(2).strip()
            if node_id in cpus:
                raise fail(f"node {node_id} cpus listed twice", no)
            try:
                if comp := _COMPRESSED.match(body):
                    ids = parse_cpulist(comp.group(1))
                    if len(ids) != int(comp.group(2)):
                        raise ValueError(f"{comp.group(1)!r} holds {len(ids)} CPUs, not {comp.group(2)}")
                else:
                    ids = [int(t) for t in body.split()] if body else []
            except ValueError as e:
                raise fail(f"bad CPU list for node {node_id}: {e}", no) from None
            cpus[node_id] = tuple(ids)
            continue
        if sm := _SIZE.match(line):
            node_id = known(int(sm.group(1)), no)
            field, value = sm.group(2), int(sm.group(3))
            if value < 0:
                raise fail(f"negative {field} for node {node_id}", no)
            if field in mem.setdefault(node_id, {}):
                raise fail(f"node {node_id} {field} given twice", no)
            mem[node_id][field] = value
            continue
        raise fail(f"unrecognised line {line[:60]!r}", no)

    for node_id in declared_ids:
        if node_id not in order:
            raise fail(f"node {node_id} is declared in 'available' but never described (truncated?)", first_no)
        for field in ("size", "free"):
            if field not in mem.get(node_id, {}):
                raise fail(f"node {node_id} has no '{field}:' line (truncated?)", None)
    if cpus and set(cpus) != set(order):
        missing = sorted(set(order) - set(cpus))
        raise fail(f"nodes {missing} have no 'cpus:' line while others do", None)
    if header is not None:
        if len(distances) != len(header):
            raise fail(f"distance table has {len(distances)} rows for {len(header)} nodes (truncated or not square)", header_no)
        if header != order:
            raise fail(f"distance header lists nodes {header}, the nodes are {order}", header_no)

    nodes = tuple(
        Node(id=i, cpus=cpus.get(i) if cpus else None, size_mb=mem[i]["size"], free_mb=mem[i]["free"])
        for i in order
    )
    return Topology(
        numa_available=True,
        nodes=nodes,
        distances=tuple(distances) if distances is not None else None,
        source="numactl",
    )


# -- sysfs -------------------------------------------------------------------

_MEMINFO = re.compile(r"^Node\s+(\d+)\s+(MemTotal|MemFree):\s+(\d+)\s+kB$")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise TopologyError(f"cannot read: {e.strerror}", source=str(path)) from None


def parse_sysfs(root: str | Path) -> Topology:
    """Read a sysfs node tree (`/sys/devices/system/node` or a copy of one) rooted at `root`.

    Uses `online`, `has_memory` when present, and each `nodeN/{cpulist,meminfo,distance}`.
    The kernel prints each distance row over the online nodes in id order.
    """
    root = Path(root)
    if not (root / "online").exists():
        if not root.is_dir():
            raise TopologyError("not a directory", source=str(root))
        if not list(root.glob("node[0-9]*")):
            return Topology(numa_available=False, nodes=(), distances=None, source="sysfs")
        raise TopologyError("no 'online' file: not a sysfs node tree", source=str(root))
    return _parse_node_tree(lambda rel: _read(root / rel), lambda rel: (root / rel).exists(), str(root))


def parse_sysfs_files(files: Mapping[str, str], root: str = "/sys/devices/system/node") -> Topology:
    """The same as parse_sysfs, from file contents keyed by path under `root`
    (`online`, `node0/meminfo`, ...): a tree read on a remote host and sent back as text."""

    def read(rel: str) -> str:
        if rel not in files:
            raise TopologyError("cannot read: No such file or directory", source=f"{root}/{rel}")
        return files[rel]

    if "online" not in files:
        if not any(re.match(r"node\d+/", rel) for rel in files):
            return Topology(numa_available=False, nodes=(), distances=None, source="sysfs")
        raise TopologyError("no 'online' file: not a sysfs node tree", source=root)
    return _parse_node_tree(read, lambda rel: rel in files, root)


def _parse_node_tree(read: Callable[[str], str], exists: Callable[[str], bool], root: str) -> Topology:
    def list_file(rel: str) -> list[int]:
        try:
            return parse_cpulist(read(rel))
        except ValueError as e:
            raise TopologyError(str(e), source=f"{root}/{rel}", line=1) from None

    online = list_file("online")
    with_memory = set(list_file("has_memory")) if exists("has_memory") else None

    nodes: list[Node] = []
    rows: list[tuple[int, ...]] = []
    for node_id in online:
        ndir = f"node{node_id}"
        ids = list_file(f"{ndir}/cpulist")
        total = free = None
        for no, line in enumerate(read(f"{ndir}/meminfo").splitlines(), 1):
            m = _MEMINFO.match(line.strip())
            if not m:
                continue
            if int(m.group(1)) != node_id:
                raise TopologyError(f"meminfo speaks of node {m.group(1)}", source=f"{root}/{ndir}/meminfo", line=no)
            if m.group(2) == "MemTotal":
                total = int(m.group(3)) // 1024
            else:
                free = int(m.group(3)) // 1024
        if total is None or free is None:
            raise TopologyError("no MemTotal/MemFree lines", source=f"{root}/{ndir}/meminfo")
        if with_memory is not None and node_id not in with_memory:
            total = free = 0  # the kernel keeps a token zone on memoryless nodes
        dist_text = read(f"{ndir}/distance").split()
        if not all(t.isdigit() for t in dist_text) or len(dist_text) != len(online):
            raise TopologyError(
                f"expected {len(online)} distances (one per online node), got {' '.join(dist_text)!r}",
                source=f"{root}/{ndir}/distance",
                line=1,
            )
        rows.append(tuple(int(t) for t in dist_text))
        nodes.append(Node(id=node_id, cpus=tuple(ids), size_mb=total, free_mb=free))
    return Topology(numa_available=True, nodes=tuple(nodes), distances=tuple(rows), source="sysfs")


def write_sysfs(topo: Topology, root: str | Path) -> None:
    """Write a sysfs node tree that parse_sysfs reads back as `topo` (for test hosts).

    Missing facts are filled plainly: no CPU list becomes an empty one, no distances
    become 10 local / 20 remote.
    """
    from ..topology import format_cpulist

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ids = topo.node_ids
    (root / "online").write_text(format_cpulist(ids) + "\n")
    (root / "possible").write_text(format_cpulist(ids) + "\n")
    (root / "has_memory").write_text(format_cpulist(topo.memory_nodes) + "\n")
    (root / "has_cpu").write_text(format_cpulist(topo.cpu_nodes) + "\n")
    for i, n in enumerate(topo.nodes):
        ndir = root / f"node{n.id}"
        ndir.mkdir(exist_ok=True)
        (ndir / "cpulist").write_text(format_cpulist(n.cpus or ()) + "\n")
        total_kb, free_kb = (n.size_mb or 0) * 1024, (n.free_mb or 0) * 1024
        (ndir / "meminfo").write_text(
            f"Node {n.id} MemTotal:       {total_kb} kB\n"
            f"Node {n.id} MemFree:        {free_kb} kB\n"
            f"Node {n.id} MemUsed:        {max(total_kb - free_kb, 0)} kB\n"
        )
        row = topo.distances[i] if topo.distances is not None else [10 if j == n.id else 20 for j in ids]
        (ndir / "distance").write_text(" ".join(str(d) for d in row) + "\n")
