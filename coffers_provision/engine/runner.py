"""Run a play on one host: tasks in order, then the notified handlers.

Every task's arguments are rendered first, so the host's state for the whole play is
read in one round trip (engine/state.py). Then each task compares, and its actions run
unless this is --check; that is the only difference check mode makes. The first failed
task stops the host's play; handlers that were notified stay pending on the host.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..connect.base import CommandTimeout, ConnectError, Connector
from ..inventory.merge import MERGED_VARS, deep_merge
from . import handlers as pending_store
from .modules import SYSTEMD_BOOTED, Context, Outcome, TaskFailed, get
from .result import HostReport, Status, Step, TaskResult, combine
from .role import Play, PlayRole, Task
from .state import HostState, Needs, ProbeError
from .templating import TemplateError, evaluate, render_value, resolve_vars

ENGINE_DEFAULTS: dict[str, Any] = {
    "state_dir": "/var/lib/coffers",
    "unit_dir": "/etc/systemd/system",
}
MERGED = MERGED_VARS  # mappings merged key by key, as in the inventory
# Asked once the host's state is read and before any task runs: why the play must not run
# on this host (the host fails with that, nothing changed), or None.
Guard = Callable[[HostState], "str | None"]


@dataclass(frozen=True)
class Options:
    check: bool = False
    diff: bool = False


def play_vars(play: Play, host_vars: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Engine defaults < role defaults < inventory vars < computed (facts, plan, ...).

    Only defaults (the role author's templates) are rendered; inventory values are data.
    """
    merged: dict[str, Any] = dict(ENGINE_DEFAULTS)
    templated: set[str] = set()
    for pr in play.roles:
        for k, v in pr.role.defaults.items():
            merged[k] = deep_merge(merged[k], v) if k in MERGED and isinstance(merged.get(k), Mapping) else v
            if k not in MERGED:
                templated.add(k)
    for layer in (host_vars, extra or {}):
        for k, v in layer.items():
            if k in MERGED and isinstance(v, Mapping) and isinstance(merged.get(k), Mapping):
                merged[k] = deep_merge(merged[k], v)
            else:
                merged[k] = v
                templated.discard(k)
    return resolve_vars(merged, templated, where="role defaults")


@dataclass
class Entry:
    """One task (or one loop item of it), rendered for this host."""

    task: Task
    name: str
    args: dict | None = None
    skip: str | None = None
    error: str | None = None
    needs_files: list[str] = field(default_factory=list)


def expand(task: Task, variables: Mapping[str, Any]) -> list[Entry]:
    try:
        items = [None]
        if task.loop is not None:
            items = render_value(task.loop, variables, where=f"{task.where}: loop")
            if not isinstance(items, list):
                return [Entry(task, task.name, error=f"{task.where}: loop must give a list, got {type(items).__name__}")]
    except TemplateError as e:
        return [Entry(task, task.name, error=str(e))]
    out = []
    for item in items:
        scope = dict(variables) if task.loop is None else {**variables, "item": item}
        name = task.name
        try:
            name = str(render_value(task.name, scope, where=f"{task.where}: name"))
            if task.when is not None and not evaluate(task.when, scope, where=f"{task.where}: when"):
                out.append(Entry(task, name, skip=f"when: {task.when}"))
                continue
            args = render_value(task.args, scope, where=f"{task.where}: {task.module}")
            files = render_value(task.needs_files, scope, where=f"{task.where}: needs_files") if task.needs_files else []
            out.append(Entry(task, name, args=args, needs_files=[str(f) for f in files]))
        except TemplateError as e:
            out.append(Entry(task, name, error=str(e)))
    return out


def play_entries(play: Play, variables: Mapping[str, Any]) -> tuple[list[Entry], list[PlayRole]]:
    """Every task of the roles that are on for this host, rendered; and the roles that are off."""
    entries: list[Entry] = []
    inactive: list[PlayRole] = []
    for pr in play.roles:
        if pr.when is not None and not evaluate(pr.when, variables, where=f"role {pr.role.name}: when"):
            inactive.append(pr)
            continue
        for task in pr.role.tasks:
            entries += expand(task, variables)
    return entries, inactive


