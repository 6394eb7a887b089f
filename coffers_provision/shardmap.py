"""`GGML_NUMA_SHARD_MAP`: parse, resolve, and emit (docs/shard-map.md is the spec).

The C resolver `ggml_numa_shard_node_for` implements the same rules; tests cross-check both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from .errors import CoffersError

MAX_NODE_ID = 1023
TYPES = ("attn", "ffn", "norm", "embed")
_LAYER = re.compile(r"^blk\.([0-9]+)\.")  # ASCII digits only, as in C
_NODE = re.compile(r"^(?:node)?([0-9]+)\Z")
_RANGE = re.compile(r"^([0-9]+)(?:-([0-9]+))?\Z")
_BLANK = " \t"  # the spec allows spaces and tabs around rules, nothing else
_EMBED_PREFIXES = ("token_embd", "position_embd", "token_types")


class ShardMapError(CoffersError, ValueError):
    """A bad rule. `position` is the 1-based character offset of the rule in the map."""

    def __init__(self, message: str, *, position: int, rule: str):
        self.message, self.position, self.rule = message, position, rule
        super().__init__(f"GGML_NUMA_SHARD_MAP position {position} ({rule!r}): {message}")


@dataclass(frozen=True)
class ShardMap:
    ranges: tuple[tuple[int, int, int], ...] = ()  # (first, last, node), sorted by first
    types: Mapping[str, int] = field(default_factory=dict)
    default: int | None = None  # the `*` node; None means node 0

    def node_for(self, name: str, nodes: Sequence[int]) -> int:
        """The node for tensor `name`; `nodes` are the online memory node ids (for round-robin)."""
        kind = tensor_type(name)
        if kind is not None and kind in self.types:
            return self.types[kind]
        layer = layer_of(name)
        if layer is None:
            return self.default if self.default is not None else 0
        for first, last, node in self.ranges:
            if first <= layer <= last:
                return node
        ordered = sorted(nodes)
        if not ordered:
            return 0
        return ordered[layer % len(ordered)]

    def nodes(self) -> set[int]:
        """Every node id the map names."""
        out = {n for _, _, n in self.ranges} | set(self.types.values())
        if self.default is not None:
            out.add(self.default)
        return out

    def __str__(self) -> str:
        return format_map(self)


def layer_of(name: str) -> int | None:
    m = _LAYER.match(name)
    return int(m.group(1)) if m else None


def tensor_type(name: str) -> str | None:
    """The map type of a tensor name; the order of the checks is part of the spec."""
    if name.startswith(_EMBED_PREFIXES):
        return "embed"
    for kind in ("norm", "attn", "ffn"):
        if kind in name:
            return kind
    return None


def parse(text: str) -> ShardMap:
    """Parse a map; raises ShardMapError naming the position of the first bad rule."""
    if not text.strip(_BLANK):
        return ShardMap()
    ranges: list[tuple[int, int, int, int, str]] = []  # first, last, node, pos, rule
    types: dict[str, int] = {}
    default: int | None = None
    pos = 1
    for raw in text.split(","):
        rule_pos = pos + (len(raw) - len(raw.lstrip(_BLANK)))
        rule = raw.strip(_BLANK)
        pos += len(raw) + 1

        def fail(msg: str) -> ShardMapError:
            return ShardMapError(msg, position=rule_pos, rule=rule)

        if not rule:
            raise fail("empty rule")
        if rule.count(":") != 1:
            raise fail("expected TARGET:nodeX")
        target, node_text = (p.strip(_BLANK) for p in rule.split(":"))
        nm = _NODE.match(node_text)
        if not nm:
            raise fail(f"bad node {node_text!r}: expected nodeX or X")
        if len(nm.group(1).lstrip("0")) > len(str(MAX_NODE_ID)):
            raise fail(f"node id {nm.group(1)[:12]}... is above {MAX_NODE_ID}")
        node = int(nm.group(1))
        if node > MAX_NODE_ID:
            raise fail(f"node id {node} is above {MAX_NODE_ID}")
        if target == "*":
            if default is not None:
                raise fail("'*' given twice")
            default = node
        elif target in TYPES:
            if target in types:
                raise fail(f"type {target!r} given twice")
            types[target] = node
        elif rm := _RANGE.match(target):
            if max(len(g or "") for g in rm.groups()) > 4000:  # past Python's int() text limit
                raise fail("layer number too large")
            first = int(rm.group(1))
            last = int(rm.group(2)) if rm.group(2) is not None else first
            if first > last:
                raise fail(f"range {first}-{last} runs backwards")
            for f, l, _, _, other in ranges:
                if first <= l and f <= last:
                    raise fail(f"layers {max(f, first)}-{min(l, last)} are also in rule {other!r}")
            ranges.append((first, last, node, rule_pos, rule))
        else:
            raise fail(f"unknown target {target!r}: expected N, N-M, {', '.join(TYPES)} or *")
    return ShardMap(
        ranges=tuple(sorted((f, l, n) for f, l, n, _, _ in ranges)),
        types=types,
        default=default,
    )


def format_map(smap: ShardMap) -> str:
    parts = [f"{f}:node{n}" if f == l else f"{f}-{l}:node{n}" for f, l, n in smap.ranges]
    parts += [f"{t}:node{smap.types[t]}" for t in TYPES if t in smap.types]
    if smap.default is not None:
        parts.append(f"*:node{smap.default}")
    return ",".join(parts)


def from_assignment(layer_nodes: Mapping[int, int], embed_node: int | None, other_node: int | None) -> ShardMap:
    """The map that reproduces a whole-layer assignment exactly, in seed syntax when it can.

    `layer_nodes`: layer -> node for every layer in the tensor table.
    `embed_node`: the node of token_embd-type tensors (None: the model has none).
    `other_node`: the node of every other layerless tensor (None: the model has none).
    """
    ranges: list[tuple[int, int, int]] = []
    for layer in sorted(layer_nodes):
        node = layer_nodes[layer]
        if ranges and ranges[-1][2] == node and ranges[-1][1] == layer - 1:
            ranges[-1] = (ranges[-1][0], layer, node)
        else:
            ranges.append((layer, layer, node))
    return from_ranges(ranges, embed_node, other_node)


def from_ranges(ranges: Sequence[tuple[int, int, int]], embed_node: int | None, other_node: int | None) -> ShardMap:
    """`from_assignment` for an assignment already in runs: `ranges` are (first, last, node),
    in order, with no two adjacent ones on the same node (so none can be merged)."""
    # Layerless tensors without an embed rule go to the `*` node (default 0).
    default = other_node if other_node is not None and other_node != 0 else None
    effective_default = default if default is not None else 0
    if embed_node is not None and other_node is None and embed_node != 0:
        default, effective_default = embed_node, embed_node
    types = {"embed": embed_node} if embed_node is not None and embed_node != effective_default else {}
    return ShardMap(ranges=tuple(ranges), types=types, default=default)


def assign(smap: ShardMap, names: Iterable[str], nodes: Sequence[int]) -> dict[str, int]:
    """Evaluate the map over a tensor table: name -> node."""
    return {name: smap.node_for(name, nodes) for name in names}
