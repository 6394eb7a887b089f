"""How to reach a host, from its connection vars, as Ansible and OpenSSH mean them.

Aliases: `ansible_ssh_host`, `ansible_ssh_port`, `ansible_ssh_user`,
`ansible_private_key_file`, `ansible_ssh_pass`/`ansible_ssh_password` stand for the
modern names (which win when both are set). A port may be a quoted number or a
template. `ansible_ssh_common_args` then `ansible_ssh_extra_args` are read as ssh
options; as on the ssh command line Ansible builds, the connection vars come first and
the first value of an option wins. An option or connection type the tool cannot honour
is an error naming it: a setting silently dropped would connect somewhere else.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..schema import Diagnostic
from .model import InventoryError, Origin

if TYPE_CHECKING:
    from .data import Builder
    from .model import Host, Inventory

ALIASES = {
    "ansible_host": ("ansible_host", "ansible_ssh_host"),
    "ansible_port": ("ansible_port", "ansible_ssh_port"),
    "ansible_user": ("ansible_user", "ansible_ssh_user"),
    "ansible_ssh_private_key_file": ("ansible_ssh_private_key_file", "ansible_private_key_file"),
    "ansible_password": ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password"),
    "ansible_become_password": ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass"),
}
SSH_KINDS = {"ssh": "ssh", "paramiko": "ssh", "paramiko_ssh": "ssh", "smart": "ssh", "local": "local"}
ARGS_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")
# Options that tune a connection but change neither where nor as whom it logs in; the
# connector has its own keepalive, timeouts and multiplexing, so they need nothing.
NEUTRAL_OPTIONS = {
    "controlmaster", "controlpersist", "controlpath", "serveraliveinterval", "serveralivecountmax",
    "connecttimeout", "connectionattempts", "compression", "loglevel", "tcpkeepalive", "identitiesonly",
    "preferredauthentications", "pubkeyauthentication", "passwordauthentication", "kbdinteractiveauthentication",
    "gssapiauthentication", "challengeresponseauthentication", "batchmode", "hashknownhosts", "addkeystoagent",
}  # fmt: skip
NEUTRAL_FLAGS = set("qCTvx46")
BECOME_METHODS = ("sudo",)


@dataclass(frozen=True)
class Become:
    user: str = "root"
    method: str = "sudo"
    password: str | None = None  # never printed

    def __repr__(self) -> str:
        return f"Become(user={self.user!r}, method={self.method!r}, password={'***' if self.password else None})"


@dataclass(frozen=True)
class Connection:
    kind: str  # ssh or local
    address: str
    port: int | None = None
    user: str | None = None
    key_file: str | None = None
    password: str | None = None
    proxy_jump: str | None = None
    proxy_command: str | None = None
    become: Become | None = None

    def __repr__(self) -> str:
        return (f"Connection({self.kind}, {self.user}@{self.address}:{self.port}, key={self.key_file}, "
                f"jump={self.proxy_jump}, command={self.proxy_command}, become={self.become!r})")  # fmt: skip


class _Where:
    """Errors about a host's var, at the var's position when it has one."""

    def __init__(self, host: Host):
        self.host = host
        self.origins: Mapping[str, Origin] = getattr(host.vars, "origins", {})

    def error(self, var: str, message: str) -> InventoryError:
        text = f"host {self.host.name}: {var}: {message}"
        origin = self.origins.get(var)
        return InventoryError([origin.diag(text, key=False)]) if origin else InventoryError([Diagnostic("<inventory>", 1, 1, "$", text)])


def _get(host: Host, var: str) -> tuple[str, Any] | None:
    for name in ALIASES.get(var, (var,)):
        if name in host.vars:
            return name, host.vars[name]
    return None


def _port(where: _Where, var: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise where.error(var, f"{value!r} is not a port number (1-65535)")
    return value


def _text(where: _Where, var: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or str(value) == "":
        raise where.error(var, f"expected text, got {value!r}")
    return str(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("yes", "on", "1", "true", "y", "t")
    return bool(value)


@dataclass
class _SshArgs:
    port: int | None = None
    user: str | None = None
    key_file: str | None = None
    proxy_jump: str | None = None
    proxy_command: str | None = None

    def first(self, field: str, value: Any) -> None:
        if field in ("proxy_jump", "proxy_command"):  # OpenSSH: whichever of the two comes first
            if self.proxy_jump is None and self.proxy_command is None:
                setattr(self, field, value)
        elif getattr(self, field) is None:
            setattr(self, field, value)


def parse_ssh_args(text: str, fail: Any, out: _SshArgs | None = None) -> _SshArgs:
    """The options of an ssh command line that decide where and as whom it logs in.

    `fail(message)` returns the exception to raise for an option the tool cannot honour."""
    out = out or _SshArgs()
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise fail(f"cannot split {text!r}: {e}") from None
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("-") or len(word) < 2:
            raise fail(f"unexpected {word!r}: only ssh options are allowed here")
        flag, rest = word[1], word[2:]
        if flag in "oJpliF" and not rest:
            if i + 1 >= len(words):
                raise fail(f"{word} needs a value")
            i += 1
            rest = words[i]
        if flag == "o":
            _option(rest, out, fail)
        elif flag in FLAG_OPTIONS:
            _setting(FLAG_OPTIONS[flag], rest, out, fail)
        elif all(c in NEUTRAL_FLAGS for c in word[1:]):
            pass
        else:
            raise fail(f"ssh option {word!r} is not supported (supported: -o ProxyCommand/ProxyJump/Port/User/IdentityFile, -J, -p, -l, -i)")
        i += 1
    return out


FLAG_OPTIONS = {"J": "proxyjump", "p": "port", "l": "user", "i": "identityfile"}  # ssh's flags for its -o options


def _setting(key: str, value: str, out: _SshArgs, fail: Any) -> None:
    """One connection setting, from `-o Key=Value` or the flag that means the same."""
    if key == "proxycommand":
        out.first("proxy_command", None if value.lower() == "none" else value)
    elif key == "proxyjump":
        out.first("proxy_jump", None if value.lower() == "none" else value)
    elif key == "port":
        out.first("port", _int_port(value, fail))
    elif key == "user":
        out.first("user", value)
    else:
        out.first("key_file", value)


def _int_port(text: str, fail: Any) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise fail(f"{text!r} is not a port number")
    return int(text)


def _option(text: str, out: _SshArgs, fail: Any) -> None:
    m = re.match(r"^\s*([A-Za-z][A-Za-z0-9]*)\s*(?:=\s*|\s+)(.*?)\s*$", text)
    if not m:
        raise fail(f"cannot read ssh option {text!r} (expected Key=Value)")
    key, value = m.group(1).lower(), m.group(2)
    if key in ("proxycommand", "proxyjump", "port", "user", "identityfile"):
        _setting(key, value, out, fail)
    elif key == "stricthostkeychecking" and value.lower() in ("yes", "true"):
        pass  # host keys are always checked strictly
    elif key == "stricthostkeychecking" or key == "userknownhostsfile":
        raise fail(f"ssh option {m.group(1)}={value} is refused: host keys are always checked (use --accept-new-host-keys to trust a new host once)")
    elif key in NEUTRAL_OPTIONS:
        pass
    else:
        raise fail(f"ssh option {m.group(1)}={value} is not supported (supported: ProxyCommand, ProxyJump, Port, User, IdentityFile)")


def proxy_jump_of(common_args: str) -> str | None:
    """The ProxyJump target in ssh arguments (`-J x` or `-o ProxyJump=x`), None when there is none or they cannot be read."""
    try:
        return parse_ssh_args(common_args, ValueError).proxy_jump
    except ValueError:
        return None


def connection_of(host: Host) -> Connection:
    """The host's connection settings; raises InventoryError naming the var (and its position)."""
    where = _Where(host)
    got = _get(host, "ansible_connection")
    kind = "ssh"
    if got is not None:
        kind = SSH_KINDS.get(str(got[1]), "")
        if not kind:
            raise where.error(got[0], f"connection type {got[1]!r} is not supported (ssh, paramiko or local)")
    args = _SshArgs()
    for var in ARGS_VARS:
        if host.vars.get(var):
            parse_ssh_args(_text(where, var, host.vars[var]), lambda m, var=var: where.error(var, m), args)
    got = _get(host, "ansible_host")
    address = _text(where, got[0], got[1]) if got else host.name
    got = _get(host, "ansible_port")
    port = _port(where, *got) if got else args.port
    got = _get(host, "ansible_user")
    user = _text(where, *got) if got else args.user
    got = _get(host, "ansible_ssh_private_key_file")
    key = _text(where, *got) if got else args.key_file
    if key is not None:
        path = Path(key).expanduser()
        key = str(path if path.is_absolute() else host.inventory_dir / path)
    got = _get(host, "ansible_password")
    password = _text(where, *got) if got else None
    jump, command = args.proxy_jump, args.proxy_command
    if kind == "local" and (jump or command):
        raise where.error("ansible_connection", "ansible_connection local cannot use a ProxyJump or ProxyCommand")
    return Connection(kind, address, port, user, key, password, jump, command, _become(host, where))


