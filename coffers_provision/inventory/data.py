"""The inventory as sources build it, before vars are resolved: groups, hosts, inline vars.

Every reader (YAML, INI, script JSON) adds to one `Builder`, in source order, with the
same rules ansible-core's inventory data follows: a host keeps the port and the source
it was first seen with; setting a var again replaces it; `ansible_group_priority` in a
group's inline vars sets the group's priority instead of becoming a var; a group may
not become its own ancestor; after the last source every group without a parent is a
child of `all`, and a host in no group but `all` is put in `ungrouped`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..schema import Diagnostic
from .model import Origin

PRIORITY_VAR = "ansible_group_priority"


@dataclass(frozen=True)
class Var:
    value: Any
    origin: Origin | None


@dataclass
class GroupData:
    name: str
    origin: Origin | None = None  # where it was first named
    vars: dict[str, Var] = field(default_factory=dict)
    priority: int = 1
    hosts: list[str] = field(default_factory=list)  # its own hosts, in the order they were added
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)


@dataclass
class HostData:
    name: str
    source: Path
    origin: Origin | None = None
    vars: dict[str, Var] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)  # the groups it was added to directly


@dataclass
class Builder:
    groups: dict[str, GroupData] = field(default_factory=dict)
    hosts: dict[str, HostData] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)
    source: Path = Path(".")  # the source being read

    def __post_init__(self) -> None:
        self.add_group("all")
        self.add_group("ungrouped")
        self.add_child("all", "ungrouped")

    def problem(self, origin: Origin | None, message: str) -> None:
        self.problems.append(origin.diag(message) if origin else Diagnostic(str(self.source), 1, 1, "$", message))

    def add_group(self, name: str, origin: Origin | None = None) -> GroupData:
        if name not in self.groups:
            self.groups[name] = GroupData(name, origin)
        return self.groups[name]

    def add_host(self, name: str, group: str | None, origin: Origin | None, port: int | None = None) -> HostData | None:
        if not name:
            self.problem(origin, "empty host name")
            return None
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = HostData(name, self.source, origin)
            if port is not None:
                host.vars["ansible_port"] = Var(port, origin)
        if group is not None:
            g = self.add_group(group, origin)
            if name not in g.hosts:
                g.hosts.append(name)
            if group not in host.groups:
                host.groups.append(group)
        return host

    def add_child(self, parent: str, child: str, origin: Origin | None = None) -> None:
        p, c = self.add_group(parent, origin), self.add_group(child, origin)
        if child in p.children:
            return
        if child == parent or child in self.ancestors(parent):
            self.problem(origin, f"group cycle: adding {child!r} as a child of {parent!r} makes {child!r} its own ancestor")
            return
        p.children.append(child)
        c.parents.append(parent)

    def set_group_var(self, group: str, key: str, value: Any, origin: Origin | None) -> None:
        g = self.add_group(group, origin)
        if key == PRIORITY_VAR:
            try:
                g.priority = int(value)
            except (TypeError, ValueError):
                self.problem(origin, f"group {group}: {PRIORITY_VAR} must be an integer, not {value!r}")
            return
        g.vars[key] = Var(value, origin)

    def set_host_var(self, host: str, key: str, value: Any, origin: Origin | None) -> None:
        self.hosts[host].vars[key] = Var(value, origin)

    def ancestors(self, group: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.groups[group].parents)
        while todo:
            g = todo.pop()
            if g not in seen:
                seen.add(g)
                todo += self.groups[g].parents
        return seen

    def reconcile(self) -> None:
        for name, g in list(self.groups.items()):
            if name != "all" and not g.parents:
                self.add_child("all", name)
        ungrouped = self.groups["ungrouped"]
        for name, h in self.hosts.items():
            others = {g for d in h.groups for g in {d} | self.ancestors(d)} - {"all", "ungrouped"}
            if "ungrouped" in h.groups and others:
                ungrouped.hosts.remove(name)
                h.groups.remove("ungrouped")
            elif not others and "ungrouped" not in h.groups:
                ungrouped.hosts.append(name)
                h.groups.append("ungrouped")

    def depths(self) -> dict[str, int]:
        """Each group's depth: the longest path from `all` (ansible-core's group depth)."""
        depth: dict[str, int] = {}

        def visit(g: str, d: int) -> None:
            if depth.get(g, -1) >= d:
                return
            depth[g] = d
            for child in self.groups[g].children:
                visit(child, d + 1)

        visit("all", 0)
        return depth

    def host_groups(self, host: str) -> set[str]:
        """Every group a host belongs to: the ones it was added to and their ancestors."""
        direct = self.hosts[host].groups
        return {g for d in direct for g in {d} | self.ancestors(d)} | {"all"}
