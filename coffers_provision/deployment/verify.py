"""After a (re)start, every instance answers: /health until 200, then one short completion.

Where systemd is PID 1 the units the play (re)started are checked as they run. Where it
is not (containers, CI machines) nothing keeps a server running, so each instance's exact
command (ExecStartPre steps, then `launch`: the same argv, environment, CPUs and memory
policy the unit would give it) is started as a transient process, checked and stopped.
Either way the figures come from llama-server's own `timings`.

A check runs when the play restarted the service, or (without systemd) when the host has
not yet answered for this very description (`<state_dir>/verified.json`), so a no-op
re-apply starts nothing. A server that does not come up fails the host with the last lines
of its log, and the restart stays pending on the host so the next apply retries it.
"""

from __future__ import annotations

import json
import shlex
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from ..connect.base import Connector
from ..engine import handlers as pending
from ..engine.result import HostReport, Status, TaskResult
from ..engine.modules import SYSTEMD_BOOTED
from ..engine.state import HostState, Needs
from ..errors import HostError
from ..serving.health import completion, wait_healthy
from .describe import Deployment, Service

RESTART_HANDLER = "restart llama-server"
VERIFIED = "verified.json"
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # a unit's default PATH
PROMPT = "The quick brown fox jumps over the lazy dog. The"
N_PREDICT = 8
SEED = 42
LOG_LINES = 20
STOP_S = 15.0


@dataclass(frozen=True)
class Endpoint:
    """Something that answers HTTP: an instance, or replicate's front-end."""

    unit: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def endpoints(dep: Deployment) -> list[Endpoint]:
    """Every instance, then the front-end clients use (replicate)."""
    out = [Endpoint(s.unit, s.host, s.port) for s in dep.services]
    if dep.frontend is not None:
        out.append(Endpoint(dep.frontend.unit, dep.frontend.host, dep.frontend.port))
    return out


@dataclass(frozen=True)
class Answer:
    endpoint: Endpoint
    prompt_tps: float
    gen_tps: float
    seconds_to_healthy: float

    @property
    def url(self) -> str:
        return self.endpoint.url

    def to_json(self) -> dict[str, Any]:
        return {"unit": self.endpoint.unit, "url": self.url, "prompt_tokens_per_s": self.prompt_tps,
                "generation_tokens_per_s": self.gen_tps, "seconds_to_healthy": round(self.seconds_to_healthy, 2)}


def _state_path(state_dir: str, name: str) -> str:
    return f"{state_dir.rstrip('/')}/{name}"


def _ask(conn: Connector, svc: Endpoint, timeout_s: float, alive: Callable[[], str | None]) -> Answer:
    """Health until 200 within `timeout_s` (failing early when the process is gone), then a completion."""
    start = time.monotonic()
    opener = endpoint_opener(conn, svc)
    wait_healthy(opener, timeout_s, alive=alive)
    healthy = time.monotonic() - start
    timings = completion(opener, PROMPT, n_predict=N_PREDICT, seed=SEED)
    return Answer(svc, timings.prompt_per_second, timings.predicted_per_second, healthy)


def _reach(address: str) -> str:
    """Where to connect for a server bound to `address` (every address: its loopback)."""
    return "127.0.0.1" if address in ("0.0.0.0", "") else "::1" if address == "::" else address


def endpoint_opener(conn: Connector, at: Endpoint) -> Callable[[], Any]:
    """Streams to `at` from the host itself (through SSH for a remote host)."""
    return lambda: conn.open_channel(_reach(at.host), at.port, timeout=10.0)


def _journal(conn: Connector, unit: str) -> str:
    r = conn.run(["journalctl", "-u", unit, "-n", str(LOG_LINES), "--no-pager", "-o", "cat"], timeout=30)
    return (r.stdout or r.stderr).strip()


# -- systemd: the units as they run ----------------------------------------------------------


def _ask_unit(conn: Connector, dep: Deployment, svc: Endpoint) -> Answer:
    def alive() -> str | None:
        state = conn.run(["systemctl", "is-active", svc.unit], timeout=30).stdout.strip()
        return None if state in ("active", "activating", "reloading") else f"{svc.unit} is {state}"

    try:
        return _ask(conn, svc, dep.health_timeout_s, alive)
    except HostError as e:
        raise HostError(f"{svc.unit} did not answer: {e}\n--- journalctl -u {svc.unit} ---\n{_journal(conn, svc.unit)}") from None


def check_units(conn: Connector, dep: Deployment) -> list[Answer]:
    return [_ask_unit(conn, dep, svc) for svc in endpoints(dep)]


