"""`model inspect PATH|HOST:PATH`: a GGUF model's layout, per layer and kind."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from .. import shardmap
from ..model import KINDS, GGUFError, ModelLayout, read_layout, read_remote_layout
from ..shardmap import ShardMap
from ..topology import parse_cpulist
from ..units import human_bytes, short_bytes
from ..output import error, out, print_json
from ..status import ExitStatus


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="inspect a GGUF model's tensor table")
    msub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    ins = msub.add_parser("inspect", help="per-layer bytes by kind, plus totals (reads only the header)")
    ins.add_argument("target", metavar="PATH|HOST:PATH", help="a local GGUF file, or HOST:PATH with --inventory")
    ins.add_argument("--inventory", "-i", help="inventory that names HOST (for HOST:PATH)")
    ins.add_argument("--json", action="store_true", help="print JSON: totals, per-layer kinds and every tensor")
    ins.add_argument("--map", metavar="MAP", help="a GGML_NUMA_SHARD_MAP (docs/shard-map.md): also show the bytes it puts on each node")
    ins.add_argument("--nodes", metavar="LIST", help="with --map: the host's memory node ids, for layers the map leaves to round-robin "
                                                      "(default: the nodes the map names, else 0)")
    add_connect_arguments(ins)
    ins.set_defaults(func=run_inspect)


def add_connect_arguments(p: argparse.ArgumentParser) -> None:
    """How HOST:PATH models are reached (strict host keys unless told otherwise)."""
    p.add_argument("--known-hosts", type=Path, metavar="FILE", help="the tool's known_hosts file")
    p.add_argument("--accept-new-host-keys", action="store_true", help="trust unknown host keys on first use and record them")


def connect_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {"accept_new_host_keys": args.accept_new_host_keys}
    if args.known_hosts:
        kw["known_hosts"] = args.known_hosts
    return kw


SHORT_KIND = {"attention": "attn", "shared_experts": "shexp", "embedding": "embed"}


def split_target(target: str) -> tuple[str | None, str]:
    """(host, path): an existing local path, or no colon, is local; else HOST:PATH."""
    if os.path.exists(target) or ":" not in target:
        return None, target
    host, path = target.split(":", 1)
    return (host, path) if host and "/" not in host else (None, target)


def load(target: str, inventory: str | None, connect: dict[str, Any] | None = None) -> ModelLayout:
    """The layout of a local file or of HOST:PATH (header only, over the host's connection)."""
    host_name, path = split_target(target)
    if host_name is None:
        return read_layout(path)
    if inventory is None:
        raise GGUFError("HOST:PATH needs --inventory to know how to reach the host", source=target)
    from ..connect import ConnectOptions, open_connector
    from ..inventory import InventoryError, load_inventory

    try:
        inv = load_inventory(inventory)
    except InventoryError as e:
        raise GGUFError("; ".join(str(d) for d in e.diagnostics), source=inventory) from None
    host = inv.hosts.get(host_name)
    if host is None:
        raise GGUFError(f"host {host_name!r} is not in the inventory", source=inventory)
    try:  # an unreachable host is a ConnectError: exit 4, as for every fleet command
        with open_connector(host, ConnectOptions(inventory=inv.hosts, **(connect or {}))) as conn:
            return read_remote_layout(conn, path)
    except OSError as e:
        raise GGUFError(f"cannot read: {e}", source=target) from None


def bytes_per_node(lay: ModelLayout, smap: ShardMap, nodes: list[int]) -> dict[int, int]:
    """Where the map puts the model's bytes, node by node (the C header's rules, shardmap.assign)."""
    placed = shardmap.assign(smap, (t.name for t in lay.tensors), nodes)
    out: dict[int, int] = {}
    for t in lay.tensors:
        out[placed[t.name]] = out.get(placed[t.name], 0) + t.n_bytes
    return dict(sorted(out.items()))


def run_inspect(args: argparse.Namespace) -> ExitStatus:
    if args.nodes is not None and args.map is None:
        error("--nodes needs --map")
        return ExitStatus.USAGE
    try:
        given = sorted(set(parse_cpulist(args.nodes))) if args.nodes is not None else None
    except ValueError as e:
        error(f"--nodes: {e}")
        return ExitStatus.USAGE
    try:  # a bad map names the position of its first bad rule
        smap = shardmap.parse(args.map) if args.map is not None else None
    except shardmap.ShardMapError as e:
        error(f"--map: {e}")
        return ExitStatus.ERROR
    nodes = given if given is not None else (sorted(smap.nodes()) or [0]) if smap is not None else []
    try:
        lay = load(args.target, args.inventory, connect_kwargs(args))
    except GGUFError as e:
        error(str(e))
        return ExitStatus.ERROR
    per_node = bytes_per_node(lay, smap, nodes) if smap is not None else None
    if args.json:
        doc = lay.to_json()
        if per_node is not None:
            doc["map"] = {"map": args.map, "nodes": nodes, "bytes_per_node": {str(n): b for n, b in per_node.items()}}
        print_json(doc)
    else:
        show(lay)
        if per_node is not None:
            out.print(f"GGML_NUMA_SHARD_MAP={args.map} (nodes {','.join(map(str, nodes))}):", markup=False)
            for n, b in per_node.items():
                out.print(f"  node {n}: {short_bytes(b)} ({b} bytes, {100 * b / lay.total_bytes:.1f} %)", markup=False)
    return ExitStatus.SUCCESS


def show(lay: ModelLayout) -> None:
    kinds = [k for k in KINDS if k in lay.kind_bytes]
    out.print(
        f"{lay.source}: {lay.architecture}, {lay.block_count} blocks, {len(lay.layers)} layers in the table, "
        f"{len(lay.tensors)} tensors, GGUF v{lay.version}"
    )
    table = Table(title=f"bytes per layer and kind (total {human_bytes(lay.total_bytes)} = {lay.total_bytes} bytes)", box=box.SIMPLE, padding=(0, 1), collapse_padding=True, show_edge=False)
    table.add_column("layer", justify="right", no_wrap=True)
    for k in kinds:
        table.add_column(SHORT_KIND.get(k, k), justify="right", no_wrap=True)
    table.add_column("total", justify="right", style="bold", no_wrap=True)
    for layer, row in lay.bytes_by_layer_kind.items():
        if not row:
            continue
        cells = [short_bytes(row[k]) if k in row else "" for k in kinds]
        table.add_row("-" if layer is None else str(layer), *cells, short_bytes(sum(row.values())))
    table.add_section()
    table.add_row("total", *(short_bytes(lay.kind_bytes[k]) for k in kinds), short_bytes(lay.total_bytes), style="bold")
    out.print(table)
    for i, part in enumerate(lay.parts):
        out.print(f"part {i + 1} of {len(lay.parts)}: {part.source} ({part.n_tensors} tensors, {human_bytes(part.size)})")
    out.print(f"header read: {lay.header_bytes_read} bytes of {lay.file_size}")
