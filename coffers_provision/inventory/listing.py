"""The resolved inventory in the shapes `ansible-inventory` prints, so the two can be diffed.

`--list`: `{"_meta": {"hostvars": {HOST: vars}}, "all": {"children": [...]}, GROUP:
{"hosts": [...], "children": [...]}}`, empty keys and empty groups left out (an empty
group is still named among its parent's children). `--host H`: one host's vars.
`--graph`: the group tree. `--yaml`: the YAML inventory shape. Vars are shown as written
(templates unrendered, `!vault` values as `{"__ansible_vault": ciphertext}`), exactly
as ansible-inventory shows them; no decrypted vault value is ever printed.
"""

from __future__ import annotations

from typing import Any

from .model import Host, HostVars, Inventory, VaultValue

PROFILE = "inventory_legacy"


def host_vars(host: Host) -> dict[str, Any]:
    """A host's vars as written (precedence applied, nothing rendered or decrypted)."""
    raw = host.vars.raw if isinstance(host.vars, HostVars) else dict(host.vars)
    return {k: _shown(v) for k, v in sorted(raw.items())}


def _shown(value: Any) -> Any:
    if isinstance(value, VaultValue):
        return value.to_json()
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(v) for v in value]
    return str(value) if isinstance(value, str) else value


def as_list(inv: Inventory) -> dict[str, Any]:
    out: dict[str, Any] = {"_meta": {"hostvars": {n: v for n, h in inv.hosts.items() if (v := host_vars(h))}, "profile": PROFILE}}
    seen: set[str] = set()

    def visit(group: str) -> None:
        entry: dict[str, Any] = {}
        if group != "all" and inv.group_hosts.get(group):
            entry["hosts"] = list(inv.group_hosts[group])
        children = inv.group_children.get(group, [])
        if children:
            entry["children"] = list(children)
        for child in children:
            if child not in seen:
                seen.add(child)
                visit(child)
        if entry:
            out[group] = entry

    visit("all")
    return out


def as_graph(inv: Inventory, group: str = "all") -> str:
    lines: list[str] = []

    def name(text: str, depth: int) -> str:
        return "  |" * depth + "--" + text if depth else text

    def visit(g: str, depth: int) -> None:
        lines.append(name(f"@{g}:", depth))
        for child in inv.group_children.get(g, []):
            visit(child, depth + 1)
        if g != "all":
            lines.extend(name(h, depth + 1) for h in inv.group_hosts.get(g, []))

    visit(group, 0)
    return "\n".join(lines) + "\n"


def as_yaml(inv: Inventory) -> dict[str, Any]:
    """The YAML inventory shape: nested children, each host's vars under its first group."""
    seen_hosts: set[str] = set()
    seen_groups: set[str] = set()

    def visit(g: str) -> dict[str, Any]:
        entry: dict[str, Any] = {}
        children: dict[str, Any] = {}
        for child in inv.group_children.get(g, []):
            if child in seen_groups:
                children[child] = {}
            else:
                seen_groups.add(child)
                children.update(visit(child))
        if children:
            entry["children"] = children
        hosts: dict[str, Any] = {}
        if g != "all":
            for h in inv.group_hosts.get(g, []):
                hosts[h] = {} if h in seen_hosts else host_vars(inv.hosts[h])
                seen_hosts.add(h)
        if hosts:
            entry["hosts"] = hosts
        return {g: entry} if entry else {}

    return visit("all")
