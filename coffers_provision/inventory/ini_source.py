"""The INI inventory format, read as ansible-core reads it.

`[group]` lists hosts (`name[:port] k=v ...`, split like a shell line, `#` starting a
comment), `[group:vars]` sets `k = v` lines (the rest of the line is the value, comments
included), `[group:children]` names child groups, which must be declared somewhere in
the file. Lines before the first section are hosts of `ungrouped`. Every value is read
as a Python literal when it is one (`42`, `1.5`, `True`, `None`, `[1, 2]`, `'quoted'`),
else kept as text (`yes`, `true` and `0755` stay text).

The document is also kept in the YAML inventory's shape, with each key's line and
column, so errors point at `FILE:LINE:COL` and the same schema checks apply.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any

from ..schema import Diagnostic, JsonPath, Located, check, schema
from .data import Builder
from .model import InventoryError, Origin
from .ranges import expand_hostpattern

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_SHELL_CHARS = frozenset("'\"\\#")


def literal(text: str) -> Any:
    """A value as Ansible's INI reader types it: a Python literal when it parses as one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, (str, int, float, bool)) else k: _plain(v) for k, v in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


class _Reader:
    def __init__(self, located: Located, builder: Builder):
        self.loc, self.b = located, builder
        self.loc.data = {}
        self.lineno = 0
        self.pending: dict[str, dict[str, Any]] = {}  # groups named before they are declared

    def fail(self, col: int, message: str) -> InventoryError:
        return InventoryError([Diagnostic(self.loc.file, self.lineno, col, "$", message)])

    def at(self, path: JsonPath, col: int, value: Any = None, *, node: bool = False) -> Origin:
        """Record `path` in the YAML-shaped document (at this line and column) and return its origin."""
        self.loc.keys.setdefault(path, (self.lineno, col))
        self.loc.values.setdefault(path, (self.lineno, col))
        data = self.loc.data
        for part in path[:-1]:
            data = data.setdefault(part, {}) if isinstance(data.get(part), dict) or part not in data else data[part]
            if data is None:
                break
        if isinstance(data, dict):
            if node:
                data.setdefault(path[-1], {})
            else:
                data[path[-1]] = value
        return Origin(self.loc, path)

    def read(self, text: str) -> None:
        group, state = "ungrouped", "hosts"
        for raw in text.splitlines():
            self.lineno += 1
            line = raw.strip()
            indent = len(raw) - len(raw.lstrip()) + 1
            if not line or line[0] in "#;":
                continue
            m = _SECTION.match(line)
            if m:
                group, state = m.group(1), m.group(2) or "hosts"
                self.section(group, state, indent)
                continue
            if line.startswith("[") and line.endswith("]"):
                raise self.fail(indent, f"invalid section {line!r}: no spaces or other characters allowed in a section name")
            if state == "hosts":
                self.host_line(group, line, indent)
            elif state == "vars":
                key, sep, value = line.partition("=")
                if not sep:
                    raise self.fail(indent, f"[{group}:vars]: expected key=value, got {line!r}")
                key = key.strip()
                self.b.set_group_var(group, key, literal(value.strip()), self.at((group, "vars", key), indent, literal(value.strip())))
            else:
                m = _GROUP_NAME.match(line)
                if not m:
                    raise self.fail(indent, f"[{group}:children]: expected a group name, got {line!r}")
                self.child(group, m.group(1), indent)
        for name, decl in self.pending.items():
            self.lineno = decl["line"]
            if decl["state"] == "vars":
                raise self.fail(1, f"section [{name}:vars] is for a group that is never declared")
            raise self.fail(1, f"section [{decl['parents'][-1]}:children] names group {name!r}, which is never declared")

    def section(self, group: str, state: str, col: int) -> None:
        if state not in ("hosts", "children", "vars"):
            raise self.fail(col, f"section [{group}:{state}] has unknown type {state!r} (hosts, children or vars)")
        origin = self.at((group,), col, node=True)
        if group not in self.b.groups:
            if state == "vars" and group not in self.pending:
                self.pending[group] = {"line": self.lineno, "state": state}
            self.b.add_group(group, origin)
        decl = self.pending.get(group)
        if decl and state != "vars":
            if decl["state"] == "children":
                self.adopt(group)
            else:
                del self.pending[group]

    def adopt(self, group: str) -> None:
        for parent in self.pending[group]["parents"]:
            self.b.add_child(parent, group, self.pending[group]["origin"])
            if self.pending.get(parent, {}).get("state") == "children":
                self.adopt(parent)
        self.pending.pop(group, None)

    def child(self, group: str, child: str, col: int) -> None:
        origin = self.at((group, "children", child), col, None)
        if child in self.b.groups:
            self.b.add_child(group, child, origin)
        elif child in self.pending:
            self.pending[child].setdefault("parents", []).append(group)
        else:
            self.pending[child] = {"line": self.lineno, "state": "children", "parents": [group], "origin": origin}

    def host_line(self, group: str, line: str, col: int) -> None:
        try:  # a line with no quoting or comment splits the same on whitespace, much faster
            tokens = line.split() if not _SHELL_CHARS.intersection(line) else shlex.split(line, comments=True)
        except ValueError as e:
            raise self.fail(col, f"cannot split host line {line!r}: {e}") from None
        if not tokens:
            return
        pattern = tokens[0]
        try:
            names, port = expand_hostpattern(pattern)
        except ValueError as e:
            raise self.fail(col, str(e)) from None
        if pattern.endswith(":") and port is None:
            raise self.fail(col, f"host {pattern!r}: a trailing ':' must be followed by a port")
        if "---" in names:
            raise self.fail(col, "host '---': this looks like a YAML file, not INI")
        origin = self.at((group, "hosts", pattern), col, node=True)
        assigned: list[tuple[str, Any, Origin]] = []
        for token in tokens[1:]:
            key, sep, value = token.partition("=")
            where = col + max(line.find(key + "="), 0)
            if not sep:
                raise self.fail(where, f"host {pattern}: expected key=value, got {token!r}")
            typed = literal(value)
            assigned.append((key, typed, self.at((group, "hosts", pattern, key), where, typed)))
        for name in names:
            if self.b.add_host(name, group, origin, port) is not None:
                for key, typed, where_origin in assigned:
                    self.b.set_host_var(name, key, typed, where_origin)


def read(located: Located, text: str, builder: Builder) -> None:
    """Add one INI document to `builder`; raises InventoryError at the first line it cannot read.
    Its values get the same schema checks as a YAML inventory's."""
    _Reader(located, builder).read(text)
    builder.problems += check("inventory", Located(located.file, _checked_part(located.data), located.values, located.keys))


def _checked_part(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with only the vars the schema types (the rest are free-form): checking
    10,000 hosts' every var would cost more than reading them."""
    typed = set(schema("inventory")["$defs"]["vars"]["properties"])

    def keep(vars_: Any) -> Any:
        return {k: v for k, v in vars_.items() if k in typed} if isinstance(vars_, dict) else vars_

    out: dict[str, Any] = {}
    for group, body in doc.items():
        body = dict(body)
        if isinstance(body.get("vars"), dict):
            body["vars"] = keep(body["vars"])
        if isinstance(body.get("hosts"), dict):
            body["hosts"] = {h: keep(v) for h, v in body["hosts"].items()}
        out[group] = body
    return out
