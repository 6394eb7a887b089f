"""The connector interface: run a command, put a file atomically, read a file or a byte range.

Every task, fact and bench run talks to a host through one of these. `ConnectError`
means the host is *unreachable* (connect, auth or host key failed); a command that
runs and exits non-zero is a normal `Result`, which callers turn into *failed*.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import HostError, UnreachableError


class ConnectError(UnreachableError):
    """The host could not be reached or authenticated: it is unreachable."""


class HostKeyError(ConnectError):
    """The host's key is unknown or changed; the message names host and fingerprint."""


class CommandTimeout(HostError):
    """A command ran longer than its timeout; the host is reachable but the task failed."""


@dataclass(frozen=True)
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


@dataclass(frozen=True)
class FileStat:
    size: int
    mode: int  # permission bits only
    uid: int
    gid: int
    is_dir: bool


Command = str | Sequence[str]


def to_shell(command: Command) -> str:
    """A shell command line: a sequence is quoted word by word; a string is taken as written."""
    return command if isinstance(command, str) else shlex.join(command)


def timed_line(line: str, timeout: float | None) -> str:
    """What the host runs: `/bin/sh -c LINE`, so LINE means the same on every host.

    With a timeout, coreutils `timeout` (when the host has it) kills the command's whole
    process group a second after we stop waiting, so nothing keeps running behind us.
    """
    sh = f"/bin/sh -c {shlex.quote(line)}"
    if timeout is None:
        return f"exec {sh}"
    limit = f"{timeout + 1:.3f}"
    return f"if command -v timeout >/dev/null 2>&1; then exec timeout -k 5 {limit} {sh}; else exec {sh}; fi"


class Connector(ABC):
    """One live connection to one host, reused for every command and transfer of a run."""

    host: str
    command_timeout: float | None = None  # for run() calls that give none

    @abstractmethod
    def run(self, command: Command, *, timeout: float | None = None, stdin: bytes | None = None) -> Result:
        """Run through `sh -c` on the host. Pass a sequence to have every word quoted."""

    @abstractmethod
    def put(self, data: bytes, path: str, *, mode: int = 0o644) -> None:
        """Write `path` atomically: a temp file in the same directory, fsync, chmod, rename."""

    @abstractmethod
    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read a whole file, or `length` bytes from `offset`. Raises FileNotFoundError."""

    @abstractmethod
    def stat(self, path: str) -> FileStat | None:
        """Stat `path`; None when it does not exist."""

    def open_channel(self, address: str, port: int, timeout: float) -> Any:
        """A byte stream from the host to `address:port` (a socket-like object with sendall,
        makefile, settimeout and close); OSError when nothing listens there."""
        raise HostError(f"{self.host}: this connection cannot open streams to {address}:{port}")

    def close(self) -> None:  # noqa: B027 - optional for connectors with nothing to release
        pass

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
