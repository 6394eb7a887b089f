"""Strict host-key checking.

A host's key must already be known, either in OpenSSH's `~/.ssh/known_hosts`
(plain, hashed and `[host]:port` entries) or in the tool's own known_hosts file
(`~/.config/coffers-provision/known_hosts`, or `$COFFERS_KNOWN_HOSTS`, or `--known-hosts`).
An unknown key is refused unless the run trusts new keys on first use
(`--accept-new-host-keys`), which records it in the tool's file. A changed key is
always refused.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from pathlib import Path

import paramiko

from .base import HostKeyError

_WRITE_LOCK = threading.Lock()  # TOFU appends from many fan-out threads


def default_known_hosts() -> Path:
    """The tool's own known_hosts file."""
    if env := os.environ.get("COFFERS_KNOWN_HOSTS"):
        return Path(env).expanduser()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "coffers-provision" / "known_hosts"


def fingerprint(key: paramiko.PKey) -> str:
    """The SHA256 fingerprint OpenSSH prints: `SHA256:` + unpadded base64 of the key blob's hash."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def host_entry_name(address: str, port: int) -> str:
    """How known_hosts names a host: `address` on port 22, `[address]:port` otherwise."""
    return address if port == 22 else f"[{address}]:{port}"


class KnownHosts:
    """The two known_hosts sources of a run, loaded once and shared by every connection."""

    def __init__(self, tool_file: Path, user_file: Path | None, *, accept_new: bool = False):
        self.tool_file, self.user_file, self.accept_new = tool_file, user_file, accept_new
        self._user = _load(user_file)
        self._tool = _load(tool_file)

    def lookup(self, name: str) -> list[tuple[paramiko.PKey, Path]]:
        found = []
        for keys, path in ((self._user, self.user_file), (self._tool, self.tool_file)):
            entry = keys.lookup(name)
            if entry:
                found += [(entry[t], path) for t in entry.keys()]
        return found

    def check(self, label: str, name: str, key: paramiko.PKey) -> None:
        """Accept `key` for `name` or raise HostKeyError. `label` is the host as the user knows it."""
        known = self.lookup(name)
        if any(k.get_name() == key.get_name() and k == key for k, _ in known):
            return
        same_type = [(k, p) for k, p in known if k.get_name() == key.get_name()]
        if same_type:
            old, path = same_type[0]
            raise HostKeyError(
                f"{label}: HOST KEY CHANGED for {name}: it now presents {key.get_name()} {fingerprint(key)}, "
                f"but {path} has {fingerprint(old)}. Someone may be intercepting the connection, or the host "
                f"was reinstalled. Refusing to connect. If the change is expected, remove the old entry from {path}."
            )
        if not self.accept_new:
            others = f" (known only with other key types: {', '.join(sorted({k.get_name() for k, _ in known}))})" if known else ""
            raise HostKeyError(
                f"{label}: unknown host key for {name}{others}: {key.get_name()} {fingerprint(key)}. "
                f"Refusing to connect. Verify the fingerprint, then add it to {self.tool_file} "
                f"or run with --accept-new-host-keys to trust it on first use."
            )
        self._remember(name, key)

    def _remember(self, name: str, key: paramiko.PKey) -> None:
        with _WRITE_LOCK:
            self._tool.add(name, key.get_name(), key)
            self.tool_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.tool_file, "a") as f:
                f.write(f"{name} {key.get_name()} {key.get_base64()}\n")


class _Policy(paramiko.MissingHostKeyPolicy):
    """Hands every key paramiko does not find in its own (empty) tables to KnownHosts."""

    def __init__(self, known: KnownHosts, label: str):
        self.known, self.label = known, label

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.known.check(self.label, hostname, key)


def policy(known: KnownHosts, label: str) -> paramiko.MissingHostKeyPolicy:
    return _Policy(known, label)


def _load(path: Path | None) -> paramiko.HostKeys:
    keys = paramiko.HostKeys()
    if path is not None and path.is_file():
        keys.load(str(path))
    return keys
