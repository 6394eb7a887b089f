"""What a play knows about one host's files, read in as few round trips as possible.

Before a play, every task says what it will look at (`Needs`): paths to stat, files to
hash or read, read-only commands to capture. One shell script on the host answers all
of it at once, so a play with nothing to do costs one round trip. Later lookups that
missed the batch go to the host one by one.

A task that changes the host hands back the paths it touched: in a real run they are
forgotten (and re-read when asked for again); in --check they are overlaid with the
state the change would have produced, so later tasks see the host as it would be.
"""

from __future__ import annotations

import base64
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
    sha256: str | None = None  # regular files that were asked to be hashed


@dataclass
class Needs:
    stat: set[str] = field(default_factory=set)  # stat + sha256 of regular files
    read: set[str] = field(default_factory=set)  # whole small files
    capture: set[str] = field(default_factory=set)  # read-only shell commands

    def update(self, other: "Needs") -> None:
        self.stat |= other.stat
        self.read |= other.read
        self.capture |= other.capture



def _probe_script(stat: list[str], read: list[str], capture: list[str]) -> str:
    """One POSIX sh script answering everything; each answer is a line starting with a tag."""
    q = shlex.quote
    lines = ["exec 2>/dev/null"]
    if stat:
        lines.append("set -- " + " ".join(q(p) for p in stat))
        lines.append("stat -L -c 'S %a %u %g %U %G' -- \"$@\"")  # one line per path that exists
        # kind flags; regular files are appended to "$@" (the loop walks the original list)
        lines.append('for p do if [ -f "$p" ]; then echo K f; set -- "$@" "$p"; elif [ -d "$p" ]; then echo K d; '
                     'elif [ -e "$p" ]; then echo K o; else echo K -; fi; done')
        lines.append(f"shift {len(stat)}")
        # sha256sum escapes odd names with a leading backslash; the hash is the first word
        lines.append('[ $# -gt 0 ] && sha256sum -- "$@" | sed \'s/^\\\\//; s/ .*//; s/^/H /\'')
    for path in read:
        lines.append(f"if [ -f {q(path)} ]; then printf 'R '; base64 -w0 < {q(path)}; echo; else echo R -; fi")
    for cmd in capture:
        lines.append(f"o=$( ( {cmd} ) 2>&1 ); printf 'C %d ' $?; printf %s \"$o\" | base64 -w0; echo")
    return "\n".join(lines) + "\n"


def _parse(stat: list[str], read: list[str], capture: list[str], text: str) -> tuple[dict, dict, dict]:
    tagged: dict[str, list[str]] = {"K": [], "S": [], "H": [], "R": [], "C": []}
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
        if tag in tagged:
            tagged[tag].append(rest)
    kinds = tagged["K"]
    if len(kinds) != len(stat):
        raise ProbeError(f"expected {len(stat)} path answers, got {len(kinds)}")
    existing = [p for p, k in zip(stat, kinds) if k != "-"]
    files = [p for p, k in zip(stat, kinds) if k == "f"]
    if len(tagged["S"]) != len(existing) or len(tagged["R"]) != len(read) or len(tagged["C"]) != len(capture):
        raise ProbeError("the host's answers do not line up (a path changed while it was read?)")
    hashes = [h.strip() for h in tagged["H"]]
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
    reads = {p: (None if r == "-" else base64.b64decode(r)) for p, r in zip(read, tagged["R"])}
    caps = {}
    for cmd, raw in zip(capture, tagged["C"]):
        rc, _, b64 = raw.partition(" ")
        caps[cmd] = Result(int(rc), base64.b64decode(b64).decode(errors="replace"), "")
    return stats, reads, caps


class HostState:
    """A cache of the host's state for one play, filled in one batch and kept honest."""

    def __init__(self, conn: Connector):
        self.conn = conn
        self._stat: dict[str, PathState | None] = {}
        self._read: dict[str, bytes | None] = {}
        self._capture: dict[str, Result] = {}
        self.round_trips = 0

    def prefetch(self, needs: Needs) -> None:
        stat = sorted(needs.stat - self._stat.keys())
        read = sorted(needs.read - self._read.keys())
        capture = sorted(needs.capture - self._capture.keys())
        if not (stat or read or capture):
            return
        result = self.conn.run(_probe_script(stat, read, capture))
        self.round_trips += 1
        stats, reads, caps = _parse(stat, read, capture, result.stdout)
        self._stat.update(stats)
        self._read.update(reads)
        self._capture.update(caps)

    def stat(self, path: str) -> PathState | None:
        if path not in self._stat:
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
            self._read.pop(p, None)
        self._capture.clear()

    def overlay(self, effects: dict[str, "PathState | None"], contents: dict[str, bytes | None]) -> None:
        """--check: record the state a change would have left, without touching the host."""
        self._stat.update(effects)
        self._read.update(contents)
