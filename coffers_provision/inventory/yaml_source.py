"""The YAML inventory format (and the same shape written as JSON): groups with `hosts`,
`children` and `vars`, nested to any depth; host keys may carry ranges and a `:port`."""

from __future__ import annotations

from typing import Any

from ..schema import JsonPath, Located, check
from .data import Builder
from .model import Origin
from .ranges import expand_hostpattern


def read(located: Located, builder: Builder) -> None:
    """Add one YAML inventory document; problems go to `builder.problems`."""
    problems = check("inventory", located)
    if problems:  # the shape is wrong: walking it would only add noise
        builder.problems += problems
        return
    for name, body in located.data.items():
        _group(located, builder, name, body, (name,))


def _group(located: Located, b: Builder, name: str, body: dict | None, at: JsonPath) -> None:
    b.add_group(name, Origin(located, at))
    if not body:
        return
    for key, value in (body.get("vars") or {}).items():
        b.set_group_var(name, key, value, Origin(located, at + ("vars", key)))
    for child, child_body in (body.get("children") or {}).items():
        _group(located, b, child, child_body, at + ("children", child))
        b.add_child(name, child, Origin(located, at + ("children", child)))
    for raw, host_vars in (body.get("hosts") or {}).items():
        _hosts(located, b, name, raw, host_vars or {}, at + ("hosts", raw))


def _hosts(located: Located, b: Builder, group: str, raw: str, host_vars: dict[str, Any], at: JsonPath) -> None:
    origin = Origin(located, at)
    try:
        names, port = expand_hostpattern(raw)
    except ValueError as e:
        b.problem(origin, str(e))
        return
    for host in names:
        if b.add_host(host, group, origin, port) is not None:
            for key, value in host_vars.items():
                b.set_host_var(host, key, value, Origin(located, at + (key,)))
