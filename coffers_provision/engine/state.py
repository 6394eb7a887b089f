"""What a play knows about one host's files, read in as few round trips as possible.

Before a play, every task says what it will look at (`Needs`): paths to stat, files whose
content it compares (hashed on the host), small files to read, read-only commands to
capture. Only the files a task compares are hashed: a unit that merely needs the model to
exist must not make every apply read a 400 GB model. One shell script on the host answers all
of it at once, so a play with nothing to do costs one round trip. Later lookups that
missed the batch go to the host one by one.

A task that changes the host hands back the paths it touched: in a real run they are
forgotten (and re-read when asked for again); in --check they are overlaid with the
state the change would have produced, so later tasks see the host as it would be.
"""

from __future__ import annotations

import base64
import secrets
import shlex
from dataclasses import dataclass, field
from typing import Iterable

from ..connect.base import Connector, Result
from ..errors import ProbeError


@dataclass(frozen=True)
class PathState:
    kind: str  # "file", "dir" or "other"
    mode: int
    uid: int
    gid: int
    user: str
    group: str
    sha256: str | None = None  # regular files that were asked to be hashed (Needs.hash)


@dataclass
class Needs:
    stat: set[str] = field(default_factory=set)  # stat only
    hash: set[str] = field(default_factory=set)  # stat + sha256 of regular files (content compared)
    read: set[str] = field(default_factory=set)  # whole small files
    capture: set[str] = field(default_factory=set)  # read-only shell commands

    def update(self, other: "Needs") -> None:
        self.stat |= other.stat
        self.hash |= other.hash
        self.read |= other.read
        self.capture |= other.capture



def _probe_script(stat: list[str], to_hash: int, read: list[str], capture: list[str], mark: str) -> str:
    """One POSIX sh script answering everything, with as few processes on the host as it
    takes (each one costs the host a fork and exec, and a fleet shares its controller's time):

    - `S` and `K` lines: stat and kind of each path, in order (`K -`: not there);
    - a `B` line: one base64 of every read and capture, each followed by `\\n<mark> <status>\\n`
      (`mark` is random per script, so no file or output can forge a boundary);
    - an `H` line, then sha256sum's own lines for the regular files among the first
      `to_hash` paths of `stat`, in order.
    """
    q = shlex.quote
    lines = ["exec 2>/dev/null"]
    if stat:
        lines.append("set -- " + " ".join(q(p) for p in stat))
        lines.append("stat -L -c 'S %a %u %g %U %G' -- \"$@\"")  # one line per path that exists
        # kind flags; regular files to hash are appended to "$@" (the loop walks the original list)
        lines.append(f'i=0; for p do i=$((i+1)); if [ -f "$p" ]; then echo K f; [ $i -le {to_hash} ] && set -- "$@" "$p"; '
                     'elif [ -d "$p" ]; then echo K d; elif [ -e "$p" ]; then echo K o; else echo K -; fi; done')
        lines.append(f"shift {len(stat)}")
    if read or capture:
        end = f"; printf '\\n%s %d\\n' {mark} $?"
        body = [f"if [ -f {q(path)} ]; then cat -- {q(path)}; else false; fi{end}" for path in read]
        body += [f"( {cmd}\n) 2>&1{end}" for cmd in capture]
        lines.append("printf 'B '; {\n" + "\n".join(body) + "\n} | base64 -w0; echo")
    if stat:
        # sha256sum escapes odd names with a leading backslash, so each file is one line
        lines.append('echo H; [ $# -gt 0 ] && sha256sum -- "$@"')
    return "\n".join(lines) + "\n"


def _framed(blob: str, mark: str, count: int) -> list[tuple[int, bytes]]:
    """The `B` section: (status, bytes) of each read and capture, in order."""
    parts = base64.b64decode(blob).split(f"\n{mark} ".encode())
    if len(parts) != count + 1:
        raise ProbeError(f"expected {count} read and command answers, got {len(parts) - 1}")
    out, body = [], parts[0]
    for part in parts[1:]:
        status, _, rest = part.partition(b"\n")
        out.append((int(status), body))
        body = rest
    return out


