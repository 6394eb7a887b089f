"""Connecting to hosts: `open_connector(host, options)` and a per-run `ConnectionPool`.

`ssh` hosts get an SSHConnector (paramiko); `local` hosts a LocalConnector. Where an
SSH host lives is read from its inventory vars first, then from `~/.ssh/config`. A host
with `ansible_become` gets its login wrapped in a BecomeConnector (sudo on the host).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from .base import CommandTimeout, ConnectError, Connector, FileStat, HostKeyError, Result, to_shell
from .become import BecomeConnector, BecomeError
from .hostkeys import KnownHosts, default_known_hosts
from .local import LocalConnector
from .ssh import SSHConnector, SSHTarget, parse_jump, ssh_config_lookup

if TYPE_CHECKING:
    from ..inventory import Host

__all__ = [
    "BecomeConnector", "BecomeError", "CommandTimeout", "ConnectError", "Connector", "FileStat", "HostKeyError", "Result", "to_shell",
    "ConnectOptions", "ConnectionPool", "open_connector", "ssh_target",
]  # fmt: skip


def _home(path: str) -> Path:
    return Path(path).expanduser()


@dataclass
class ConnectOptions:
    """How a run connects. Paths default to the user's (~ resolved when the options are made)."""

    connect_timeout: float = 10.0
    command_timeout: float | None = None  # default for run() calls that give none
    accept_new_host_keys: bool = False
    known_hosts: Path = field(default_factory=default_known_hosts)  # the tool's own file
    user_known_hosts: Path | None = field(default_factory=lambda: _home("~/.ssh/known_hosts"))
    ssh_config: Path | None = field(default_factory=lambda: _home("~/.ssh/config"))
    inventory: Mapping[str, Host] = field(default_factory=dict)  # names a ProxyJump may use
    _known: KnownHosts | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def known(self) -> KnownHosts:
        """The known_hosts tables, loaded once per run and shared by its connections."""
        with self._lock:
            if self._known is None:
                self._known = KnownHosts(self.known_hosts, self.user_known_hosts, accept_new=self.accept_new_host_keys)
            return self._known


def ssh_target(host: Host, options: ConnectOptions) -> tuple[SSHTarget, str | None]:
    """The login for an inventory host, and its ProxyJump spec (None: direct)."""
    cfg = ssh_config_lookup(options.ssh_config, host.address)
    port = host.port or int(cfg.get("port", 22))
    keys = (host.key_file,) if host.key_file else tuple(str(_home(k)) for k in cfg.get("identityfile", ()))
    kw = {"user": host.user or cfg["user"]} if (host.user or cfg.get("user")) else {}
    settings = host.settings
    command = settings.proxy_command or (None if settings.proxy_jump else cfg.get("proxycommand"))
    target = SSHTarget(host.name, cfg.get("hostname", host.address), port, key_files=keys, password=settings.password,
                       proxy_command=None if command in (None, "none") else command, **kw)  # fmt: skip
    jump = None if target.proxy_command else (settings.proxy_jump or cfg.get("proxyjump"))
    return target, (None if jump in (None, "none") else jump)


def _hop_target(user: str | None, name: str, port: int | None, options: ConnectOptions) -> SSHTarget:
    """A ProxyJump hop: an inventory host by name, or an ssh_config alias / plain address."""
    if name in options.inventory:
        base, _ = ssh_target(options.inventory[name], options)
    else:
        cfg = ssh_config_lookup(options.ssh_config, name)
        keys = tuple(str(_home(k)) for k in cfg.get("identityfile", ()))
        kw = {"user": cfg["user"]} if cfg.get("user") else {}
        base = SSHTarget(name, cfg.get("hostname", name), int(cfg.get("port", 22)), key_files=keys, **kw)
    return SSHTarget(
        base.label, base.address, port or base.port, user or base.user, base.key_files, base.password, base.proxy_command
    )


def _open_ssh(target: SSHTarget, jump: str | None, options: ConnectOptions, jumps: _Jumps | None) -> SSHConnector:
    via = None
    owned: list[SSHConnector] = []
    for user, name, port in parse_jump(jump) if jump else ():
        hop = _hop_target(user, name, port, options)
        if jumps is not None:
            via = jumps.get(hop, via, options)
        else:
            via = SSHConnector(hop, options.known(), connect_timeout=options.connect_timeout, via=via)
            owned.append(via)

    def close_hops() -> None:
        for c in reversed(owned):
            c.close()

    try:
        return SSHConnector(
            target, options.known(), connect_timeout=options.connect_timeout,
            command_timeout=options.command_timeout, via=via, on_close=close_hops,
        )  # fmt: skip
    except BaseException:
        close_hops()
        raise


def open_connector(host: Host, options: ConnectOptions | None = None) -> Connector:
    """A live connection to `host`; raises ConnectError (HostKeyError) when it is unreachable,
    BecomeError when the host escalates and sudo refuses."""
    return _escalate(host, _login(host, options or ConnectOptions(), None))


def _login(host: Host, options: ConnectOptions, jumps: _Jumps | None) -> Connector:
    if host.connection == "local":
        return LocalConnector(host.name)
    if host.connection != "ssh":
        raise ConnectError(f"{host.name}: unsupported connection type {host.connection!r} (use ssh or local)")
    target, jump = ssh_target(host, options)
    return _open_ssh(target, jump, options, jumps)


def _escalate(host: Host, conn: Connector) -> Connector:
    """The login itself, or (ansible_become) the login through sudo, checked once now."""
    return conn if host.become is None else BecomeConnector.open(conn, host.become)


class _Jumps:
    """Jump-host connections shared by every host behind them in one run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple, SSHConnector] = {}

    def get(self, hop: SSHTarget, via: SSHConnector | None, options: ConnectOptions) -> SSHConnector:
        key = (hop.user, hop.address, hop.port, id(via))
        with self._lock:  # one login per jump host, even when many hosts ask at once
            if key not in self._open:
                self._open[key] = SSHConnector(hop, options.known(), connect_timeout=options.connect_timeout, via=via)
            return self._open[key]

    def close(self) -> None:
        with self._lock:
            for c in reversed(list(self._open.values())):
                c.close()
            self._open.clear()


class ConnectionPool:
    """The connections of one run: at most one per host (and per jump host), closed together."""

    def __init__(self, options: ConnectOptions | None = None):
        self.options = options or ConnectOptions()
        self._lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}
        self._conns: dict[str, Connector] = {}
        self._jumps = _Jumps()

    def get(self, host: Host) -> Connector:
        with self._lock:
            lock = self._host_locks.setdefault(host.name, threading.Lock())
        with lock:
            if host.name not in self._conns:
                self._conns[host.name] = _escalate(host, _login(host, self.options, self._jumps))
            return self._conns[host.name]

    def release(self, host: Host) -> None:
        """Close one host's connection early (its work is done)."""
        with self._lock:
            conn = self._conns.pop(host.name, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for c in conns:
            c.close()
        self._jumps.close()

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
