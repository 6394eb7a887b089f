"""The results store: plain files under one directory, meant to be kept in git.

    results/
      20250301T101500Z/           one run; ids are UTC timestamps, so they sort by time
        run.json                  when, with what settings, and every host's outcome
        <host>.json               the numa-shard-bench result, exactly as the tool printed it
        <host>.facts.json         the host's facts the run used
        summary.csv               one row per host and node (failed hosts: one row with the error)
        <host>.heatmap.png        with --plot, and fleet.png
      latest -> 20250301T101500Z  the newest run with at least one result (a relative symlink)

A run is written in a hidden temp directory and renamed into place, so a reader never sees
half a run; `latest` is replaced by renaming a new symlink over it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping


from ..errors import CoffersError
from .. import schema

DEFAULT_RESULTS_DIR = Path("results")
LATEST = "latest"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.csv"
RUN_FORMAT = 1  # run.json's "format"; bump on an incompatible change
_RUN_ID = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")

SUMMARY_COLUMNS = (
    "host", "status", "cpu_model", "node", "kind", "cpu_node", "threads", "read_gbps", "copy_gbps", "triad_gbps",
    "latency_ns", "placement", "shard_gbps", "interleave_gbps", "replicate_gbps", "best", "tool_version", "compiler",
    "size_mb", "iterations", "meets_4x_llc", "error",
)  # fmt: skip


class StoreError(CoffersError):
    """A run or result that cannot be read; the message names the file (and field)."""


# -- results ----------------------------------------------------------------------------


def result_errors(doc: Any) -> list[str]:
    """What is wrong with a bench result, as `json.path: message` (empty when it is valid)."""
    return schema.problems("bench-result", doc)


def host_file(host: str) -> str:
    """A host name as a file name (a name with a slash would escape the run directory)."""
    return host.replace(os.sep, "_")


def node_kind(node: Mapping[str, Any]) -> str:
    return "cpu+memory" if node["cpus"] else "memory-only"


# -- writing ----------------------------------------------------------------------------


@dataclass
class HostRecord:
    """One host's part of a run: its result and facts when it succeeded, else why not."""

    host: str
    status: str  # ok | failed | unreachable
    result: dict[str, Any] | None = None
    facts: dict[str, Any] | None = None
    error: str | None = None
    elapsed_s: float = 0.0
    installed: list[str] = field(default_factory=list)  # what installing the tool changed


