"""The difference between two deployment descriptions, as lines a person reads."""

from __future__ import annotations

import json
from typing import Any

PROVENANCE = "provenance"  # beside the description in the host's record, never compared
IGNORED = ("fingerprint", PROVENANCE)


def changes(old: Any, new: Any, path: str = "") -> list[str]:
    """`path: old -> new` for every leaf that differs (lists of mappings compared item by item)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            if key in IGNORED:
                continue
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                out.append(f"{sub}: added {_short(new[key])}")
            elif key not in new:
                out.append(f"{sub}: removed")
            else:
                out += changes(old[key], new[key], sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and any(isinstance(x, dict) for x in old):
        return [line for i, (a, b) in enumerate(zip(old, new)) for line in changes(a, b, f"{path}[{i}]")]
    return [] if old == new else [f"{path}: {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 200 else text[:197] + "..."
