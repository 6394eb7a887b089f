"""The JSON that `ansible-inventory --list` and dynamic inventory scripts print.

`{"_meta": {"hostvars": {HOST: {...}}}, GROUP: {"hosts": [...], "vars": {...},
"children": [...]}, ...}`; a group may also be a bare list of hosts, or a mapping with
none of those keys (then it is one host of that name with those vars), as ansible-core
reads it. An executable source is run with `--list` and its output read the same way;
without `_meta.hostvars` it is asked `--host H` for each host.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from ..schema import Diagnostic, Located, YamlError, check, load_yaml
from .data import Builder
from .files import InventoryLoader
from .model import InventoryError, Origin

SCRIPT_TIMEOUT_S = 120


def looks_listed(data: Any) -> bool:
    """A document in the `--list` shape (rather than the YAML inventory shape written as JSON)."""
    if not isinstance(data, dict):
        return False
    if "_meta" in data:
        return True
    return any(isinstance(g, list) or (isinstance(g, dict) and isinstance(g.get("hosts"), list)) for g in data.values())


def run_script(path: Path, *args: str) -> str:
    """What an executable inventory prints for `args` (it is run directly, never through a shell)."""
    try:
        proc = subprocess.run([str(path), *args], capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S, check=False)
    except OSError as e:
        raise _error(path, f"cannot run the inventory script: {e.strerror}") from None
    except subprocess.TimeoutExpired:
        raise _error(path, f"the inventory script did not finish {' '.join(args)} in {SCRIPT_TIMEOUT_S}s") from None
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no error output"]
        raise _error(path, f"the inventory script exited {proc.returncode} for {' '.join(args)}: {tail[0]}")
    return proc.stdout


def _error(path: Path, message: str) -> InventoryError:
    return InventoryError([Diagnostic(str(path), 1, 1, "$", message)])


def parse_json(name: str, text: str) -> Located:
    try:
        return load_yaml(name, text.replace("\t", " "), loader=InventoryLoader)
    except YamlError as e:
        raise InventoryError([e.diagnostic]) from None


def read(located: Located, builder: Builder, host_vars_of: Any = None) -> None:
    """Add one `--list` document. `host_vars_of(host)` answers for hosts when `_meta.hostvars` is absent."""
    data = located.data
    if not isinstance(data, dict):
        builder.problem(Origin(located, ()), "inventory JSON must be a mapping of groups")
        return
    meta = data.get("_meta")
    hostvars = meta.get("hostvars") if isinstance(meta, dict) else None
    if meta is not None and not isinstance(hostvars, dict):
        builder.problem(Origin(located, ("_meta",)), "_meta.hostvars must be a mapping of host names to their vars")
        return
    seen: list[str] = []
    for group, body in data.items():
        if group != "_meta":
            _group(located, builder, group, body, seen)
    for host in seen:
        if hostvars is not None:
            got, at = hostvars.get(host) or {}, ("_meta", "hostvars", host)
        else:
            got, at = host_vars_of(host) if host_vars_of else {}, ()
        if not isinstance(got, dict):
            builder.problem(Origin(located, at), f"host {host}: its vars must be a mapping")
            continue
        if at:
            builder.problems += check("inventory", located, at=at, ref="vars")
        for key, value in got.items():
            builder.set_host_var(host, key, value, Origin(located, at + (key,)))


def _group(located: Located, b: Builder, group: str, body: Any, seen: list[str]) -> None:
    at = (group,)
    b.add_group(group, Origin(located, at))
    if not isinstance(body, dict):
        body, at_hosts = {"hosts": body}, at
    elif not any(k in body for k in ("hosts", "vars", "children")):
        body, at_hosts = {"hosts": [group], "vars": body}, at
    else:
        at_hosts = at + ("hosts",)
    hosts = body.get("hosts")
    if hosts is not None:
        if not isinstance(hosts, list):
            b.problem(Origin(located, at_hosts), f"group {group}: hosts must be a list of names")
        else:
            for i, host in enumerate(hosts):
                origin = Origin(located, at_hosts + (i,))
                if not isinstance(host, str):
                    b.problem(origin, f"group {group}: host names must be strings, not {host!r}")
                elif b.add_host(host, group, origin) is not None and host not in seen:
                    seen.append(host)
    variables = body.get("vars")
    if variables is not None:
        if not isinstance(variables, dict):
            b.problem(Origin(located, at + ("vars",)), f"group {group}: vars must be a mapping")
        else:
            vat = at + ("vars",) if "vars" in (located.data.get(group) or {}) else at
            for key, value in variables.items():
                b.set_group_var(group, key, value, Origin(located, vat + (key,)))
    for i, child in enumerate(body.get("children") or []):
        b.add_child(group, str(child), Origin(located, at + ("children", i)))
