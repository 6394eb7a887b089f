"""Run numa-shard-bench on one host: facts, install (the native_tools role), run, validate.

Installing goes through the apply engine with only the native_tools role of
roles/bench.yml, so the tool is built exactly as `apply` builds it and rebuilt only when its
sources, the compiler or the flags changed (the build module's stamp). A rebuild notifies
the service's restart handler, which stays pending on the host for the next `apply`.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from ..connect.base import ConnectError, Connector
from ..engine.result import Status
from ..engine.role import Play, load_play
from ..engine.runner import Options, play_vars, run_play
from ..facts.cache import DEFAULT_FACTS_DIR, load_or_probe
from ..fanout import HostFailed
from ..inventory import Host
from ..resources import data_dir
from .store import HostRecord, result_errors

TOOL = "numa-shard-bench"
DEFAULT_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class BenchSettings:
    """One host's bench parameters: the inventory's `coffers.bench`, then the command line.

    None leaves the tool's own default (docs/native-tools.md)."""

    size_mb: int | None = None
    iterations: int | None = None
    threads: int | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    serial: bool = False

    def merged(self, coffers_bench: Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> BenchSettings:
        """The inventory's values over these defaults, then the non-None `overrides` over both."""
        known = ("size_mb", "iterations", "threads", "timeout_s", "serial")
        values = {k: v for k, v in (coffers_bench or {}).items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None and k in known})
        return replace(self, **values)

    def argv(self, binary: str) -> list[str]:
        words = [binary, "--json"]
        for flag, value in (("--size-mb", self.size_mb), ("--iterations", self.iterations), ("--threads", self.threads)):
            if value is not None:
                words += [flag, str(value)]
        return words

    def to_json(self) -> dict[str, Any]:
        return {"size_mb": self.size_mb, "iterations": self.iterations, "threads": self.threads,
                "timeout_s": self.timeout_s, "serial": self.serial}  # fmt: skip


def install_play() -> Play:
    """roles/bench.yml: the native_tools role, which builds the tool."""
    return load_play(data_dir("roles") / "bench.yml")


def install(host: Host, conn: Connector, play: Play) -> tuple[str, list[str]]:
    """Build and install the tool when missing or stale: (binary path, what changed)."""
    variables = play_vars(play, host.vars)
    report = run_play(host.name, conn, play, variables, Options())
    if report.unreachable:
        raise ConnectError(report.unreachable)
    failed = [r for r in report.results if r.status is Status.FAILED]
    if report.error or failed:
        why = report.error or f"{failed[0].task}: {failed[0].message}"
        raise HostFailed(f"installing {TOOL} failed: {why}")
    changed = [r.task for r in report.results if r.status is Status.CHANGED]
    return f"{variables['prefix']}/bin/{TOOL}", changed


def parse_output(stdout: str) -> dict[str, Any]:
    """The tool's JSON, checked against schemas/bench-result.schema.json."""
    try:
        doc = json.loads(stdout)
    except json.JSONDecodeError as e:
        raise HostFailed(f"{TOOL} printed no JSON (line {e.lineno}, column {e.colno}: {e.msg}): {stdout[:200]!r}") from None
    if problems := result_errors(doc):
        raise HostFailed(f"{TOOL} result breaks schemas/bench-result.schema.json: " + "; ".join(problems[:3]))
    if not doc["validation"]["ok"]:
        raise HostFailed(f"{TOOL}: the kernels' results did not validate (max relative error {doc['validation']['max_relative_error']})")
    return doc


def bench_host(
    host: Host,
    conn: Connector,
    settings: BenchSettings,
    *,
    play: Play | None,
    facts_dir: Path = DEFAULT_FACTS_DIR,
    refresh_facts: bool = False,
) -> HostRecord:
    """Everything `bench` does on one host. `play` None: run the tool already installed."""
    start = time.monotonic()
    facts, _ = load_or_probe(host, conn, facts_dir=facts_dir, refresh=refresh_facts)
    installed: list[str] = []
    if play is not None:
        binary, installed = install(host, conn, play)
    else:
        binary = f"{play_vars(install_play(), host.vars)['prefix']}/bin/{TOOL}"
    result = conn.run(shlex.join(settings.argv(binary)), timeout=settings.timeout_s)
    if not result.ok:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
        raise HostFailed(f"{TOOL} exited {result.rc}: {' / '.join(detail) or 'no message'}")
    doc = parse_output(result.stdout)
    return HostRecord(host.name, "ok", doc, facts, None, time.monotonic() - start, installed)
