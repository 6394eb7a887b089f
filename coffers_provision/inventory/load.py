"""`load_inventory(SOURCES)`: every source read, then each host's vars by ansible-core's precedence.

Lowest first (docs/inventory.md has the table):
  1. inline vars of `all`
  2. inline vars of the host's other groups, sorted by depth, `ansible_group_priority`, name
  3. `group_vars/all` beside each source, in source order
  4. `group_vars/<group>` beside each source (source order, then the sorted groups)
  5. the host's inline vars (every source; the last one set wins)
  6. `host_vars/<host>` beside each source, in source order
A level replaces a var whole, except `coffers:` (merge.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..schema import Diagnostic, check
from ..vault import VaultSecret
from .data import Builder, Var
from .merge import MERGED_VARS, deep_merge
from .model import Host, HostVars, InventoryError, Inventory, Origin
from .sources import files_of, read_file
from .vars_files import _entries, read_vars, unused, vars_files

Sources = str | Path | Iterable[str | Path]


@dataclass(frozen=True)
class _Layer:
    vars: dict[str, Var]


def _paths(sources: Sources) -> list[Path]:
    if isinstance(sources, (str, Path)):
        return [Path(sources)]
    return [Path(s) for s in sources]


def load_inventory(sources: Sources, *, vault_secret: VaultSecret | None = None, check_connections: bool = True) -> Inventory:
    """Read every source (a file, a directory, a script) into one inventory; raises InventoryError listing all problems.

    `check_connections=False` reads an inventory whose connection vars this tool cannot
    honour (to list it); connecting to such a host is still an error."""
    paths = _paths(sources)
    if not paths:
        raise InventoryError([Diagnostic("<inventory>", 1, 1, "$", "no inventory source given")])
    builder = Builder()
    problems: list[Diagnostic] = []
    for source in paths:
        if not source.exists():
            problems.append(Diagnostic(str(source), 1, 1, "$", "cannot read: No such file or directory"))
            continue
        for path in files_of(source):
            try:
                read_file(path, builder, vault_secret)
            except InventoryError as e:
                problems += e.diagnostics
    problems += builder.problems
    if problems:
        raise InventoryError(problems)
    builder.reconcile()
    _entries.cache_clear()  # the vars directories as they are now
    return _resolve(builder, paths, vault_secret, check_connections)


def _resolve(b: Builder, sources: list[Path], secret: VaultSecret | None, check_connections: bool) -> Inventory:
    bases = list(dict.fromkeys(s if s.is_dir() else s.parent for s in sources))
    depth = b.depths()
    ancestors = {g: b.ancestors(g) for g in b.groups}
    problems: list[Diagnostic] = []

    @lru_cache(maxsize=None)
    def files(base: Path, kind: str, name: str) -> tuple[_Layer, ...]:
        layers = []
        for path in vars_files(base, kind, name):
            try:
                located = read_vars(path, secret)
            except InventoryError as e:
                problems.extend(e.diagnostics)
                continue
            if located is None:
                continue
            errors = check("inventory", located, ref="vars")
            problems.extend(errors)
            if not errors:
                layers.append(_Layer({k: Var(v, Origin(located, (k,))) for k, v in located.data.items()}))
        return tuple(layers)

    def inline(vars_: dict[str, Var]) -> list[_Layer]:
        return [_Layer(vars_)] if vars_ else []

    order = {g: (depth.get(g, 1), b.groups[g].priority, g) for g in b.groups}
    hosts: dict[str, Host] = {}
    members: dict[str, list[str]] = {g: [] for g in b.groups}
    for name, data in b.hosts.items():
        mine = {g for d in data.groups for g in {d} | ancestors[d]} | {"all"}
        for g in mine:
            members[g].append(name)
        groups = sorted(mine - {"all"}, key=order.__getitem__)
        layers = inline(b.groups["all"].vars)
        for g in groups:
            layers += inline(b.groups[g].vars)
        for base in bases:
            layers += files(base, "group", "all")
        for base in bases:
            for g in groups:
                layers += files(base, "group", g)
        layers += inline(data.vars)
        for base in bases:
            layers += files(base, "host", name)
        raw, origins = _combine(layers)
        magic = {"inventory_hostname": name, "inventory_hostname_short": name.split(".")[0], "groups": members,
                 "group_names": sorted(g for g in groups if g != "ungrouped"),
                 "inventory_dir": str(data.source.parent), "inventory_file": str(data.source)}  # fmt: skip
        hosts[name] = Host(name, HostVars(name, raw, origins, magic, secret), tuple(groups), data.source.parent.resolve())
    if problems:
        raise InventoryError(problems)
    groups_map = members  # filled in host order, so each group's hosts are in inventory order
    warnings = [w for base in bases for w in unused(base, b.groups, b.hosts)]
    for name in sorted(set(b.groups) & set(b.hosts)):  # ansible-core warns too; patterns then mean the group
        origin = b.hosts[name].origin
        text = f"{name!r} is both a host and a group"
        warnings.append(origin.diag(text) if origin else Diagnostic(str(b.hosts[name].source), 1, 1, "$", text))
    inv = Inventory(
        path=sources[0], hosts=hosts, groups=groups_map,
        group_children={g: list(d.children) for g, d in b.groups.items()},
        group_hosts={g: list(d.hosts) for g, d in b.groups.items()},
        warnings=warnings, sources=tuple(sources),
    )  # fmt: skip
    from .connection import check_hosts

    problems, more = check_hosts(inv, b)
    if problems and check_connections:
        raise InventoryError(problems)
    inv.warnings += more
    return inv


def _combine(layers: list[_Layer]) -> tuple[dict[str, Any], dict[str, Origin]]:
    raw: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for layer in layers:
        for key, var in layer.vars.items():
            low = raw.get(key)
            if key in MERGED_VARS and isinstance(var.value, dict) and isinstance(low, dict):
                raw[key] = deep_merge(low, var.value)
            else:
                raw[key] = var.value
            if var.origin is not None:
                origins[key] = var.origin
    return raw, origins

