"""`apply` for one host: facts -> model layout -> plan -> play -> report.

Everything up to the play only reads (the host's facts, the model's header) and is pure
after that (the planner); the play is the only part that changes the host.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from ..bench.planning import load_bench_for_host, with_note
from ..bench.store import StoreError
from ..connect.base import Connector
from ..facts.cache import DEFAULT_FACTS_DIR, load_or_probe
from ..inventory import Host
from ..model import GGUFError, ModelLayout, read_layout, read_remote_layout
from ..planner import Plan, PlanError, PolicyError, Policy, plan_for_host
from ..resources import data_dir
from .result import HostReport
from .role import Play, load_play
from .runner import Options, play_vars, run_play
from .templating import TemplateError


def default_play_file() -> Path:
    return data_dir("roles") / "site.yml"


@dataclass
class ApplySettings:
    options: Options = field(default_factory=Options)
    facts_dir: Path = DEFAULT_FACTS_DIR
    refresh_facts: bool = False
    bench_results: Path | None = None  # a bench run: plan each host from its measurements
    model_cache: Path = field(default_factory=lambda: Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "coffers-provision" / "models")


# -- generated models (coffers.model_generate) -------------------------------------------

GENERATE_KEYS = {"layers": "n_layers", "dim": "dim", "heads": "n_head", "kv_heads": "n_head_kv", "ffn": "ffn", "context": "context_length", "seed": "seed"}
_gen_lock = threading.Lock()


def generated_model(spec: Mapping[str, Any], cache: Path) -> Path:
    """A small real llama GGUF written by modelgen, cached by its parameters (same bytes every time)."""
    from ..modelgen import write_llama

    unknown = sorted(set(spec) - set(GENERATE_KEYS))
    if unknown:
        raise PlanError(f"coffers.model_generate: unknown key(s) {', '.join(unknown)} (known: {', '.join(GENERATE_KEYS)})")
    kwargs = {GENERATE_KEYS[k]: v for k, v in spec.items()}
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in kwargs.values()):
        raise PlanError("coffers.model_generate: every value is a non-negative integer")
    key = hashlib.sha256(json.dumps(kwargs, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"llama-{key}.gguf"
    with _gen_lock:  # hosts share one file; the first to ask writes it
        if not path.exists():
            cache.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            try:
                write_llama(tmp, **kwargs)
            except ValueError as e:
                raise PlanError(f"coffers.model_generate: {e}") from None
            os.replace(tmp, path)
    return path


# -- the variables a play sees -------------------------------------------------------------


def _instances_view(plan: Plan) -> list[dict[str, Any]]:
    """Plan instances for the unit templates; replicas are named by their NUMA node."""
    out = []
    for inst in plan.instances:
        doc = inst.to_json()
        doc["instance"] = str(inst.numa_mask[0]) if plan.strategy == "replicate" and inst.numa_mask else inst.name
        out.append(doc)
    return out


def plan_summary(plan: Plan) -> dict[str, Any]:
    """What the host records in plan.json: the decisions, not the memory budgets of the moment."""
    doc = plan.to_json(tensors=False)
    return {
        "strategy": doc["strategy"],
        "shard_map": doc["shard_map"],
        "node_bytes": doc["node_bytes"],
        "model": doc["model"],
        "topology_fingerprint": doc["topology_fingerprint"],
        "instances": [
            {k: i[k] for k in ("name", "port", "cpu_affinity", "numa_policy", "numa_mask", "shard_map", "args")}
            for i in doc["instances"]
        ],
    }


def extra_vars(host: Host, facts: Mapping[str, Any], plan: Plan, generated: Path | None) -> dict[str, Any]:
    return {
        "inventory_hostname": host.name,
        "facts": facts,
        "plan": plan.to_json(tensors=False),
        "plan_summary": plan_summary(plan),
        "service_instances": _instances_view(plan),
        "model_generated": str(generated) if generated else None,
    }


# -- one host --------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _local_layout(path: str, mtime_ns: int, size: int) -> ModelLayout:
    return read_layout(path)


def local_layout(path: str | Path) -> ModelLayout:
    """A local model's layout, read once per file version however many hosts share it."""
    try:
        st = os.stat(path)
    except OSError:
        return read_layout(path)  # raises GGUFError naming the file
    return _local_layout(str(path), st.st_mtime_ns, st.st_size)


def layout_for(host: Host, conn: Connector, settings: ApplySettings) -> tuple[ModelLayout, Path | None]:
    coffers = host.coffers
    if "model" not in coffers:
        raise PlanError("coffers.model is not set: the path of the GGUF model on the host")
    if coffers.get("model_generate") is not None:
        path = generated_model(coffers["model_generate"], settings.model_cache)
        return local_layout(path), path
    if coffers.get("model_local"):
        return local_layout(coffers["model_local"]), None
    return read_remote_layout(conn, coffers["model"]), None


def apply_host(host: Host, conn: Connector, play: Play, settings: ApplySettings) -> HostReport:
    """Everything `apply` does on one host. ConnectError propagates (the host is unreachable)."""
    facts, _ = load_or_probe(host, conn, facts_dir=settings.facts_dir, refresh=settings.refresh_facts)
    try:
        layout, generated = layout_for(host, conn, settings)
        measured = load_bench_for_host(settings.bench_results, host.name)
        plan = with_note(plan_for_host(facts, layout, measured.bench if measured else None, Policy.from_vars(host.coffers)), measured)
        variables = play_vars(play, host.vars, extra_vars(host, facts, plan, generated))
    except (GGUFError, PlanError, PolicyError, TemplateError, StoreError) as e:
        return HostReport(host.name, error=str(e))
    return run_play(host.name, conn, play, variables, settings.options)


__all__ = ["ApplySettings", "apply_host", "default_play_file", "load_play"]
