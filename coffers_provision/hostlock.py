"""One controller at a time changes a host: a lock file in the host's state dir.

`<state_dir>/lock.json` names its holder (controller host, pid, start time, command).
Every change to it (take, take over, give back) runs on the host as one short script
under `flock` on `<state_dir>/lock.guard`, so two controllers never interleave: taking
writes the holder only when no lock is there (or, for a takeover, when the lock still
holds exactly the stale holder that was judged dead: compare and swap), through a temp
file and `mv` (the file is never half written). A lock is stale only when its holder is provably dead:
it ran on this very controller, in this very boot and pid namespace (same host name,
boot id and pid namespace, so its pid means the same process table as ours), and that
pid is gone or now belongs to a process that started at another time. Anything else (a
holder on another controller, in another container, or before a reboot) is never guessed
dead: the run is refused, naming it (docs/apply.md says how to clear it by hand).
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from .connect.base import Connector
from .errors import CoffersError, HostError
from .inventory import Host
from .schema import problems

T = TypeVar("T")

LOCK, GUARD = "lock.json", "lock.guard"
GUARD_WAIT_S = 30  # the guard is held only for the few milliseconds a script runs

# $1 state dir, $2 our holder, $3 the stale holder to replace ("" for none). Exit 1 with
# the current holder on stdout when the lock is someone else's.
_TAKE = r"""d=$1; mine=$2; stale=$3
mkdir -p -- "$d" && exec 9>>"$d/lock.guard" || exit 70
flock -w "$4" 9 || { echo "could not get $d/lock.guard within $4 s" >&2; exit 71; }
if [ -e "$d/lock.json" ]; then
  cur=$(cat -- "$d/lock.json")
  if [ -z "$stale" ] || [ "$cur" != "$stale" ]; then printf %s "$cur"; exit 1; fi
fi
printf %s "$mine" > "$d/.lock.json.tmp" && mv -f -- "$d/.lock.json.tmp" "$d/lock.json"
"""
# $1 state dir, $2 our holder: remove the lock only while it is still ours.
_GIVE = r"""d=$1; exec 9>>"$d/lock.guard" || exit 70
flock -w "$3" 9 || exit 71
[ "$(cat -- "$d/lock.json" 2>/dev/null)" = "$2" ] && rm -f -- "$d/lock.json"
exit 0
"""


class HostLocked(HostError):
    """Another controller holds the host's lock; the message names it."""


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _pid_ns() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Holder:
    controller: str
    pid: int
    started: str  # UTC, ISO 8601
    command: str
    boot_id: str = ""
    pid_ns: str = ""
    proc_start: int | None = None

    @classmethod
    def me(cls, command: str, pid: int | None = None) -> "Holder":
        """This run as the holder; `pid` names the process that holds it when that is not this
        one (an ansible-playbook whose short-lived workers take and give back the lock)."""
        pid = pid or os.getpid()
        return cls(socket.gethostname(), pid, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), command, _boot_id(), _pid_ns(),
                   _proc_start(pid))

    def text(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def describe(self) -> str:
        return f"`{self.command}` by pid {self.pid} on {self.controller}, since {self.started}"

    def dead(self) -> bool:
        """Provably dead: it ran in our process table (same host name, boot and pid
        namespace) and its pid is gone or is another process now."""
        here = (socket.gethostname(), _boot_id(), _pid_ns())
        if (self.controller, self.boot_id, self.pid_ns) != here or "" in here or self.proc_start is None:
            return False
        return _proc_start(self.pid) != self.proc_start


def parse_holder(text: str) -> Holder | None:
    """The holder a lock file names (schemas/host-lock.schema.json), None when it is not one."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if problems("host-lock", doc):
        return None
    return Holder(doc["controller"], doc["pid"], doc["started"], doc["command"], doc.get("boot_id", ""), doc.get("pid_ns", ""),
                  doc.get("proc_start"))


def _take(conn: Connector, state_dir: str, mine: Holder, stale: str = "") -> str | None:
    """Take the lock (replacing exactly `stale` when given); the holder's text when it is taken."""
    r = conn.run(["sh", "-c", _TAKE, "sh", state_dir, mine.text(), stale, str(GUARD_WAIT_S)], timeout=GUARD_WAIT_S + 30)
    if r.rc == 1:
        return r.stdout
    if not r.ok:
        raise HostError(f"could not take the lock {state_dir}/{LOCK}: {(r.stderr or r.stdout).strip() or f'exit {r.rc}'}")
    return None


def acquire(conn: Connector, state_dir: str, command: str, pid: int | None = None) -> Holder:
    """Take the host's lock or raise HostLocked naming its holder; a dead holder's lock is taken over."""
    mine = Holder.me(command, pid)
    current = _take(conn, state_dir, mine)
    if current is not None:
        other = parse_holder(current)
        if other is not None and other.dead():
            current = _take(conn, state_dir, mine, stale=current)  # only if nobody took it meanwhile
            other = parse_holder(current) if current is not None else None
        if current is not None:
            who = other.describe() if other else f"an unreadable holder ({current.strip()[:200]!r})"
            raise HostLocked(f"{state_dir}/{LOCK}: this host is being changed by {who}; refused")
    return mine


def release(conn: Connector, state_dir: str, mine: Holder) -> None:
    conn.run(["sh", "-c", _GIVE, "sh", state_dir, mine.text(), str(GUARD_WAIT_S)], timeout=GUARD_WAIT_S + 30)


@contextmanager
def held(conn: Connector, state_dir: str, command: str) -> Iterator[Holder]:
    mine = acquire(conn, state_dir, command)
    try:
        yield mine
    finally:
        try:
            release(conn, state_dir, mine)
        except (CoffersError, OSError):
            pass  # the connection is gone: the lock stays, provably stale once this process ends


def locked(fn: Callable[[Host, Connector], T], state_dir: Callable[[Host], str], command: str) -> Callable[[Host, Connector], T]:
    """`fn` for fan-out, run only while it holds the host's lock."""

    def run(host: Host, conn: Connector) -> T:
        with held(conn, state_dir(host), command):
            return fn(host, conn)

    return run