def new_run_id(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def summary_rows(records: Iterable[HostRecord]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        if r.result is None:
            rows.append({"host": r.host, "status": r.status, "error": r.error})
            continue
        res, p, s = r.result, r.result["parameters"], r.result["strategies"]
        common = {
            "host": r.host, "status": r.status, "cpu_model": res["host"]["cpu_model"], "shard_gbps": s["shard"]["read"],
            "interleave_gbps": s["interleave"]["read"], "replicate_gbps": s["replicate"]["read"], "best": s["best"],
            "tool_version": res["tool"]["version"], "compiler": res["tool"]["compiler"], "size_mb": p["size_mb"],
            "iterations": p["iterations"], "meets_4x_llc": p["meets_4x_llc"],
        }  # fmt: skip
        for n in res["nodes"]:
            rows.append({
                **common, "node": n["id"], "kind": node_kind(n), "cpu_node": n["cpu_node"], "threads": n["threads"],
                "read_gbps": n["read"], "copy_gbps": n["copy"], "triad_gbps": n["triad"], "latency_ns": n["latency_ns"],
                "placement": n["placement"],
            })  # fmt: skip
    return rows


def _dump(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=2) + "\n")


def write_run(
    results_dir: Path,
    records: list[HostRecord],
    settings: Mapping[str, Any],
    *,
    started: datetime,
    finished: datetime,
    run_id: str | None = None,
) -> Path:
    """Store one run and return its directory. Results are validated first: an invalid one
    is a bug upstream, and it must not land in the store."""
    for r in records:
        if r.result is not None and (problems := result_errors(r.result)):
            raise StoreError(f"{r.host}: the bench result breaks schemas/bench-result.schema.json: {'; '.join(problems[:3])}")
    results_dir.mkdir(parents=True, exist_ok=True)
    run_id = run_id or new_run_id(started)
    tmp = Path(tempfile.mkdtemp(dir=results_dir, prefix=f".{run_id}."))
    try:
        hosts: dict[str, Any] = {}
        for r in records:
            entry: dict[str, Any] = {"status": r.status, "error": r.error, "elapsed_s": round(r.elapsed_s, 3)}
            if r.result is not None:
                name = host_file(r.host)
                _dump(tmp / f"{name}.json", r.result)
                entry.update(result=f"{name}.json", tool=r.result["tool"], installed=r.installed)
                if r.facts is not None:
                    _dump(tmp / f"{name}.facts.json", r.facts)
                    entry["facts"] = f"{name}.facts.json"
                    entry["gcc"] = (r.facts.get("toolchain") or {}).get("gcc")
            hosts[r.host] = entry
        _dump(tmp / RUN_FILE, {
            "format": RUN_FORMAT,
            "run_id": run_id,
            "started_at": started.astimezone(timezone.utc).isoformat(timespec="seconds"),
            "finished_at": finished.astimezone(timezone.utc).isoformat(timespec="seconds"),
            "settings": dict(settings),
            "hosts": hosts,
        })  # fmt: skip
        with open(tmp / SUMMARY_FILE, "w", newline="") as f:
            w = csv.DictWriter(f, SUMMARY_COLUMNS, extrasaction="raise")
            w.writeheader()
            w.writerows(summary_rows(records))
        tmp.chmod(0o755)
        final = _claim(results_dir, run_id, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if any(r.result is not None for r in records):
        point_latest(results_dir, final.name)
    return final


def _claim(results_dir: Path, run_id: str, tmp: Path) -> Path:
    """Rename `tmp` to the run id, or to `<id>-N` when a run of the same second exists."""
    for n in range(1000):
        final = results_dir / (run_id if n == 0 else f"{run_id}-{n}")
        try:
            os.rename(tmp, final)  # fails when `final` exists (non-empty directory)
            return final
        except OSError:
            if not final.exists():
                raise
    raise StoreError(f"{results_dir}: too many runs named {run_id}")


def point_latest(results_dir: Path, run_id: str) -> None:
    link = results_dir / LATEST
    tmp = results_dir / f".{LATEST}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(run_id, tmp)
    os.replace(tmp, link)


# -- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    run_id: str
    path: Path
    meta: dict[str, Any]
    results: dict[str, dict[str, Any]]  # host -> bench result (ok hosts, in run order)

    def facts(self, host: str) -> dict[str, Any] | None:
        name = (self.meta["hosts"].get(host) or {}).get("facts")
        return json.loads((self.path / name).read_text()) if name else None

    def failed(self) -> dict[str, str]:
        """host -> error, for the hosts without a result."""
        return {h: e.get("error") or e["status"] for h, e in self.meta["hosts"].items() if e["status"] != "ok"}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise StoreError(f"{path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise StoreError(f"{path}:{e.lineno}:{e.colno}: not JSON: {e.msg}") from None


def read_result(path: Path) -> dict[str, Any]:
    doc = _read_json(path)
    if problems := result_errors(doc):
        raise StoreError(f"{path}: not a numa-shard-bench result: " + "; ".join(problems[:5]))
    return doc


def load_run(path: Path) -> Run:
    path = Path(path)
    meta = _read_json(path / RUN_FILE)
    if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT or not isinstance(meta.get("hosts"), dict):
        raise StoreError(f"{path / RUN_FILE}: not a bench run (format {RUN_FORMAT})")
    results = {}
    for host, entry in meta["hosts"].items():
        if entry.get("result"):
            results[host] = read_result(path / entry["result"])
    return Run(str(meta.get("run_id") or path.resolve().name), path, meta, results)


def list_runs(results_dir: Path) -> list[str]:
    try:
        return sorted(p.name for p in Path(results_dir).iterdir() if _RUN_ID.match(p.name) and p.is_dir())
    except OSError:
        return []


def resolve_run(results_dir: Path, ref: str | None) -> Path:
    """A run directory from a reference: a path to a run, a run id, `latest`, or None (latest)."""
    ref = ref or LATEST
    candidates = [Path(ref), Path(results_dir) / ref]
    for c in candidates:
        if (c / RUN_FILE).is_file():
            return c
        if (c / LATEST / RUN_FILE).is_file():  # a results directory: its latest run
            return c / LATEST
    runs = list_runs(results_dir)
    known = f"runs in {results_dir}: {', '.join(runs[-5:])}" if runs else f"no runs in {results_dir}"
    raise StoreError(f"no bench run {ref!r} ({known})")
