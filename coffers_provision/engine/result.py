"""What a task reports, and what a host's play adds up to."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    OK = "ok"  # nothing needed changing
    CHANGED = "changed"  # something changed (in --check: would change)
    SKIPPED = "skipped"  # not run, with a reason
    FAILED = "failed"


@dataclass(frozen=True)
class Step:
    """One part of a task (write a unit, verify it, daemon-reload, ...) and how it went."""

    name: str
    status: Status
    message: str = ""


def combine(steps: list[Step]) -> Status:
    """A task's status from its steps: any failure fails it, any change changes it,
    and it is skipped only when every step was."""
    kinds = {s.status for s in steps}
    for status in (Status.FAILED, Status.CHANGED, Status.OK):
        if status in kinds:
            return status
    return Status.SKIPPED if kinds else Status.OK


@dataclass
class TaskResult:
    role: str
    task: str
    module: str
    status: Status
    message: str = ""
    diff: str = ""
    steps: list[Step] = field(default_factory=list)
    handler: bool = False
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)  # figures a check measured, for --json

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "role": self.role,
            "task": self.task,
            "module": self.module,
            "status": self.status.value,
            "message": self.message,
        }
        if self.handler:
            out["handler"] = True
        if self.steps:
            out["steps"] = [{"name": s.name, "status": s.status.value, "message": s.message} for s in self.steps]
        if self.diff:
            out["diff"] = self.diff
        if self.data:
            out["data"] = self.data
        return out


@dataclass
class HostReport:
    host: str
    results: list[TaskResult] = field(default_factory=list)
    unreachable: str | None = None  # the reason, when the host could not be reached
    error: str | None = None  # a failure outside any task (bad vars, plan, facts)
    not_reached: str | None = None  # why the run stopped before this host (a rollout's failure budget)

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status is status)

    @property
    def failed(self) -> bool:
        return self.error is not None or self.count(Status.FAILED) > 0

    def counts(self) -> dict[str, int]:
        return {
            "ok": self.count(Status.OK),
            "changed": self.count(Status.CHANGED),
            "skipped": self.count(Status.SKIPPED),
            "failed": self.count(Status.FAILED) + (1 if self.error is not None else 0),
            "unreachable": 1 if self.unreachable is not None else 0,
        }

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = self.counts()
        if self.unreachable is not None:
            out["unreachable_reason"] = self.unreachable
        if self.error is not None:
            out["error"] = self.error
        if self.not_reached is not None:
            out["not_reached"] = self.not_reached
        out["tasks"] = [r.to_json() for r in self.results]
        return out
