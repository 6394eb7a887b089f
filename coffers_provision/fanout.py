"""Run per-host work over a fleet on a bounded pool of workers.

`run_hosts(hosts, fn, forks=N)` calls `fn(host, conn)` for every host, at most N at a
time, and returns one HostOutcome per host in inventory order:

- `ok`: fn returned (its value is kept);
- `unreachable`: connecting or logging in failed, or the connection dropped
  (ConnectError, HostKeyError included), whenever it happened;
- `failed`: anything else fn raised (HostFailed for a plain message, CommandTimeout, ...).

One host's failure never stops the others. The connection is opened on first use, so
work that needs no host (a fresh facts cache) costs no login; it is reused for every
command and transfer of that host and closed when the run's pool closes.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Sequence, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from .connect import ConnectionPool, ConnectOptions, Connector
from .connect.base import Command, FileStat, Result
from .errors import CoffersError, HostError, UnreachableError
from .inventory import Host
from .output import err as err_console
from .status import ExitStatus, fleet_status

T = TypeVar("T")

OK, FAILED, UNREACHABLE = "ok", "failed", "unreachable"
DEFAULT_FORKS = 20


class HostFailed(HostError):
    """Raised by per-host work to mark the host failed with a plain message."""


@dataclass(frozen=True)
class HostOutcome(Generic[T]):
    host: str
    status: str  # OK | FAILED | UNREACHABLE
    value: T | None = None
    error: str | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == OK


def counts(outcomes: Iterable[HostOutcome]) -> dict[str, int]:
    c = {OK: 0, FAILED: 0, UNREACHABLE: 0}
    for o in outcomes:
        c[o.status] += 1
    return c


def exit_status(outcomes: Sequence[HostOutcome]) -> ExitStatus:
    c = counts(outcomes)
    return fleet_status(c[FAILED], c[UNREACHABLE])


class LazyConnector(Connector):
    """Connects through the pool on first use; every later call reuses that connection."""

    def __init__(self, host: Host, pool: ConnectionPool):
        self.host, self._h, self._pool = host.name, host, pool
        self._conn: Connector | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def conn(self) -> Connector:
        if self._conn is None:
            self._conn = self._pool.get(self._h)
        return self._conn

    def run(self, command: Command, *, timeout: float | None = None, stdin: bytes | None = None) -> Result:
        return self.conn().run(command, timeout=timeout, stdin=stdin)

    def put(self, data: bytes, path: str, *, mode: int = 0o644) -> None:
        self.conn().put(data, path, mode=mode)

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        return self.conn().read(path, offset, length)

    def stat(self, path: str) -> FileStat | None:
        return self.conn().stat(path)

    def open_channel(self, address: str, port: int, timeout: float) -> Any:
        return self.conn().open_channel(address, port, timeout)


def _one(host: Host, fn: Callable[[Host, Connector], T], pool: ConnectionPool, failed: Callable[[T], bool] | None,
         release: bool = False) -> HostOutcome[T]:
    """One host's work; with `release`, its connection is closed as soon as the work ends
    (on a thousand hosts, open sessions would hold the hosts' memory and ours to the end)."""
    try:
        return _outcome(host, fn, pool, failed)
    finally:
        if release:
            pool.release(host)


def _outcome(host: Host, fn: Callable[[Host, Connector], T], pool: ConnectionPool, failed: Callable[[T], bool] | None) -> HostOutcome[T]:
    start = time.monotonic()
    conn = LazyConnector(host, pool)
    try:
        value = fn(host, conn)
        status = FAILED if failed is not None and failed(value) else OK
        return HostOutcome(host.name, status, value, None, time.monotonic() - start)
    except UnreachableError as e:
        return HostOutcome(host.name, UNREACHABLE, None, str(e), time.monotonic() - start)
    except CoffersError as e:  # this host's failure, never the run's
        return HostOutcome(host.name, FAILED, None, str(e), time.monotonic() - start)
    except OSError as e:  # a transfer or file on this host failed
        return HostOutcome(host.name, FAILED, None, f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}", time.monotonic() - start)
    except Exception as e:  # noqa: BLE001 - a bug in one host's work fails that host, never the fleet's run
        return HostOutcome(host.name, FAILED, None, f"{type(e).__name__}: {e}", time.monotonic() - start)


class _Reporter:
    """A live progress bar on a terminal; one plain line per finished host otherwise."""

    def __init__(self, total: int, label: str, console: Console, enabled: bool):
        self.console, self.total, self.label, self.done = console, total, label, 0
        self.tally = {OK: 0, FAILED: 0, UNREACHABLE: 0}
        self.progress = None
        if enabled and console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[tally]}"), TimeElapsedColumn(), console=console, transient=True,
            )  # fmt: skip
            self.task = self.progress.add_task(label, total=total, tally="")
            self.progress.start()
        self.plain = enabled and self.progress is None

    def finished(self, o: HostOutcome) -> None:
        self.done += 1
        self.tally[o.status] += 1
        if self.progress is not None:
            tally = f"[green]{self.tally[OK]} ok[/] [red]{self.tally[FAILED]} failed[/] [magenta]{self.tally[UNREACHABLE]} unreachable[/]"
            self.progress.update(self.task, advance=1, tally=tally)
            if not o.ok:
                self.progress.console.print(f"[{'red' if o.status == FAILED else 'magenta'}]{o.host}: {o.status.upper()}:[/] {o.error}", markup=True, highlight=False)
        elif self.plain:
            line = f"[{self.done}/{self.total}] {self.label} {o.host}: {o.status} ({o.elapsed:.1f}s)"
            self.console.print(line + (f": {o.error}" if o.error else ""), markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def run_hosts(
    hosts: Sequence[Host],
    fn: Callable[[Host, Connector], T],
    *,
    forks: int = DEFAULT_FORKS,
    options: ConnectOptions | None = None,
    pool: ConnectionPool | None = None,
    label: str = "hosts",
    progress: bool = True,
    console: Console | None = None,
    failed: Callable[[T], bool] | None = None,
) -> list[HostOutcome[T]]:
    """`fn(host, conn)` on every host, `forks` at a time; outcomes in the order of `hosts`.

    `failed(value)` marks a host failed whose work returned a value rather than raising
    (a play with a failed task), so progress and counts tell the truth.

    Pass a `pool` to keep connections open across several runs (probe, then apply);
    otherwise the run opens its own and closes every connection before returning.
    """
    if forks < 1:
        raise ValueError("forks must be at least 1")
    own_pool = pool is None
    pool = pool or ConnectionPool(options)
    reporter = _Reporter(len(hosts), label, console or err_console, progress)
    results: dict[str, HostOutcome[T]] = {}
    executor = ThreadPoolExecutor(max_workers=min(forks, max(len(hosts), 1)), thread_name_prefix="host")
    try:
        futures: dict[Future, Host] = {executor.submit(_one, h, fn, pool, failed, own_pool): h for h in hosts}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for f in done:
                o = f.result()
                results[o.host] = o
                reporter.finished(o)
    except BaseException:  # Ctrl-C: drop queued hosts, cut live connections so workers end
        executor.shutdown(wait=False, cancel_futures=True)
        threading.Thread(target=pool.close, daemon=True).start()
        reporter.close()
        raise
    executor.shutdown(wait=True)
    reporter.close()
    if own_pool:
        pool.close()
    return [results[h.name] for h in hosts]
