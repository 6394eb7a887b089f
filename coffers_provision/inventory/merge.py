"""How vars combine across precedence levels: a higher level replaces a value whole, as
Ansible does, except the tool's own mappings (`coffers:`), merged key by key at every depth.

One definition, shared by the inventory and by the engine's play vars."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

MERGED_VARS = ("coffers",)


def deep_merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    """`high` over `low`; mappings on both sides merge recursively, anything else is replaced."""
    out = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def combine(low: Mapping[str, Any], high: Mapping[str, Any], merged: Iterable[str] = MERGED_VARS) -> dict[str, Any]:
    """One level over another: whole values replaced, except the `merged` mappings."""
    out = dict(low)
    keep = set(merged)
    for key, value in high.items():
        if key in keep and isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def merge_vars(layers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Apply layers lowest first."""
    out: dict[str, Any] = {}
    for layer in layers:
        out = combine(out, layer)
    return out