def _parse(stat: list[str], to_hash: int, read: list[str], capture: list[str], text: str, mark: str) -> tuple[dict, dict, dict]:
    tagged: dict[str, list[str]] = {"K": [], "S": [], "B": []}
    lines = text.splitlines()
    h_line = lines.index("H") if "H" in lines else len(lines)
    for line in lines[:h_line]:
        tag, _, rest = line.partition(" ")
        if tag in tagged:
            tagged[tag].append(rest)
    kinds = tagged["K"]
    if len(kinds) != len(stat):
        raise ProbeError(f"expected {len(stat)} path answers, got {len(kinds)}")
    existing = [p for p, k in zip(stat, kinds) if k != "-"]
    files = [p for p, k in zip(stat[:to_hash], kinds) if k == "f"]
    if len(tagged["S"]) != len(existing) or len(tagged["B"]) != (1 if read or capture else 0):
        raise ProbeError("the host's answers do not line up (a path changed while it was read?)")
    hashes = [h.removeprefix("\\").split(" ", 1)[0] for h in lines[h_line + 1:]]
    if len(hashes) != len(files):
        raise ProbeError("the host's hashes do not line up")
    sha = dict(zip(files, hashes))
    stats: dict[str, PathState | None] = {p: None for p in stat}
    for path, kind, raw in zip(existing, [k for k in kinds if k != "-"], tagged["S"]):
        mode, uid, gid, user, group = raw.split()
        stats[path] = PathState(
            kind={"f": "file", "d": "dir"}.get(kind, "other"),
            mode=int(mode, 8), uid=int(uid), gid=int(gid), user=user, group=group, sha256=sha.get(path),
        )
    answers = _framed(tagged["B"][0], mark, len(read) + len(capture)) if tagged["B"] else []
    reads = {p: (data if rc == 0 else None) for p, (rc, data) in zip(read, answers)}
    # as `$(...)` gives it: trailing newlines dropped
    caps = {cmd: Result(rc, data.rstrip(b"\n").decode(errors="replace"), "") for cmd, (rc, data) in zip(capture, answers[len(read):])}
    return stats, reads, caps


class HostState:
    """A cache of the host's state for one play, filled in one batch and kept honest."""

    def __init__(self, conn: Connector):
        self.conn = conn
        self._stat: dict[str, PathState | None] = {}
        self._hashed: set[str] = set()  # paths whose _stat entry carries a hash (when a file)
        self._read: dict[str, bytes | None] = {}
        self._capture: dict[str, Result] = {}
        self.round_trips = 0

    def prefetch(self, needs: Needs) -> None:
        hashed = sorted(needs.hash - self._hashed)
        stat = hashed + sorted(needs.stat - self._stat.keys() - needs.hash)
        read = sorted(needs.read - self._read.keys())
        capture = sorted(needs.capture - self._capture.keys())
        if not (stat or read or capture):
            return
        mark = secrets.token_hex(16)
        result = self.conn.run(_probe_script(stat, len(hashed), read, capture, mark))
        self.round_trips += 1
        stats, reads, caps = _parse(stat, len(hashed), read, capture, result.stdout, mark)
        self._stat.update(stats)
        self._hashed.update(hashed)
        self._read.update(reads)
        self._capture.update(caps)

    def stat(self, path: str, *, hashed: bool = False) -> PathState | None:
        """The path's state; with `hashed`, a regular file's sha256 too."""
        if hashed and path not in self._hashed:
            self.prefetch(Needs(hash={path}))
        elif path not in self._stat:
            self.prefetch(Needs(stat={path}))
        return self._stat[path]

    def read(self, path: str) -> bytes | None:
        if path not in self._read:
            self.prefetch(Needs(read={path}))
        return self._read[path]

    def capture(self, command: str) -> Result:
        if command not in self._capture:
            self.prefetch(Needs(capture={command}))
        return self._capture[command]

    # -- after a change ----------------------------------------------------
    def forget(self, paths: Iterable[str]) -> None:
        """A real change touched these paths (and may have changed what commands print)."""
        for p in paths:
            self._stat.pop(p, None)
            self._hashed.discard(p)
            self._read.pop(p, None)
        self._capture.clear()

    def overlay(self, effects: dict[str, "PathState | None"], contents: dict[str, bytes | None]) -> None:
        """--check: record the state a change would have left, without touching the host."""
        self._stat.update(effects)
        self._hashed.update(effects)  # the overlaid state carries the hash the change would leave
        self._read.update(contents)
