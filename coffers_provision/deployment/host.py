"""A host's deployment from its inventory vars, facts, model and measurements: the one
function `plan`, `apply`, `bench` and `tune` call, so what `plan` shows is what `apply` deploys."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Mapping

from .. import __version__
from ..bench import tuned
from ..bench.planning import Measured, load_bench_for_host, with_note
from ..connect.base import Connector
from ..engine.runner import ENGINE_DEFAULTS
from ..inventory import Host
from ..model import ModelLayout
from ..planner import Bench, Policy, plan_for_host
from . import identity
from .describe import Deployment, describe
from .inputs import ModelSource, checked_coffers, model_source, read_model


@dataclass(frozen=True)
class Sources:
    """Where a run takes its inputs from, resolved once per command."""

    bench_results: Path | None = None  # a bench run directory (see bench.planning.measured_results)
    bench: Bench | None = None  # one result given on the command line (offline plan); wins over bench_results
    model_cache: Path | None = None  # where generated models are written
    overrides: Mapping[str, Any] | None = None  # `coffers:` values from the command line
    tune_dir: Path | None = tuned.TUNE_DIR  # tune records; where they exist they decide `auto`
    tune_run: tuned.Tuned | None = None  # the tune run whose winner is deployed (tune's last apply): its provenance
    hash_model: bool = False  # apply and tune: the model's sha256 on the host (cached there)
    write_state: bool = True  # false under --check: the hash cache is not written


def host_coffers(host: Host, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    coffers = dict(host.coffers)
    for k, v in (overrides or {}).items():
        coffers[k] = {**(coffers.get(k) or {}), **v} if isinstance(v, Mapping) else v
    return coffers


def state_dir_of(host: Host) -> str:
    """Where the host keeps coffers' state: its records and its lock (hostlock.py)."""
    return str(host.vars.get("state_dir", ENGINE_DEFAULTS["state_dir"]))


def deployment_for(host: Host, facts: Mapping[str, Any], conn: Connector | None, sources: Sources) -> tuple[Deployment, ModelSource]:
    """Plan and describe one host. Raises CoffersError subclasses (the host fails)."""
    coffers = checked_coffers(host_coffers(host, sources.overrides))
    src = model_source(coffers, host.inventory_dir, sources.model_cache)
    layout = read_model(src, conn, f"{host.address}:{host.port}")
    measured: Measured | None = None if sources.bench else load_bench_for_host(sources.bench_results, host.name)
    bench = sources.bench or (measured.bench if measured else None)
    policy = Policy.from_vars(coffers)
    found = _tuned(sources, facts, layout) if policy.strategy == "auto" and not sources.bench else None
    if found is not None:  # tokens/s of the very placements beat a bandwidth proxy
        bench = Bench(node_bandwidth=bench.node_bandwidth if bench else {}, strategy_speed=found.tokens_per_s, speed_unit="tokens/s")
    plan = with_note(plan_for_host(facts, layout, bench, policy), measured)
    if found is not None:
        plan = replace(plan, reasons=plan.reasons + (found.note,))
    weighted = bool((facts.get("system") or {}).get("weighted_interleave", False))
    state_dir = state_dir_of(host)
    dep = describe(host.name, plan, src, coffers, kernel_weighted_interleave=weighted, state_dir=state_dir)
    if dep.warnings:
        dep = replace(dep, plan=replace(plan, warnings=plan.warnings + dep.warnings))
    expected = coffers.get("model_sha256")
    if conn is not None and not src.upload and (sources.hash_model or expected is not None):
        hashes = identity.model_sha256(conn, dep.model_files, state_dir, write=sources.write_state)
        identity.check_expected(host.name, dep.model_files, hashes, expected)  # before anything restarts
        dep = replace(dep, model_sha256=hashes)
    return replace(dep, provenance=provenance(host, measured, found or sources.tune_run)), src


def provenance(host: Host, measured: Measured | None, found: tuned.Tuned | None) -> dict[str, Any]:
    """What decided this deployment: the tool, the bench and tune records it read, and the
    inventory's git commit (None outside git)."""
    return {
        "tool": {"name": "coffers-provision", "version": __version__},
        "bench": {"run_id": measured.run_id, "path": str(measured.path)} if measured else None,
        "tune": {"run_id": found.run_id, "path": str(found.path)} if found else None,
        "inventory": {"dir": str(Path(host.inventory_dir).resolve()), **(inventory_commit(str(Path(host.inventory_dir).resolve())) or {})},
    }


@cache
def inventory_commit(directory: str) -> dict[str, Any] | None:
    """The commit checked out where the inventory lives, and whether files differ from it."""
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", directory, *args], capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", "."))}


def _tuned(sources: Sources, facts: Mapping[str, Any], layout: ModelLayout) -> tuned.Tuned | None:
    """The newest tune records for this hardware and model, when there are any."""
    return tuned.lookup(sources.tune_dir, tuned.hardware(facts)["fingerprint"], tuned.model_identity(layout))