def restart_one_by_one(conn: Connector, dep: Deployment, fresh: set[str], *, ask: bool = True) -> list[Answer]:
    """replicate: restart each instance only once the one before it answered, so the
    front-end always has instances to send requests to; then ask the front-end. Units in
    `fresh` were just started by the play and are only asked. Without `ask` (verify off)
    the instances still go one at a time, without waiting."""
    out = []
    for svc in dep.services:
        if svc.unit not in fresh:
            r = conn.run(["systemctl", "restart", svc.unit], timeout=300)
            if not r.ok:
                raise HostError(f"systemctl restart {svc.unit}: {(r.stderr or r.stdout).strip()}")
        if ask:
            out.append(_ask_unit(conn, dep, Endpoint(svc.unit, svc.host, svc.port)))
    if ask and dep.frontend is not None:
        out.append(_ask_unit(conn, dep, Endpoint(dep.frontend.unit, dep.frontend.host, dep.frontend.port)))
    return out


# -- no systemd: the same command, transient -------------------------------------------------


def _env(dep: Deployment, svc: Service) -> list[str]:
    """`env -i` words giving the command exactly the environment its unit would have."""
    words = ["env", "-i", "--", f"PATH={SYSTEMD_PATH}", *(f"{k}={v}" for k, v in svc.environment)]
    return (["runuser", "-u", dep.user, "--"] if dep.user else []) + words


def _pre(conn: Connector, dep: Deployment, svc: Service) -> None:
    for argv in svc.pre:
        r = conn.run([*_env(dep, svc), *argv], timeout=600)
        if not r.ok:
            raise HostError(f"{svc.unit}: ExecStartPre {shlex.join(argv)} exited {r.rc}: {(r.stderr or r.stdout).strip()[-1500:]}")


def _run(conn: Connector, at: Endpoint, env: list[str], argv: tuple[str, ...], log: str) -> Running:
    """Start `argv` in the background, its output to `log`, in its own session (so stopping
    it stops everything it started)."""
    script = 'log=$1; shift; setsid "$@" </dev/null >"$log" 2>&1 & echo $!'
    r = conn.run(["sh", "-c", script, "sh", log, *env, *argv], timeout=60)
    if not r.ok or not r.stdout.strip().isdigit():
        raise HostError(f"{at.unit}: could not start {shlex.join(argv)}: {r.stderr.strip()}")
    pid = int(r.stdout.strip())

    def alive() -> str | None:
        gone = conn.run(["kill", "-0", str(pid)], timeout=30)
        return None if gone.ok else f"the server exited (log {log})"

    return Running(at, pid, log, alive)


def _stop(conn: Connector, pid: int) -> None:
    # "-PID" names the process group (no "--": not every sh's kill takes it)
    script = ('kill -TERM "-$1" 2>/dev/null || exit 0; i=0; '
              'while kill -0 "-$1" 2>/dev/null; do i=$((i+1)); [ $i -gt "$2" ] && { kill -KILL "-$1"; exit 0; }; sleep 0.1; done')
    conn.run(["sh", "-c", script, "sh", str(pid), str(int(STOP_S * 10))], timeout=STOP_S + 30)


@dataclass(frozen=True)
class Running:
    """One process started transiently: what to ask, and how to tell it is gone."""

    endpoint: Endpoint
    pid: int
    log: str
    alive: Callable[[], str | None]


@contextmanager
def transient(conn: Connector, dep: Deployment, state_dir: str) -> Iterator[list[Running]]:
    """Every instance of `dep` started as its unit would start it (ExecStartPre, then the
    same argv, environment, CPUs and memory policy), all stopped again on the way out."""
    conn.run(["mkdir", "-p", "--", _state_path(state_dir, "run")])
    started: list[Running] = []
    try:
        for svc in dep.services:
            _pre(conn, dep, svc)
            started.append(_run(conn, Endpoint(svc.unit, svc.host, svc.port), _env(dep, svc), svc.launch, _state_path(state_dir, f"run/{svc.unit}.log")))
        if dep.frontend is not None:
            fe = dep.frontend
            conn.put(fe.text.encode(), fe.launch_config, mode=0o644)
            started.append(_run(conn, Endpoint(fe.unit, fe.host, fe.port), [], fe.launch, _state_path(state_dir, f"run/{fe.unit}.log")))
        yield started
    finally:
        for r in started:
            _stop(conn, r.pid)


def log_tail(conn: Connector, log: str) -> str:
    return conn.run(["tail", "-n", str(LOG_LINES), "--", log], timeout=30).stdout.strip()


def _check_transient(conn: Connector, dep: Deployment, state_dir: str) -> list[Answer]:
    with transient(conn, dep, state_dir) as running:
        out = []
        for r in running:
            try:
                out.append(_ask(conn, r.endpoint, dep.health_timeout_s, r.alive))
            except HostError as e:
                raise HostError(f"{r.endpoint.unit} (transient: systemd is not PID 1) did not answer: {e}\n--- {r.log} ---\n{log_tail(conn, r.log)}") from None
        return out


# -- the step apply runs after the play ------------------------------------------------------


def _notified(report: HostReport) -> bool:
    """The play ran the restart handler (where systemd is not PID 1 its steps are skipped,
    but it still says the service changed)."""
    return any(r.handler and r.task == RESTART_HANDLER for r in report.results)


