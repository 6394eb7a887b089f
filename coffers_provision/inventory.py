"""The fleet inventory, in the Ansible YAML inventory format, read unchanged.

Variable precedence, lowest first (docs/inventory.md):
  1. group `all`: inline `vars:`, then group_vars/all
  2. other groups, parents before children (by depth from `all`, then by name):
     inline `vars:`, then group_vars/<group>
  3. host_vars/<host>
  4. inline host vars (`hosts: {name: {...}}`)
A higher level replaces a variable whole, except the `coffers:` mapping, which is
merged key by key (nested mappings too), so a group can set the model and a host its port.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import CoffersError, DiagnosticsError
from .schema import Diagnostic, JsonPath, Located, YamlError, check, load_yaml

VARS_SUFFIXES = ("", ".yml", ".yaml", ".json")
MERGED_VARS = ("coffers",)


class InventoryError(DiagnosticsError):
    """One or more problems; each is a Diagnostic printed as FILE:LINE:COL: path: message."""


class PatternError(CoffersError, ValueError):
    """A bad or unmatched host pattern."""


@dataclass(frozen=True)
class Host:
    name: str
    vars: Mapping[str, Any]
    groups: tuple[str, ...]
    inventory_dir: Path = Path(".")

    @property
    def address(self) -> str:
        return self.vars.get("ansible_host", self.name)

    @property
    def port(self) -> int | None:
        return self.vars.get("ansible_port")

    @property
    def user(self) -> str | None:
        return self.vars.get("ansible_user")

    @property
    def key_file(self) -> str | None:
        key = self.vars.get("ansible_ssh_private_key_file")
        if key is None:
            return None
        path = Path(key).expanduser()
        return str(path if path.is_absolute() else (self.inventory_dir / path))

    @property
    def connection(self) -> str:
        kind = self.vars.get("ansible_connection", "ssh")
        return "ssh" if kind == "paramiko" else kind

    @property
    def proxy_jump(self) -> str | None:
        return proxy_jump_of(self.vars.get("ansible_ssh_common_args", ""))

    @property
    def coffers(self) -> dict[str, Any]:
        return dict(self.vars.get("coffers", {}))


@dataclass
class Inventory:
    path: Path
    hosts: dict[str, Host]
    groups: dict[str, list[str]]  # group -> host names, transitive, inventory order
    group_children: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)

    def select(self, pattern: str | None) -> list[Host]:
        """Hosts matching an Ansible-style pattern, in inventory order (None: every host)."""
        if pattern is None or pattern.strip() in ("", "all", "*"):
            return list(self.hosts.values())
        names = match_pattern(pattern, self.hosts, self.groups)
        return [h for n, h in self.hosts.items() if n in names]


def proxy_jump_of(common_args: str) -> str | None:
    """The ProxyJump target in `ansible_ssh_common_args` (`-J x` or `-o ProxyJump=x`)."""
    try:
        words = shlex.split(common_args)
    except ValueError:
        return None
    for i, word in enumerate(words):
        if word == "-J" and i + 1 < len(words):
            return words[i + 1]
        if word.startswith("-J") and len(word) > 2:
            return word[2:]
        opt = word[2:] if word.startswith("-o") and len(word) > 2 else (words[i + 1] if word == "-o" and i + 1 < len(words) else None)
        if opt:
            m = re.match(r"(?i)^proxyjump\s*[= ]\s*(\S+)$", opt.strip())
            if m:
                return m.group(1)
    return None


# -- host ranges: web[01:10].example.com, db-[a:c] --------------------------------

_RANGE = re.compile(r"\[([^\[\]:]+):([^\[\]:]+)(?::(\d+))?\]")


def expand_hosts(name: str) -> list[str]:
    """Expand one `[start:end(:stride)]` range per call, recursively; numeric or alphabetic."""
    m = _RANGE.search(name)
    if not m:
        if "[" in name or "]" in name:
            raise ValueError(f"bad host range in {name!r}: expected [start:end] or [start:end:stride]")
        return [name]
    start, end, stride = m.group(1), m.group(2), int(m.group(3) or 1)
    if stride < 1:
        raise ValueError(f"bad stride in {name!r}")
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") and len(start) > 1 else 0
        values = [str(i).zfill(width) for i in range(int(start), int(end) + 1, stride)]
    elif len(start) == 1 and len(end) == 1 and start.isalpha() and end.isalpha():
        values = [chr(c) for c in range(ord(start), ord(end) + 1, stride)]
    else:
        raise ValueError(f"bad host range [{start}:{end}] in {name!r}: both ends numeric or both single letters")
    if not values:
        raise ValueError(f"empty host range [{start}:{end}] in {name!r}")
    head, tail = name[: m.start()], name[m.end() :]
    return [h for v in values for h in expand_hosts(head + v + tail)]


# -- loading -----------------------------------------------------------------------


@dataclass
class _Group:
    name: str
    vars: list[tuple[Located, JsonPath]] = field(default_factory=list)  # inline vars blocks
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)


@dataclass
class _Parse:
    located: Located
    groups: dict[str, _Group] = field(default_factory=dict)
    host_order: list[str] = field(default_factory=list)
    host_inline: dict[str, list[tuple[Located, JsonPath]]] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)

    def group(self, name: str) -> _Group:
        return self.groups.setdefault(name, _Group(name))


def load_inventory(path: str | Path) -> Inventory:
    """Load and check an inventory and every vars file beside it; raises InventoryError listing all problems."""
    path = Path(path)
    try:
        located = load_yaml(path)
    except YamlError as e:
        raise InventoryError([e.diagnostic]) from None
    if located.data is None:
        raise InventoryError([located.diag((), "the inventory is empty")])
    problems = check("inventory", located)
    if problems:  # the shape is wrong: walking it would only add noise
        raise InventoryError(problems)

    parse = _Parse(located)
    parse.group("all")
    for name, body in located.data.items():
        _walk_group(parse, name, body, (name,))
        if name != "all" and name not in parse.group("all").children:
            parse.group("all").children.append(name)
    problems = parse.problems
    depth = _depths(parse, problems)

    var_files, file_problems, warnings = _vars_files(path.parent, parse)
    problems += file_problems
    if problems:
        raise InventoryError(problems)

    members = {g: _members(parse, g) for g in parse.groups}
    hosts: dict[str, Host] = {}
    for name in parse.host_order:
        groups = sorted((g for g in parse.groups if name in members[g]), key=lambda g: (depth[g], g))
        layers: list[Mapping[str, Any]] = []
        for g in groups:
            layers += [_at(loc, at) for loc, at in parse.groups[g].vars]
            layers += var_files.get(("group", g), [])
        layers += var_files.get(("host", name), [])
        layers += [_at(loc, at) for loc, at in parse.host_inline.get(name, [])]
        hosts[name] = Host(name, merge_vars(layers), tuple(g for g in groups if g != "all"), path.parent.resolve())
    problems = [d for h in hosts.values() for d in _host_checks(h, parse)]
    if problems:
        raise InventoryError(problems)
    warnings += [d for h in hosts.values() for d in _missing_keys(h, parse)]
    return Inventory(
        path=path,
        hosts=hosts,
        groups={g: [h for h in parse.host_order if h in members[g]] for g in parse.groups},
        group_children={g: list(parse.groups[g].children) for g in parse.groups},
        warnings=warnings,
    )


def _at(located: Located, at: JsonPath) -> Any:
    data = located.data
    for part in at:
        data = data[part]
    return data


def _walk_group(parse: _Parse, name: str, body: dict | None, at: JsonPath) -> None:
    group = parse.group(name)
    if not body:
        return
    if body.get("vars"):
        group.vars.append((parse.located, at + ("vars",)))
    for raw_host, host_vars in (body.get("hosts") or {}).items():
        try:
            names = expand_hosts(raw_host)
        except ValueError as e:
            parse.problems.append(parse.located.diag(at + ("hosts", raw_host), str(e), key=True))
            continue
        for host in names:
            if host not in parse.host_order:
                parse.host_order.append(host)
            if host not in group.hosts:
                group.hosts.append(host)
            if host_vars:
                parse.host_inline.setdefault(host, []).append((parse.located, at + ("hosts", raw_host)))
    for child, child_body in (body.get("children") or {}).items():
        if child not in group.children:
            group.children.append(child)
        _walk_group(parse, child, child_body, at + ("children", child))


def _depths(parse: _Parse, problems: list[Diagnostic]) -> dict[str, int]:
    """Depth of every group below `all` (longest path); reports group cycles."""
    depth: dict[str, int] = {}
    state: dict[str, str] = {}

    def visit(g: str, d: int, chain: list[str]) -> None:
        if state.get(g) == "active":
            cycle = " -> ".join(chain[chain.index(g) :] + [g])
            problems.append(parse.located.diag(_group_path(parse, g), f"group cycle: {cycle}", key=True))
            return
        if depth.get(g, -1) >= d and state.get(g) == "done":
            return
        depth[g] = max(depth.get(g, 0), d)
        state[g] = "active"
        for child in parse.groups[g].children:
            visit(child, d + 1, chain + [g])
        state[g] = "done"

    visit("all", 0, [])
    for g in parse.groups:
        depth.setdefault(g, 1)
    for g, group in parse.groups.items():
        clash = set(group.hosts) & set(parse.groups)
        for h in sorted(clash):
            problems.append(parse.located.diag(_group_path(parse, g) + ("hosts", h), f"{h!r} is both a host and a group", key=True))
    return depth


def _group_path(parse: _Parse, name: str) -> JsonPath:
    """The first place a group is defined, for error positions."""
    for path in parse.located.keys:
        if path and path[-1] == name and (len(path) == 1 or path[-2] == "children"):
            return path
    return ()


def _members(parse: _Parse, group: str, seen: frozenset[str] = frozenset()) -> set[str]:
    if group in seen:
        return set()
    g = parse.groups[group]
    out = set(g.hosts)
    for child in g.children:
        out |= _members(parse, child, seen | {group})
    if group == "all":
        out |= set(parse.host_order)
    return out


def _vars_files(base: Path, parse: _Parse) -> tuple[dict[tuple[str, str], list[Any]], list[Diagnostic], list[Diagnostic]]:
    """group_vars/ and host_vars/: files (NAME, NAME.yml, .yaml, .json) or directories of them.

    A file naming no group or host is a warning, not an error: several inventories in one
    folder share these directories.
    """
    found: dict[tuple[str, str], list[Any]] = {}
    problems: list[Diagnostic] = []
    warnings: list[Diagnostic] = []
    for kind, folder, known in (("group", "group_vars", parse.groups), ("host", "host_vars", parse.host_order)):
        root = base / folder
        if not root.is_dir():
            continue
        for entry in sorted(root.iterdir()):
            if entry.name.startswith("."):
                continue
            name = entry.name if entry.is_dir() else _strip_suffix(entry.name)
            if name is None:
                continue
            if name not in known:
                hint = _close(name, known)
                warnings.append(Diagnostic(str(entry), 1, 1, "$", f"not used: no {kind} named {name!r} in this inventory{hint}"))
                continue
            files = sorted(p for p in entry.rglob("*") if p.is_file() and _strip_suffix(p.name) is not None) if entry.is_dir() else [entry]
            for f in files:
                try:
                    loc = load_yaml(f)
                except YamlError as e:
                    problems.append(e.diagnostic)
                    continue
                if loc.data is None:
                    continue
                errs = check("inventory", loc, ref="vars")
                problems += errs
                if not errs:
                    found.setdefault((kind, name), []).append(loc.data)
    return found, problems, warnings


def _strip_suffix(filename: str) -> str | None:
    for suffix in VARS_SUFFIXES[1:]:
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return filename if "." not in filename and not filename.endswith("~") else None


def _close(name: str, known: Iterable[str]) -> str:
    import difflib

    hint = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {hint[0]!r}?" if hint else ""


def merge_vars(layers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Apply layers lowest first: replace whole values, deep-merge the `coffers` mapping."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key in MERGED_VARS and isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = _deep_merge(out[key], value)
            else:
                out[key] = value
    return out


def _deep_merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _host_checks(host: Host, parse: _Parse) -> list[Diagnostic]:
    """Checks on merged vars that a schema cannot express."""
    problems: list[Diagnostic] = []
    where = _host_path(parse, host.name)

    def var_path(var: str) -> JsonPath:  # the var itself when it is written inline, else the host
        return where + (var,) if where + (var,) in parse.located.keys else where

    args = host.vars.get("ansible_ssh_common_args")
    if args:
        try:
            shlex.split(args)
        except ValueError as e:
            problems.append(parse.located.diag(var_path("ansible_ssh_common_args"), f"host {host.name}: ansible_ssh_common_args cannot be split: {e}", key=True))
        else:
            if re.search(r"(?i)proxyjump|(^|\s)-J", args) and host.proxy_jump is None:
                problems.append(parse.located.diag(var_path("ansible_ssh_common_args"), f"host {host.name}: cannot read the ProxyJump target in {args!r}", key=True))
    jump = host.proxy_jump
    if jump and jump.split("@")[-1].split(":")[0] in (host.name, host.address):
        problems.append(parse.located.diag(var_path("ansible_ssh_common_args"), f"host {host.name}: ProxyJump names the host itself", key=True))
    if host.connection == "local" and host.proxy_jump:
        problems.append(parse.located.diag(var_path("ansible_connection"), f"host {host.name}: ansible_connection local cannot use a ProxyJump", key=True))
    return problems


def _missing_keys(host: Host, parse: _Parse) -> list[Diagnostic]:
    """A key file that is not there yet is a warning: it may be made before the run (a lab's key)."""
    key = host.vars.get("ansible_ssh_private_key_file")
    if key is None or Path(host.key_file).is_file():
        return []
    where = _host_path(parse, host.name)
    path = where + ("ansible_ssh_private_key_file",)
    return [parse.located.diag(path if path in parse.located.keys else where,
                               f"host {host.name}: key file {key!r} does not exist (resolved to {host.key_file})", key=True)]


def _host_path(parse: _Parse, name: str) -> JsonPath:
    for path in parse.located.keys:
        if len(path) >= 2 and path[-2] == "hosts" and name in _safe_expand(str(path[-1])):
            return path
    return ()


def _safe_expand(raw: str) -> list[str]:
    try:
        return expand_hosts(raw)
    except ValueError:
        return []


# -- host patterns (--limit) ---------------------------------------------------------


def split_pattern(pattern: str) -> list[str]:
    """Split on ',' when present, else on ':' outside brackets and outside `~regex` terms."""
    pattern = pattern.strip()
    if "," in pattern:
        return [t.strip() for t in pattern.split(",")]
    terms, depth, cur = [], 0, ""
    for ch in pattern:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == ":" and depth == 0 and not cur.lstrip("!&").startswith("~"):
            terms.append(cur.strip())
            cur = ""
        else:
            cur += ch
    terms.append(cur.strip())
    return terms


def match_pattern(pattern: str, hosts: Mapping[str, Any], groups: Mapping[str, list[str]]) -> set[str]:
    """Union of plain terms, then `&` intersections, then `!` exclusions (order-independent)."""
    terms = split_pattern(pattern)
    if any(not t or t in ("!", "&") for t in terms):
        raise PatternError(f"bad host pattern {pattern!r}: empty term")
    plain = [t for t in terms if t[0] not in "!&"]
    inter = [t[1:] for t in terms if t[0] == "&"]
    excl = [t[1:] for t in terms if t[0] == "!"]
    selected: set[str] = set(hosts) if not plain else set()
    for term in plain:
        selected |= _match_term(term, hosts, groups)
    for term in inter:
        selected &= _match_term(term, hosts, groups)
    for term in excl:
        selected -= _match_term(term, hosts, groups)
    return selected


def _match_term(term: str, hosts: Mapping[str, Any], groups: Mapping[str, list[str]]) -> set[str]:
    if term.startswith("@"):
        path = Path(term[1:]).expanduser()
        try:
            lines = [ln.strip() for ln in path.read_text().splitlines()]
        except OSError as e:
            raise PatternError(f"host pattern {term!r}: cannot read {path}: {e.strerror}") from None
        names = [ln for ln in lines if ln and not ln.startswith("#")]
        unknown = [n for n in names if n not in hosts]
        if unknown:
            raise PatternError(f"host pattern {term!r}: {path} names hosts not in the inventory: {', '.join(unknown)}")
        return set(names)
    if term.startswith("~"):
        try:
            rx = re.compile(term[1:])
        except re.error as e:
            raise PatternError(f"host pattern {term!r}: bad regular expression: {e}") from None
        found = {g for g in groups if rx.search(g)}
        matched = {h for g in found for h in groups[g]} | {h for h in hosts if rx.search(h)}
    elif any(c in term for c in "*?[") and term not in hosts:
        matched = {h for g in fnmatch.filter(groups, term) for h in groups[g]} | set(fnmatch.filter(hosts, term))
    elif term in groups:
        matched = set(groups[term])
    elif term in hosts:
        matched = {term}
    else:
        matched = set()
    if not matched:
        raise PatternError(f"host pattern {term!r} matches no host or group{_close(term, [*groups, *hosts])}")
    return matched