class _Play:
    def __init__(self, host: str, conn: Connector, play: Play, variables: Mapping[str, Any], options: Options,
                 state: HostState | None = None, needs: Needs | None = None, guard: Guard | None = None):
        self.host, self.conn, self.play, self.vars, self.options = host, conn, play, variables, options
        self.state = state or HostState(conn)
        self.extra_needs = needs
        self.guard = guard
        self.report = HostReport(host)
        self.state_dir = str(variables.get("state_dir", ENGINE_DEFAULTS["state_dir"]))
        self.pending: list[str] = []  # handler names recorded on the host
        self.notified: list[str] = []

    def ctx(self, task: Task, variables: Mapping[str, Any] | None = None) -> Context:
        return Context(self.host, self.conn, self.state, variables or self.vars, task.role, want_diff=self.options.diff)

    # -- one task ----------------------------------------------------------
    def _outcome(self, entry: Entry) -> Outcome:
        if entry.error:
            raise TaskFailed(entry.error)
        ctx = self.ctx(entry.task)
        for path in entry.needs_files:
            if self.state.stat(path) is None:
                return Outcome([Step("needs_files", Status.SKIPPED, f"{path} is not on the host")])
        return get(entry.task.module).prepare(entry.args, ctx)

    def run_entry(self, entry: Entry, *, handler: bool = False) -> TaskResult:
        task = entry.task
        result = TaskResult(task.role.name, entry.name, task.module, Status.OK, handler=handler)
        start = time.monotonic()
        if entry.skip:
            result.status, result.message = Status.SKIPPED, entry.skip
            return result
        try:
            outcome = self._outcome(entry)
            notify = [n for n in task.notify if n not in self.notified] if outcome.notifies else []
            if not self.options.check:
                if notify:
                    self._record(self.pending + notify)  # before the change: never lost
                for action in outcome.actions:
                    action()
                if outcome.actions:
                    self.state.forget([*outcome.effects, *outcome.contents])
            else:
                self.state.overlay(outcome.effects, outcome.contents)
            if outcome.notifies:
                self.notified += notify
            result.status = combine(outcome.steps)
            result.steps, result.diff = outcome.steps, outcome.diff
            result.message = "; ".join(f"{s.name}: {s.message}" if s.message else s.name
                                       for s in outcome.steps if s.status is not Status.OK) or "ok"
        except (TaskFailed, TemplateError, CommandTimeout, ProbeError, OSError) as e:
            result.status, result.message = Status.FAILED, str(e)
            changed_before = sum(1 for r in self.report.results if r.status is Status.CHANGED)
            if self.options.check and changed_before:
                # in --check the earlier changes were not made, and this task may rely on them
                result.status = Status.SKIPPED
                result.message = f"depends on {changed_before} earlier change(s) not made in --check: {e}"
        result.seconds = time.monotonic() - start
        return result

    def _record(self, names: list[str]) -> None:
        names = sorted(set(names))
        if names != sorted(set(self.pending)):
            pending_store.store(self.conn, self.state, self.state_dir, names)
        self.pending = names

    # -- the play ----------------------------------------------------------
    def run(self) -> HostReport:
        try:
            entries, inactive = play_entries(self.play, self.vars)
        except TemplateError as e:
            self.report.error = str(e)
            return self.report
        for pr in inactive:
            self.report.results.append(TaskResult(pr.role.name, f"role {pr.role.name}", "role", Status.SKIPPED, f"when: {pr.when}"))
        needs = Needs(capture={SYSTEMD_BOOTED}, read={pending_store.path(self.state_dir)})
        if self.extra_needs:
            needs.update(self.extra_needs)
        for entry in entries:
            if entry.args is not None:
                try:
                    needs.update(get(entry.task.module).needs(entry.args, self.ctx(entry.task)))
                except (TaskFailed, KeyError, TypeError) as e:
                    entry.error = entry.error or f"{entry.task.where}: {e}"
                needs.stat |= set(entry.needs_files)
        self.state.prefetch(needs)
        if self.guard is not None:
            self.report.error = self.guard(self.state)
            if self.report.error is not None:
                return self.report
        self.pending = pending_store.load(self.state, self.state_dir)
        self.notified = list(self.pending)

        for entry in entries:
            result = self.run_entry(entry)
            self.report.results.append(result)
            if result.status is Status.FAILED:
                return self.report  # the notified handlers stay pending on the host
        self.run_handlers()
        return self.report

    def run_handlers(self) -> None:
        handlers = self.play.handlers
        for name in [n for n in self.notified if n not in handlers]:
            # a handler of another play (or of an older version of the roles): kept pending
            self.report.results.append(TaskResult("-", name, "handler", Status.SKIPPED,
                                                  "not a handler of this play: kept pending for the play that has it", handler=True))
        remaining = list(self.notified) if self.options.check else list(dict.fromkeys(self.pending + [n for n in self.notified if n not in handlers]))
        for name, task in handlers.items():
            if name not in self.notified:
                continue
            entries = expand(task, self.vars)
            failed = False
            for entry in entries:
                result = self.run_entry(entry, handler=True)
                self.report.results.append(result)
                failed |= result.status is Status.FAILED
            if not failed and name in remaining:
                remaining.remove(name)
        if not self.options.check:
            self._record(remaining)


def run_play(host: str, conn: Connector, play: Play, variables: Mapping[str, Any], options: Options = Options(), *,
             state: HostState | None = None, needs: Needs | None = None, guard: Guard | None = None) -> HostReport:
    """Run `play` on one host; a lost connection marks the report unreachable, results kept.

    A caller that looks at the host after the play passes its `state` and what it will
    read (`needs`), so that is fetched in the play's one round trip too; its `guard` may
    stop the play before any task (in --check too)."""
    p = _Play(host, conn, play, variables, options, state, needs, guard)
    try:
        return p.run()
    except ConnectError as e:
        p.report.unreachable = str(e)
        return p.report


__all__ = ["ConnectError", "Guard", "Options", "play_vars", "run_play"]
