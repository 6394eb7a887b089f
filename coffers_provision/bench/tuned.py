"""Tune records: what one variant measured on one kind of hardware with one model.
`tune` writes them; `plan` and `apply` read them (deployment/host.py) for `strategy: auto`.

    results/tune/
      20261204T181500Z/       one tune run (UTC timestamp ids sort by time)
        <host>.json           schemas/tune-result.schema.json: one record per variant

A record holds for every host of the same hardware and model, so the lookup `plan` and
`apply` make is by (hardware fingerprint, model identity), newest run first. Files are
written to a temp name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .store import host_file, new_run_id
from ..errors import CoffersError
from ..model import ModelLayout
from .. import schema
from ..topology import Topology

TUNE_DIR = Path("results") / "tune"
FORMAT = 1


class TuneStoreError(CoffersError):
    """A tune result that cannot be read; the message names the file."""


def problems(doc: Any) -> list[str]:
    return schema.problems("tune-result", doc)


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def hardware(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The hardware a figure holds for: CPU model, sockets, DMI product and the topology's
    shape (memory per node rounded to a GiB). No serial and no free memory: identical
    machines share records, and a reboot or re-probe does not change the key."""
    cpu = facts.get("cpu") or {}
    hw = facts.get("hardware") or {}
    topo = Topology.from_json(facts.get("numa") or facts["topology"]).fingerprint()
    shape = {"cpu_model": cpu.get("model"), "sockets": cpu.get("sockets"), "product": hw.get("product"), "topology": topo}
    return {"fingerprint": _hash(shape), **shape}


def model_identity(layout: ModelLayout) -> str:
    """The model as its header describes it: file size and the tensor table (names, types,
    shapes, offsets). Cheap (the header is read anyway) and changes with any re-quantisation."""
    table = [[t.name, t.type, list(t.shape), t.offset] for t in layout.tensors]
    return _hash([layout.file_size, layout.architecture, layout.data_offset, table])


def figures(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {"min": round(ordered[0], 3), "median": round(median, 3), "max": round(ordered[-1], 3)}


def write_host(tune_dir: Path, run_id: str, host: str, records: list[dict[str, Any]]) -> Path:
    """Store one host's records of run `run_id`; an invalid record is a bug and never lands."""
    doc = {"format": FORMAT, "run_id": run_id, "host": host, "records": records}
    if errs := problems(doc):
        raise TuneStoreError(f"{host}: the tune result breaks schemas/tune-result.schema.json: {'; '.join(errs[:3])}")
    run = tune_dir / run_id
    run.mkdir(parents=True, exist_ok=True)
    path = run / f"{host_file(host)}.json"
    fd, tmp = tempfile.mkstemp(dir=run, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def run_id() -> str:
    return new_run_id()


def read_host(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise TuneStoreError(f"{path}: cannot read: {e}") from None
    if errs := problems(doc):
        raise TuneStoreError(f"{path}: not a tune result: {'; '.join(errs[:3])}")
    return doc


@dataclass(frozen=True)
class Tuned:
    """The newest measured figures for one hardware and model, and where they came from."""

    tokens_per_s: dict[str, float]  # variant -> median generation tokens/s
    path: Path
    run_id: str

    @property
    def note(self) -> str:
        return f"measured: tune run {self.run_id}, {self.path} (generation tokens/s)"


def lookup(tune_dir: Path | None, hw_fingerprint: str, model: str) -> Tuned | None:
    """The newest run with records for this hardware and model (any host of it), or None."""
    if tune_dir is None or not tune_dir.is_dir():
        return None
    for run in sorted((p for p in tune_dir.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True):
        for path in sorted(run.glob("*.json")):
            doc = read_host(path)
            found = {r["variant"]: r["generation_tokens_per_s"]["median"] for r in doc["records"]
                     if r["hardware"]["fingerprint"] == hw_fingerprint and r["model"]["identity"] == model}
            if found:
                return Tuned(found, path, run.name)
    return None
