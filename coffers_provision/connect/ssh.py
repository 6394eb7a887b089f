"""The `ssh` connector (paramiko): one connection per host, reused for every command and file.

Commands run as `/bin/sh -c LINE` through an exec channel; files move over one SFTP
session per connection. Where to connect comes from the inventory first and
`~/.ssh/config` second (HostName, Port, User, IdentityFile, ProxyJump), as a command
line overrides the config file. A ProxyJump hop is itself an SSHConnector whose
transport carries a `direct-tcpip` channel to the next hop.
"""

from __future__ import annotations

import getpass
import posixpath
import secrets
import select
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import paramiko

from .base import (
    Command,
    CommandTimeout,
    ConnectError,
    Connector,
    FileStat,
    HostKeyError,
    Result,
    timed_line,
    to_shell,
)
from .hostkeys import KnownHosts, host_entry_name, policy

_CHUNK = 1 << 16


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to log in. `label` is the host as the user named it (for messages)."""

    label: str
    address: str
    port: int = 22
    user: str = field(default_factory=getpass.getuser)
    key_files: tuple[str, ...] = ()
    password: str | None = field(default=None, repr=False)  # never printed
    proxy_command: str | None = None  # OpenSSH ProxyCommand: its stdin/stdout carry the connection

    @property
    def where(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"


def ssh_config_lookup(path: Path | None, alias: str) -> dict:
    """`~/.ssh/config` settings for `alias` (empty when there is no config file)."""
    if path is None or not path.is_file():
        return {}
    try:
        return dict(paramiko.SSHConfig.from_path(str(path)).lookup(alias))
    except Exception as e:  # a config paramiko cannot read: say which file, keep going would hide it
        raise ConnectError(f"{path}: cannot read ssh config: {e}") from None


def proxy_command_line(target: SSHTarget) -> str:
    """The ProxyCommand with OpenSSH's tokens filled in: %h host, %p port, %r user, %n the name given, %% a '%'.

    paramiko splits it into an argv (no shell), so a value in it cannot run anything else."""
    tokens = {"h": target.address, "p": str(target.port), "r": target.user, "n": target.label, "%": "%"}
    out, i, text = [], 0, target.proxy_command or ""
    while i < len(text):
        if text[i] == "%" and i + 1 < len(text):
            if text[i + 1] not in tokens:
                raise ConnectError(f"{target.label}: ProxyCommand token %{text[i + 1]} is not supported (%h, %p, %r, %n, %%)")
            out.append(tokens[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_jump(spec: str) -> list[tuple[str | None, str, int | None]]:
    """`[user@]host[:port]` hops, comma-separated, optionally `ssh://`-prefixed."""
    hops = []
    for hop in spec.split(","):
        hop = hop.strip().removeprefix("ssh://")
        if not hop:
            raise ConnectError(f"empty hop in ProxyJump {spec!r}")
        user, _, hostport = hop.rpartition("@")
        host, port = hostport, None
        if hostport.startswith("["):  # [v6addr]:port
            host, _, rest = hostport[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
        elif hostport.count(":") == 1:
            host, p = hostport.split(":")
            if not p.isdigit():
                raise ConnectError(f"bad port {p!r} in ProxyJump {spec!r}")
            port = int(p)
        hops.append((user or None, host, port))
    return hops


class SSHConnector(Connector):
    def __init__(
        self,
        target: SSHTarget,
        known: KnownHosts,
        *,
        connect_timeout: float = 10.0,
        command_timeout: float | None = None,
        via: SSHConnector | None = None,
        on_close: Callable[[], None] | None = None,
    ):
        self.host = target.label
        self.target = target
        self.command_timeout = command_timeout
        self._sftp: paramiko.SFTPClient | None = None
        self._on_close = on_close
        self._client = _connect(target, known, connect_timeout, via)

    # -- commands --------------------------------------------------------------------
    def run(self, command: Command, *, timeout: float | None = None, stdin: bytes | None = None) -> Result:
        line = to_shell(command)
        timeout = self.command_timeout if timeout is None else timeout
        try:
            chan = self._transport().open_session(timeout=30)
            chan.exec_command(timed_line(line, timeout))
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            return _collect(chan, self.host, line, timeout)
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise ConnectError(f"{self.host} ({self.target.where}): connection lost: {e}") from None

    # -- files -----------------------------------------------------------------------
    def put(self, data: bytes, path: str, *, mode: int = 0o644) -> None:
        sftp = self.sftp()
        directory, base = posixpath.split(path)
        tmp = posixpath.join(directory, f".{base}.coffers-{secrets.token_hex(6)}")
        try:
            with sftp.open(tmp, "wx") as f:
                f.chmod(0o600)  # nobody reads it half-written; the final mode comes before the rename
                f.set_pipelined(True)
                f.write(data)
                f.flush()
                _fsync(sftp, f)
            sftp.chmod(tmp, mode)
            sftp.posix_rename(tmp, path)
        except BaseException:
            try:
                sftp.remove(tmp)
            except (OSError, paramiko.SSHException):
                pass
            raise

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        with self.sftp().open(path, "rb") as f:
            if length is None:
                f.prefetch()
            f.seek(offset)
            return f.read() if length is None else f.read(length)

    def stat(self, path: str) -> FileStat | None:
        try:
            st = self.sftp().stat(path)
        except FileNotFoundError:
            return None
        mode = st.st_mode or 0
        return FileStat(st.st_size or 0, mode & 0o7777, st.st_uid or 0, st.st_gid or 0, (mode & 0o170000) == 0o040000)

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = self._client.open_sftp()
            except (paramiko.SSHException, EOFError, OSError) as e:
                raise ConnectError(f"{self.host} ({self.target.where}): cannot start SFTP: {e}") from None
        return self._sftp

    # -- plumbing --------------------------------------------------------------------
    def open_channel(self, address: str, port: int, timeout: float) -> paramiko.Channel:
        """A direct-tcpip channel from this host to `address:port` (a ProxyJump hop, or a
        server's port bound to the host's loopback). OSError when the host cannot connect
        there; ConnectError when this SSH connection itself is gone."""
        transport = self._transport()
        try:
            return transport.open_channel("direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=timeout)
        except paramiko.ChannelException as e:  # the host answered: nothing listens there
            raise ConnectionRefusedError(f"{self.host}: cannot connect to {address}:{port} ({e.text or e.code})") from None
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise ConnectError(f"{self.host}: cannot open a channel to {address}:{port}: {e}") from None

    def _transport(self) -> paramiko.Transport:
        t = self._client.get_transport()
        if t is None or not t.is_active():
            raise ConnectError(f"{self.host} ({self.target.where}): connection closed")
        return t

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        self._client.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


def _connect(target: SSHTarget, known: KnownHosts, timeout: float, via: SSHConnector | None) -> paramiko.SSHClient:
    """Log in, mapping every way it can fail to ConnectError (never echoing the password)."""
    name = host_entry_name(target.address, target.port)
    client = paramiko.SSHClient()
    for key, _ in known.lookup(name):  # lets paramiko ask the host for a key type we know
        client.get_host_keys().add(name, key.get_name(), key)
    client.set_missing_host_key_policy(policy(known, target.label))
    where = f"{target.label} ({target.where}{' via ' + via.host if via else ''})"
    start = time.monotonic()
    try:
        if via:
            sock = via.open_channel(target.address, target.port, timeout)
        elif target.proxy_command:
            sock = paramiko.ProxyCommand(proxy_command_line(target))
        else:
            sock = _tcp(target.address, target.port, timeout)
        client.connect(
            target.address,
            port=target.port,
            username=target.user,
            password=target.password,
            key_filename=list(target.key_files) or None,
            look_for_keys=not target.key_files,
            allow_agent=True,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            sock=sock,
        )
    except HostKeyError:
        client.close()
        raise
    except paramiko.BadHostKeyException as e:
        client.close()
        try:
            known.check(target.label, name, e.key)
        except HostKeyError as he:
            raise he from None
        raise HostKeyError(f"{where}: host key does not match known_hosts") from None
    except paramiko.AuthenticationException as e:
        client.close()
        raise ConnectError(f"{where}: authentication failed ({_plain(e)})") from None
    except (socket.timeout, TimeoutError):
        client.close()
        raise ConnectError(f"{where}: timed out after {timeout:g}s") from None
    except (paramiko.SSHException, EOFError, OSError) as e:
        client.close()
        if time.monotonic() - start >= timeout * 0.9:  # paramiko reports a banner timeout oddly
            raise ConnectError(f"{where}: timed out after {timeout:g}s waiting for the SSH server ({_plain(e)})") from None
        raise ConnectError(f"{where}: {_plain(e)}") from None
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(30)
    return client


def _tcp(address: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((address, port), timeout=timeout)
    # Small request/response packets: without this, delayed ACKs add ~40 ms to each command.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _plain(e: BaseException) -> str:
    if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError):
        return "connection refused" if all(getattr(x, "errno", None) == 111 for x in e.errors.values()) else str(e)
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    return str(e) or type(e).__name__


def _collect(chan: paramiko.Channel, host: str, line: str, timeout: float | None) -> Result:
    """Read stdout and stderr until the command exits, or raise CommandTimeout."""
    out: list[bytes] = []
    err: list[bytes] = []
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            while chan.recv_ready():
                out.append(chan.recv(_CHUNK))
            while chan.recv_stderr_ready():
                err.append(chan.recv_stderr(_CHUNK))
            if chan.exit_status_ready() and chan.eof_received and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            if chan.closed and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if wait <= 0:
                raise CommandTimeout(f"{host}: command timed out after {timeout:g}s: {line[:200]}")
            select.select([chan], [], [], wait)
        rc = chan.recv_exit_status() if chan.exit_status_ready() else -1
    finally:
        chan.close()
    return Result(rc, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace"))


def _fsync(sftp: paramiko.SFTPClient, f: paramiko.SFTPFile) -> None:
    """fsync through OpenSSH's `fsync@openssh.com` SFTP extension (paramiko has no call for it)."""
    from paramiko.sftp import CMD_EXTENDED

    try:
        sftp._request(CMD_EXTENDED, "fsync@openssh.com", f.handle)
    except OSError:
        pass  # a server without the extension: the rename is still atomic, only not forced to disk yet