def _become(host: Host, where: _Where) -> Become | None:
    if not _truthy(host.vars.get("ansible_become", False)):
        return None
    method = str(host.vars.get("ansible_become_method", "sudo"))
    if method not in BECOME_METHODS:
        raise where.error("ansible_become_method", f"become method {method!r} is not supported (sudo)")
    got = _get(host, "ansible_become_password")
    user = _text(where, "ansible_become_user", host.vars["ansible_become_user"]) if "ansible_become_user" in host.vars else "root"
    return Become(user, method, _text(where, *got) if got else None)


def _hop_names(spec: str) -> list[str]:
    """The host of each `[user@]host[:port]` hop of a ProxyJump list."""
    names = []
    for hop in spec.split(","):
        hostport = hop.strip().removeprefix("ssh://").rpartition("@")[2]
        names.append(hostport[1:].partition("]")[0] if hostport.startswith("[") else hostport.partition(":")[0])
    return names


def check_hosts(inv: Inventory, builder: Builder) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """Every host's connection settings (errors), and key files not there yet (warnings)."""
    problems: list[Diagnostic] = []
    warnings: list[Diagnostic] = []
    for host in inv.hosts.values():
        where = _Where(host)
        try:
            c = host.settings
        except InventoryError as e:
            problems += e.diagnostics
            continue
        if c.proxy_jump and set(_hop_names(c.proxy_jump)) & {host.name, c.address}:
            var = next((v for v in ARGS_VARS if v in host.vars), ARGS_VARS[0])
            problems += where.error(var, "ProxyJump names the host itself").diagnostics
        if c.key_file and not Path(c.key_file).is_file():
            var = next((v for v in ALIASES["ansible_ssh_private_key_file"] if v in host.vars), None)
            if var:  # a key that is not there yet may be made before the run (a lab's key)
                shown = host.vars[var]
                warnings += where.error(var, f"key file {shown!r} does not exist (resolved to {c.key_file})").diagnostics
    return problems, warnings
