"""The `local` connector: this machine, through subprocess and the filesystem."""

from __future__ import annotations

import os
import socket
import stat as statmod
import subprocess
import tempfile

from typing import Any

from .base import CommandTimeout, Command, Connector, FileStat, Result, to_shell


class LocalConnector(Connector):
    def __init__(self, host: str = "localhost"):
        self.host = host

    def run(self, command: Command, *, timeout: float | None = None, stdin: bytes | None = None) -> Result:
        try:
            proc = subprocess.run(
                ["/bin/sh", "-c", to_shell(command)],
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"{self.host}: command timed out after {timeout}s: {to_shell(command)}") from None
        return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))

    def put(self, data: bytes, path: str, *, mode: int = 0o644) -> None:
        directory = os.path.dirname(path) or "."
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.coffers-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)  # make the rename itself durable
        finally:
            os.close(dfd)

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read() if length is None else f.read(length)

    def stat(self, path: str) -> FileStat | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return FileStat(st.st_size, statmod.S_IMODE(st.st_mode), st.st_uid, st.st_gid, statmod.S_ISDIR(st.st_mode))

    def open_channel(self, address: str, port: int, timeout: float) -> Any:
        return socket.create_connection((address, port), timeout=timeout)
