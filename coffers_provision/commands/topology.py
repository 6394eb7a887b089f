"""`topology parse FILE` and `topology local`."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from rich.table import Table

from ..facts.numa import parse_numactl, parse_sysfs
from ..output import error, out, print_json
from ..status import ExitStatus
from ..topology import Topology, TopologyError, format_cpulist

SYSFS_NODE_ROOT = Path("/sys/devices/system/node")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("topology", help="parse or show a NUMA topology")
    tsub = p.add_subparsers(dest="topology_command", metavar="ACTION", required=True)
    parse = tsub.add_parser("parse", help="parse captured `numactl --hardware` text")
    parse.add_argument("file", help="file with numactl --hardware output ('-' for stdin)")
    parse.add_argument("--json", action="store_true", help="print the JSON contract")
    parse.set_defaults(func=run_parse)
    local = tsub.add_parser("local", help="read this machine (numactl when installed, else sysfs)")
    local.add_argument("--json", action="store_true")
    local.set_defaults(func=run_local)


def run_parse(args: argparse.Namespace) -> ExitStatus:
    import sys

    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        topo = parse_numactl(text, source=args.file)
    except OSError as e:
        error(f"{args.file}: {e.strerror}")
        return ExitStatus.ERROR
    except UnicodeDecodeError:
        error(f"{args.file}: not text: not numactl --hardware output")
        return ExitStatus.ERROR
    except TopologyError as e:
        error(str(e))
        return ExitStatus.ERROR
    show(topo, as_json=args.json)
    return ExitStatus.SUCCESS


def read_local() -> Topology:
    """This machine's topology: through numactl when installed, through sysfs otherwise."""
    if shutil.which("numactl"):
        proc = subprocess.run(["numactl", "--hardware"], capture_output=True, text=True, timeout=30)
        return parse_numactl(proc.stdout or proc.stderr, source="numactl --hardware")
    return parse_sysfs(SYSFS_NODE_ROOT)


def run_local(args: argparse.Namespace) -> ExitStatus:
    try:
        topo = read_local()
    except TopologyError as e:
        error(str(e))
        return ExitStatus.ERROR
    if args.json:
        print_json(topo.to_json() | {"source": topo.source})
    else:
        out.print(f"read through {topo.source}")
        show(topo, as_json=False)
    return ExitStatus.SUCCESS


def show(topo: Topology, *, as_json: bool) -> None:
    if as_json:
        print_json(topo.to_json())
        return
    if not topo.numa_available:
        out.print("NUMA not available: one flat memory domain")
        return
    table = Table(title=f"{len(topo.nodes)} NUMA node(s)")
    for col in ("node", "cpus", "#cpus", "size MB", "free MB", "kind"):
        table.add_column(col, justify="right" if col not in ("cpus", "kind") else "left")
    for n in topo.nodes:
        kind = (
            "cpu-less memory" if n.id in topo.cpuless_memory_nodes
            else "memoryless cpu" if n.id in topo.memoryless_cpu_nodes
            else "cpu+memory" if n.has_cpus and n.has_memory
            else "unknown cpus" if n.cpus is None else "empty"
        )
        table.add_row(
            str(n.id),
            format_cpulist(n.cpus) if n.cpus is not None else "?",
            str(len(n.cpus)) if n.cpus is not None else "?",
            str(n.size_mb),
            str(n.free_mb),
            kind,
        )
    out.print(table)
    if topo.distances is not None:
        dt = Table(title="distances")
        dt.add_column("node", justify="right")
        for i in topo.node_ids:
            dt.add_column(str(i), justify="right")
        for i, row in zip(topo.node_ids, topo.distances):
            dt.add_row(str(i), *map(str, row))
        out.print(dt)
    else:
        out.print("distances: not printed by the source")
