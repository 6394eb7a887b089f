"""Privilege escalation (`ansible_become`): any Connector, run through `sudo` on the host.

Real fleets log in as an ordinary user and escalate. `BecomeConnector` wraps the login
connection: every command becomes the argv `sudo ... -u USER -- /bin/sh -c LINE`; a file
is streamed on stdin into a fixed script that sudo runs with the path and mode as its
arguments (a temp file beside the target, fsync, chmod, rename: as atomic as a plain
put); stat and read are tried as the login user and go through sudo where it may not
look. No value ever becomes part of a shell string except as a quoted word.

The password is the first line of the command's stdin, never in a command line. Every
command passes `-k`, so sudo always reads that line and it never reaches the command.
Where sudo needs no password (NOPASSWD, or root) commands run with `-n` and nothing
extra on stdin. `open` checks sudo once per connection, so a wrong password is one
clear error before anything runs, not a hang.
"""

from __future__ import annotations

import base64
import errno
from typing import TYPE_CHECKING, Any

from ..errors import HostError
from .base import Command, CommandTimeout, Connector, FileStat, Result, timed_line, to_shell

if TYPE_CHECKING:
    from ..inventory.connection import Become

# Run by sudo as `sh -c PUT sh DEST MODE`, the content on stdin (after the password line).
PUT = r"""set -e
dest=$1 mode=$2
dir=$(dirname -- "$dest") base=$(basename -- "$dest")
tmp=$(mktemp -- "$dir/.$base.coffers-XXXXXXXXXX")
trap 'rm -f -- "$tmp"' EXIT
dd of="$tmp" bs=65536 conv=fsync status=none
chmod -- "$mode" "$tmp"
mv -f -T -- "$tmp" "$dest"
trap - EXIT
"""
# `sh -c STAT sh PATH`: size, raw mode (hex), uid, gid; 44 when the path does not exist.
STAT = '[ -e "$1" ] || exit 44; exec stat -L -c "%s %f %u %g" -- "$1"'
# `sh -c READ sh PATH OFFSET [LENGTH]`: the bytes, base64 (the channel carries text).
READ = r"""[ -e "$1" ] || exit 44
[ -d "$1" ] && { echo "$1: Is a directory" >&2; exit 21; }
dd if="$1" bs=65536 iflag=skip_bytes,count_bytes skip="$2" ${3:+count="$3"} status=none | base64 -w 0
"""
MISSING = 44


class BecomeError(HostError):
    """sudo refused: a wrong or missing become password, or no sudoers rule."""


class BecomeConnector(Connector):
    """`inner` with every command, write and privileged look run as `become.user` through sudo."""

    def __init__(self, inner: Connector, become: Become, *, needs_password: bool = True):
        self.host, self.inner, self.user = inner.host, inner, become.user
        self._password = become.password if needs_password else None
        flags = ["-k", "-S", "-p", ""] if self._password is not None else ["-n"]
        self._prefix = ["sudo", *flags, "-u", self.user, "--", "/bin/sh", "-c"]

    @classmethod
    def open(cls, inner: Connector, become: Become) -> BecomeConnector:
        """Check that sudo lets the login user become `become.user` (closing `inner` if not)."""
        try:
            return cls(inner, become, needs_password=_check(inner, become))
        except BaseException:
            inner.close()
            raise

    def _stdin(self, data: bytes | None) -> bytes | None:
        if self._password is None:
            return data
        return self._password.encode() + b"\n" + (data or b"")

    def run(self, command: Command, *, timeout: float | None = None, stdin: bytes | None = None) -> Result:
        # The host's `timeout` must run inside sudo: as the login user it may not signal sudo.
        timeout = self.inner.command_timeout if timeout is None else timeout
        line = to_shell(command)
        try:
            return self.inner.run([*self._prefix, timed_line(line, timeout)], timeout=timeout, stdin=self._stdin(stdin))
        except CommandTimeout:
            raise CommandTimeout(f"{self.host}: command timed out after {timeout:g}s: {line[:200]}") from None

    def _script(self, script: str, *args: str, stdin: bytes | None = None) -> Result:
        return self.inner.run([*self._prefix, script, "sh", *args], stdin=self._stdin(stdin))

    def put(self, data: bytes, path: str, *, mode: int = 0o644) -> None:
        r = self._script(PUT, path, f"{mode:o}", stdin=data)
        if not r.ok:
            raise OSError(errno.EIO, f"cannot write as {self.user}: {_last(r)}", path)

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        try:
            return self.inner.read(path, offset, length)
        except PermissionError:
            pass  # the login user may not look there; the become user may
        r = self._script(READ, path, str(offset), *(() if length is None else (str(length),)))
        if r.rc == MISSING:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if not r.ok:
            raise OSError(errno.EIO, f"cannot read as {self.user}: {_last(r)}", path)
        return base64.b64decode(r.stdout)

    def stat(self, path: str) -> FileStat | None:
        try:
            return self.inner.stat(path)
        except PermissionError:
            pass
        r = self._script(STAT, path)
        if r.rc == MISSING:
            return None
        if not r.ok:
            raise OSError(errno.EIO, f"cannot stat as {self.user}: {_last(r)}", path)
        size, raw, uid, gid = r.stdout.split()
        mode = int(raw, 16)
        return FileStat(int(size), mode & 0o7777, int(uid), int(gid), (mode & 0o170000) == 0o040000)

    def open_channel(self, address: str, port: int, timeout: float) -> Any:
        return self.inner.open_channel(address, port, timeout)

    def close(self) -> None:
        self.inner.close()


def _check(inner: Connector, become: Become) -> bool:
    """Whether sudo asks for a password; BecomeError when it will not let us in at all.

    The probe runs exactly what every command will (`/bin/sh -c`), so a rule that allows
    the probe allows the commands, and asks for the password the same way."""
    probe = ["/bin/sh", "-c", "true"]
    r = inner.run(["sudo", "-n", "-k", "-u", become.user, "--", *probe])
    if r.ok:
        return False
    if r.rc == 127 or ("sudo" in r.stderr and "not found" in r.stderr):
        raise BecomeError(f"{inner.host}: become: sudo is not installed on the host")
    if "password is required" not in r.stderr:
        raise BecomeError(f"{inner.host}: become: sudo -u {become.user} refused: {_last(r)}")
    if not become.password:
        raise BecomeError(f"{inner.host}: become: sudo asks for a password; set ansible_become_password")
    if "\n" in become.password or "\r" in become.password:
        raise BecomeError(f"{inner.host}: become password contains a line break; sudo reads one line")
    r = inner.run(["sudo", "-k", "-S", "-p", "", "-u", become.user, "--", *probe], stdin=become.password.encode() + b"\n")
    if r.ok:
        return True
    if "incorrect password" in r.stderr or "try again" in r.stderr or "no password was provided" in r.stderr:
        raise BecomeError(f"{inner.host}: become password rejected by sudo (become user {become.user})")
    raise BecomeError(f"{inner.host}: become: sudo -u {become.user} refused: {_last(r)}")


def _last(r: Result) -> str:
    """sudo's or the script's last line of complaint (never the password: it is only on stdin)."""
    lines = [line.strip() for line in (r.stderr or r.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {r.rc}"
