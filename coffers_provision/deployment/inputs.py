"""One resolution of a host's inputs, used by `plan`, `apply`, `bench` and `tune` alike.

- the model: `coffers.model` is its path on the host; its header is read from
  `coffers.model_generate` (a small real model written here, then installed there),
  `coffers.model_local` (a local copy, relative to the inventory file), or the host
  itself over the connection;
- paths in the inventory (model_local, llama_build.source_archive) are relative to the
  inventory file, never to the working directory;
- measured results: the bench run `--bench-results` names (or results/latest).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from ..connect.base import Connector
from ..model import ModelLayout, read_layout, read_remote_layout
from ..planner import PlanError, PolicyError
from ..schema import problems

GENERATE_KEYS = {"layers": "n_layers", "dim": "dim", "heads": "n_head", "kv_heads": "n_head_kv", "ffn": "ffn", "context": "context_length", "seed": "seed"}
_gen_lock = threading.Lock()


def default_model_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "coffers-provision" / "models"


@dataclass(frozen=True)
class ModelSource:
    path: str  # the model's path on the host, as the service opens it
    local: Path | None  # where its header is read here; None: on the host
    upload: bool = False  # `local` is a generated model that apply installs at `path`


def inventory_path(host_dir: Path, value: str) -> Path:
    """A path written in the inventory: relative to the inventory file's folder."""
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else host_dir / p


def generated_model(spec: Mapping[str, Any], cache: Path) -> Path:
    """A small real llama GGUF written by modelgen, cached by its parameters (same bytes every time)."""
    from ..modelgen import write_llama

    kwargs = {GENERATE_KEYS[k]: v for k, v in spec.items()}  # the inventory schema checked the keys
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


def model_source(coffers: Mapping[str, Any], inventory_dir: Path, cache: Path | None = None) -> ModelSource:
    if not coffers.get("model"):
        raise PlanError("coffers.model is not set: the path of the GGUF model on the host")
    if coffers.get("model_generate") is not None:
        return ModelSource(coffers["model"], generated_model(coffers["model_generate"], cache or default_model_cache()), upload=True)
    if coffers.get("model_local"):
        return ModelSource(coffers["model"], inventory_path(inventory_dir, coffers["model_local"]))
    return ModelSource(coffers["model"], None)


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


class _RemoteLayouts:
    """Remote headers read once per (host address, path) within a run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], ModelLayout] = {}

    def get(self, conn: Connector, key: str, path: str) -> ModelLayout:
        with self._lock:
            if (key, path) in self._cache:
                return self._cache[(key, path)]
        layout = read_remote_layout(conn, path)
        with self._lock:
            self._cache[(key, path)] = layout
        return layout


_remote = _RemoteLayouts()


def read_model(src: ModelSource, conn: Connector | None, host_key: str = "") -> ModelLayout:
    """The model's tensor table, header only; `conn` is needed when it is read on the host."""
    if src.local is not None:
        return local_layout(src.local)
    if conn is None:
        raise PlanError(f"coffers.model {src.path} is read on the host, and no connection is open")
    return _remote.get(conn, host_key, src.path)


def checked_coffers(values: Mapping[str, Any]) -> Mapping[str, Any]:
    """A `coffers:` mapping checked against its one definition, the inventory's JSON Schema
    (command-line overrides go through here too); the first problem is the error."""
    found = problems("inventory", dict(values), ref="coffers", prefix="coffers")
    if found:
        raise PolicyError("; ".join(found[:3]))
    return values


def local_paths(coffers: Mapping[str, Any], inventory_dir: Path) -> dict[str, Any]:
    """The inventory's local paths made absolute (as a `coffers:` overlay for the play)."""
    build = coffers.get("llama_build") or {}
    if build.get("source_archive"):
        return {"llama_build": {"source_archive": str(inventory_path(inventory_dir, build["source_archive"]))}}
    return {}
