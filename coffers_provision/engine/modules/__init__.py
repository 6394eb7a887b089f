"""Task modules. Each computes the desired state against the host's state and returns an
`Outcome`: the steps with their status, a diff, and the actions that would make the
change. The runner performs the actions, except in --check: that is the only place check
mode exists, so what --check says is exactly what a real run would do.

A module is a pair of functions:
  needs(args, ctx)    -> Needs     what to read from the host, batched before the play
  prepare(args, ctx)  -> Outcome   compare and decide; reads only, never writes
"""

from __future__ import annotations

import hashlib
import os
import shlex
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Callable, Mapping

from ...connect.base import Command, Connector, Result
from ...errors import HostError
from ..result import Status, Step, combine
from ..role import Role
from ..state import HostState, Needs, PathState

NAMES = ("file", "copy", "template", "command", "build", "systemd_unit", "sysctl")
SYSTEMD_BOOTED = "test -d /run/systemd/system"  # sd_booted(3): systemd is the service manager
NOT_BOOTED = "systemd is not PID 1 on this host"


class TaskFailed(HostError):
    """The task cannot reach its desired state; the message says why."""


@dataclass
class Context:
    host: str
    conn: Connector
    state: HostState
    vars: Mapping[str, Any]
    role: Role
    want_diff: bool = False

    @property
    def secrets(self) -> list[str]:
        """Values never shown in a diff: the play's `no_log_values` (tokens, keys, passwords)."""
        values = self.vars.get("no_log_values") or []
        return sorted({str(v) for v in values if len(str(v)) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self.secrets:
            text = text.replace(value, "********")
        return text

    @property
    def systemd_booted(self) -> bool:
        return self.state.capture(SYSTEMD_BOOTED).ok

    def run(self, command: Command, *, timeout: float | None = None, what: str = "") -> Result:
        """Run a command that must succeed (a failure raises TaskFailed with its stderr)."""
        result = self.conn.run(command, timeout=timeout)
        if not result.ok:
            shown = command if isinstance(command, str) else shlex.join(command)
            detail = (result.stderr.strip() or result.stdout.strip())[-2000:]
            raise TaskFailed(f"{what or shown} exited {result.rc}: {detail}")
        return result


@dataclass
class Outcome:
    steps: list[Step]
    actions: list[Callable[[], None]] = field(default_factory=list)
    diff: str = ""
    effects: dict[str, PathState | None] = field(default_factory=dict)  # path -> state after the change
    contents: dict[str, bytes | None] = field(default_factory=dict)  # small files' content after it
    notify: bool | None = None  # None: notify handlers when the status is changed

    @property
    def status(self) -> Status:
        return combine(self.steps)

    @property
    def notifies(self) -> bool:
        return self.status is Status.CHANGED if self.notify is None else self.notify

    def add(self, other: "Outcome") -> "Outcome":
        self.steps += other.steps
        self.actions += other.actions
        self.diff += other.diff
        self.effects.update(other.effects)
        self.contents.update(other.contents)
        return self


def skipped(name: str, reason: str) -> Outcome:
    return Outcome([Step(name, Status.SKIPPED, reason)])


@dataclass(frozen=True)
class Module:
    needs: Callable[[dict, Context], Needs]
    prepare: Callable[[dict, Context], Outcome]


def get(name: str) -> Module:
    mod = import_module(f".{name}", __name__)
    return Module(mod.needs, mod.prepare)


# -- shared helpers for modules that write files ---------------------------------


def parse_mode(mode: str | int | None) -> int | None:
    if mode is None:
        return None
    if isinstance(mode, int):
        return mode
    try:
        value = int(mode, 8)
    except ValueError:
        raise TaskFailed(f"mode {mode!r} is not octal (write it quoted, e.g. \"0755\")") from None
    if not 0 <= value <= 0o7777:
        raise TaskFailed(f"mode {mode!r} is out of range")
    return value


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str:
    """The sha256 of a file on the machine running apply, read in blocks (a model is GiBs)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _owner_matches(want: str | None, name: str, ident: int) -> bool:
    return want is None or (str(ident) == want if want.isdigit() else name == want)


def sweep(ctx: Context, path: str) -> None:
    """Remove temp files an interrupted earlier write left beside `path` (`.NAME.coffers-*`)."""
    directory, base = os.path.split(path)
    ctx.conn.run(f"cd -- {shlex.quote(directory or '/')} && rm -f -- {shlex.quote(f'.{base}.coffers-')}*")


def write_file(
    ctx: Context,
    path: str,
    data: bytes,
    *,
    mode: int | None = None,
    owner: str | None = None,
    group: str | None = None,
    step: str | None = None,
    secret: bool = False,
    digest: str | None = None,
) -> Outcome:
    """Make `path` hold exactly `data` (and the mode and owner, when given).

    The content is compared by sha256 on the host; a write goes through Connector.put,
    which writes a temp file, fsyncs and renames, so the path is never half-written.
    """
    from ..diff import attr_diff, file_diff

    name = step or f"write {path}"
    st = ctx.state.stat(path, hashed=True)
    if st is not None and st.kind != "file":
        raise TaskFailed(f"{path} exists and is not a regular file ({st.kind})")
    want_mode = mode if mode is not None else (st.mode if st else 0o644)
    new_hash = digest or sha256(data)
    content = st is None or st.sha256 != new_hash
    chmod = st is not None and st.mode != want_mode
    chown = st is None and (owner or group) or (
        st is not None and not (_owner_matches(owner, st.user, st.uid) and _owner_matches(group, st.group, st.gid))
    )
    after = PathState(
        "file", want_mode,
        int(owner) if owner and owner.isdigit() else (st.uid if st else 0),
        int(group) if group and group.isdigit() else (st.gid if st else 0),
        owner or (st.user if st else "root"), group or (st.group if st else "root"), new_hash,
    )
    if not (content or chmod or chown):
        return Outcome([Step(name, Status.OK)])

    diff, what = "", []
    if content:
        what.append("create" if st is None else "content")
        if ctx.want_diff:
            if secret:
                diff += f"{path}: content changed (not shown: it holds secrets)\n"
            else:
                old = None if st is None else ctx.conn.read(path)
                diff += ctx.redact(file_diff(path, old, data))
    if chmod:
        what.append("mode")
        diff += attr_diff(path, "mode", f"{st.mode:04o}", f"{want_mode:04o}") if ctx.want_diff else ""
    if chown and st is not None:
        what.append("owner")
        diff += attr_diff(path, "owner", f"{st.user}:{st.group}", f"{owner or st.user}:{group or st.group}") if ctx.want_diff else ""
    spec = f"{owner or ''}:{group or ''}".rstrip(":") if (owner or group) else ""

    def action() -> None:
        if content:
            if spec:
                # set the owner on a temp file, then rename: never a moment with the wrong owner
                tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.coffers-tmp")
                ctx.conn.put(data, tmp, mode=want_mode)
                ctx.run(["chown", spec, "--", tmp])
                ctx.run(["mv", "-f", "--", tmp, path])
            else:
                ctx.conn.put(data, path, mode=want_mode)
            sweep(ctx, path)
            return
        if chmod:
            ctx.run(["chmod", f"{want_mode:04o}", "--", path])
        if chown:
            ctx.run(["chown", spec, "--", path])

    return Outcome(
        [Step(name, Status.CHANGED, ", ".join(what))],
        actions=[action],
        diff=diff,
        effects={path: after},
        contents={path: data},
    )
