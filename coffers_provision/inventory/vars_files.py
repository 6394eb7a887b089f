"""`group_vars/` and `host_vars/` beside each inventory source, found as ansible-core finds them.

For a group or host NAME, the first of `NAME` (a file, or a directory), `NAME.yml`,
`NAME.yaml`, `NAME.json` that exists is used, and only that one. A directory is read
whole, recursively, in name order, skipping hidden files, backups (`~`), files with
another extension and sub-directories with an extension. Each file may be
vault-encrypted. A file naming no group or host is a warning: several inventories in one
folder share these directories.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from collections.abc import Iterable
from pathlib import Path

from ..schema import Diagnostic, Located
from ..vault import VaultSecret
from .files import load
from .model import InventoryError

EXTENSIONS = (".yml", ".yaml", ".json")


def vars_files(base: Path, kind: str, name: str) -> list[Path]:
    """The files that give `name`'s vars under `base/<kind>_vars/`, lowest precedence first."""
    root = base / f"{kind}_vars"
    entries = _entries(root)
    if not any(n in entries for n in (name, *(f"{name}{ext}" for ext in EXTENSIONS))):
        return []
    for candidate in (root / name, *(root / f"{name}{ext}" for ext in EXTENSIONS)):
        if candidate.is_dir():
            return _directory(candidate)
        if candidate.is_file():
            return [candidate]
    return []


@lru_cache(maxsize=64)
def _entries(root: Path) -> frozenset[str]:
    """The names in a vars directory, listed once per load (thousands of hosts ask)."""
    try:
        return frozenset(p.name for p in root.iterdir())
    except OSError:
        return frozenset()


def _directory(path: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(path.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir() and not entry.suffix:
            found += _directory(entry)
        elif entry.is_file() and (not entry.suffix or entry.suffix in EXTENSIONS):
            found.append(entry)
    return found


def read_vars(path: Path, secret: VaultSecret | None) -> Located | None:
    """One vars file with positions (None when it is empty); raises InventoryError."""
    located = load(path, secret)
    if located.data is None:
        return None
    if not isinstance(located.data, dict):
        raise InventoryError([located.diag((), "a vars file must be a mapping of variable names to values")])
    return located


def unused(base: Path, groups: Iterable[str], hosts: Iterable[str]) -> list[Diagnostic]:
    """Warnings for vars files that name no group or host of the inventory."""
    out: list[Diagnostic] = []
    for kind, known in (("group", set(groups)), ("host", set(hosts))):
        root = base / f"{kind}_vars"
        if not root.is_dir():
            continue
        for entry in sorted(root.iterdir()):
            if entry.name.startswith(".") or entry.name.endswith("~"):
                continue
            name = entry.name if entry.is_dir() or entry.suffix not in EXTENSIONS else entry.stem
            if name not in known:
                hint = difflib.get_close_matches(name, sorted(known), n=1)
                tail = f"; did you mean {hint[0]!r}?" if hint else ""
                out.append(Diagnostic(str(entry), 1, 1, "$", f"not used: no {kind} named {name!r} in this inventory{tail}"))
    return out