def _started(report: HostReport) -> set[str]:
    """The units the play's own tasks started (they came up with the new files already)."""
    return {unit for r in report.results if r.module == "systemd_unit" and not r.handler
            for s in r.steps if s.status is Status.CHANGED and s.name.startswith("start ") for unit in s.name.split()[1:]}


def _deployable(report: HostReport) -> str | None:
    """Why there is no server to ask (its unit was skipped: llama-server or the model is missing)."""
    for r in report.results:
        if r.role == "inference_service" and r.module == "systemd_unit" and r.status is Status.SKIPPED and "is not on the host" in r.message:
            return r.message
    return None


def needs(variables: Mapping[str, Any]) -> Needs:
    """What `verify` reads, fetched with the play's own round trip."""
    return Needs(capture={SYSTEMD_BOOTED}, read={_state_path(str(variables["state_dir"]), VERIFIED)})


def _pending_restart(conn: Connector, state: HostState, state_dir: str, keep: bool) -> None:
    """Record (or clear) the restart on the host, so a failed or killed run leaves it to the next."""
    state.forget([pending.path(state_dir)])
    names = set(pending.load(state, state_dir))
    pending.store(conn, state, state_dir, sorted(names | {RESTART_HANDLER} if keep else names - {RESTART_HANDLER}))


def _checked(conn: Connector, state: HostState, state_dir: str, check: Callable[[], list[Answer]],
             booted: bool, restarts: bool = False) -> list[Answer] | TaskResult:
    """`check()`'s answers, or its failure. With `restarts` (the check restarts instances
    itself) the restart stays pending meanwhile."""
    start = time.monotonic()
    if restarts:
        _pending_restart(conn, state, state_dir, keep=True)
    try:
        answers = check()
    except HostError as e:
        if booted:  # the restart did not take: keep it pending so the next apply retries it
            _pending_restart(conn, state, state_dir, keep=True)
        return TaskResult("serving", "health", "health", Status.FAILED, str(e), seconds=time.monotonic() - start)
    if restarts:
        _pending_restart(conn, state, state_dir, keep=False)
    return answers


def verify(conn: Connector, state: HostState, dep: Deployment, report: HostReport, variables: Mapping[str, Any]) -> None:
    """Append one `serving` result per instance to `report` (or one failure, with the log)."""
    report.results += check(conn, state, dep, variables, restarted=_notified(report), missing=_deployable(report),
                            started=_started(report))


def check(conn: Connector, state: HostState, dep: Deployment, variables: Mapping[str, Any], *,
          restarted: bool, missing: str | None, started: set[str] | frozenset[str] = frozenset()) -> list[TaskResult]:
    """The check after a play, by either engine: `restarted` says the play ran the restart
    handler, `missing` why its unit was skipped (a file it runs is not on the host),
    `started` the units the play itself started (a one-by-one restart only asks them)."""
    state_dir = str(variables["state_dir"])
    booted = state.capture(SYSTEMD_BOOTED).ok
    one_by_one = booted and dep.template and restarted and missing is None
    why_not = missing or (None if dep.verify else "coffers.service.verify is false")
    skipped = [TaskResult("serving", "health", "health", Status.SKIPPED, f"not asked: {why_not}")]
    if why_not:
        if one_by_one:
            failed = _checked(conn, state, state_dir, lambda: restart_one_by_one(conn, dep, set(started), ask=False), booted, restarts=True)
            return ([failed] if isinstance(failed, TaskResult) else []) + skipped
        return skipped
    fingerprint = dep.to_json()["fingerprint"]
    if booted:
        if not restarted and not started:  # nothing (re)started: the server answered last time
            return []
    else:
        raw = state.read(_state_path(state_dir, VERIFIED))
        try:
            last = json.loads(raw).get("fingerprint") if raw else None
        except (ValueError, AttributeError):
            last = None
        if last == fingerprint and not restarted:
            return []
    if one_by_one:
        answers = _checked(conn, state, state_dir, lambda: restart_one_by_one(conn, dep, set(started)), booted, restarts=True)
    elif booted:
        answers = _checked(conn, state, state_dir, lambda: check_units(conn, dep), booted)
    else:
        answers = _checked(conn, state, state_dir, lambda: _check_transient(conn, dep, state_dir), booted)
    if isinstance(answers, TaskResult):
        return [answers]
    results = [TaskResult(
            "serving", f"health {a.endpoint.unit}", "health", Status.OK,
            f"{a.url} answered: prompt {a.prompt_tps:.1f} tokens/s, generation {a.gen_tps:.1f} tokens/s"
            + ("" if booted else " (transient run: systemd is not PID 1)"),
            seconds=a.seconds_to_healthy, data=a.to_json()) for a in answers]
    # the last check, for `status` (and, without systemd, to skip the next one when nothing changed)
    record = {"fingerprint": fingerprint, "at": time.time(), "transient": not booted, "answers": [a.to_json() for a in answers]}
    conn.put((json.dumps(record, indent=2) + "\n").encode(), _state_path(state_dir, VERIFIED), mode=0o644)
    return results
