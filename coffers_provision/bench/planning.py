"""Stored bench results as the planner's input: `plan` and `apply` both call these.

`--bench-results DIR` names a run directory (or a results directory, meaning its `latest`);
without it, `results/latest` is used when it exists. A host the run has no result for is
planned without measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..planner import Bench, Plan
from .store import DEFAULT_RESULTS_DIR, LATEST, RUN_FILE, StoreError, host_file, read_result


@dataclass(frozen=True)
class Measured:
    """One host's stored result as a planner `Bench`, and where it came from."""

    bench: Bench
    path: Path  # the result file
    run_id: str
    tool: str  # "numa-shard-bench 0.1.0 (gcc 12.2.0)"

    @property
    def note(self) -> str:
        return f"measured: bench run {self.run_id}, {self.path} ({self.tool})"


def default_results() -> Path | None:
    """`results/latest` when it exists (the bench command's default store)."""
    latest = DEFAULT_RESULTS_DIR / LATEST
    return latest if (latest / RUN_FILE).is_file() else None


def run_dir_of(results: Path) -> Path:
    """A run directory from DIR: the run itself, or a results directory's latest run."""
    if (results / RUN_FILE).is_file():
        return results
    if (results / LATEST / RUN_FILE).is_file():
        return results / LATEST
    raise StoreError(f"--bench-results {results}: not a bench run directory (no {RUN_FILE}) nor a results directory with {LATEST}/")


def measured_results(given: Path | None) -> Path | None:
    """The run to plan from: DIR, else results/latest when present, else None. It is checked
    (a wrong DIR fails before any host is touched) and resolved, so every host of one
    command reads the same run even if a bench run finishes meanwhile."""
    chosen = given if given is not None else default_results()
    return None if chosen is None else run_dir_of(Path(chosen)).resolve()


def load_bench_for_host(results: Path | None, host: str) -> Measured | None:
    """The host's measurements from a run, or None (no DIR, or no result for this host).

    Raises StoreError when DIR is not a run, or the host's file is not a valid result."""
    if results is None:
        return None
    run = run_dir_of(Path(results))
    path = run / f"{host_file(host)}.json"
    if not path.is_file():
        return None
    doc = read_result(path)
    tool = doc["tool"]
    return Measured(Bench.from_json(doc), path, run.resolve().name, f"{tool['name']} {tool['version']} ({tool['compiler']})")


def with_note(plan: Plan, measured: Measured | None) -> Plan:
    """The plan with a `reasons` line naming the results it used, so the plan records them."""
    if measured is None:
        return plan
    return replace(plan, reasons=plan.reasons + (measured.note,))
