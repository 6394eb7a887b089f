"""`tune` on one host: every variant deployed in turn, measured by llama-server itself.

For each variant (the strategies the planner finds feasible here, and the baselines a user
runs without this tool), on one host at a time:

1. the model is dropped from the page cache, so one variant's first touch does not carry
   over to the next;
2. the variant's exact unit command (placement steps, argv, environment, CPUs and memory
   policy: deployment/verify.transient) is started, waited for with the same /health check
   as `apply`, and warmed with one completion;
3. `requests` seeded, greedy completions of `n_predict` tokens are timed by the server's own
   `timings` (replicate: through its front-end, as clients use it); min, median and max
   are kept.

The host's units are stopped while it is measured. At the end the fastest variant is
deployed with `apply` and started, so the host is left serving.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..connect.base import Connector
from ..deployment.apply import ApplySettings, apply_host, play_extra
from ..deployment.describe import PLACE, Deployment
from ..deployment.host import deployment_for
from ..deployment.verify import check_units, endpoint_opener, log_tail, transient
from ..engine.modules import SYSTEMD_BOOTED
from ..engine.result import HostReport
from ..engine.role import Play
from ..engine.runner import play_vars
from ..errors import CoffersError, HostError
from ..facts.cache import load_or_probe
from ..inventory import Host
from ..model import ModelLayout
from ..planner import VARIANTS
from ..serving.health import Timings, completion, wait_healthy
from ..bench import tuned as records

PROMPT_WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "wizards", "hum")


@dataclass(frozen=True)
class TuneSettings:
    apply: ApplySettings
    tune_dir: Path
    variants: tuple[str, ...] = VARIANTS
    requests: int = 5
    n_predict: int = 32
    prompt_tokens: int = 64
    seed: int = 42


@dataclass
class Variant:
    name: str
    status: str  # measured | skipped | failed
    message: str = ""
    record: dict[str, Any] | None = None

    @property
    def tokens_per_s(self) -> float | None:
        return self.record["generation_tokens_per_s"]["median"] if self.record else None

    def to_json(self) -> dict[str, Any]:
        return {"variant": self.name, "status": self.status, "message": self.message, "record": self.record}


@dataclass
class TuneReport:
    host: str
    variants: list[Variant] = field(default_factory=list)
    install: HostReport | None = None
    final: HostReport | None = None
    winner: str | None = None
    stored: Path | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or (self.final is not None and self.final.failed)

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "winner": self.winner, "error": self.error, "stored": str(self.stored) if self.stored else None,
                "variants": [v.to_json() for v in self.variants],
                "final": self.final.to_json() if self.final else None}  # fmt: skip


def prompt(tokens: int) -> str:
    """A fixed prompt of about `tokens` tokens (one common English word is about one token)."""
    return " ".join(PROMPT_WORDS[i % len(PROMPT_WORDS)] for i in range(max(1, tokens)))


def _same_command(a: Deployment, b: Deployment) -> bool:
    """Two variants that start exactly the same processes measure the same thing."""
    return [(s.pre, s.launch, s.environment) for s in a.services] == [(s.pre, s.launch, s.environment) for s in b.services]


def _version(conn: Connector, llama_server: str) -> str:
    r = conn.run([llama_server, "--version"], timeout=60)
    lines = [ln.strip() for ln in (r.stdout + r.stderr).splitlines() if ln.strip().startswith("version")]
    return lines[0] if lines else "unknown"


def _measure(conn: Connector, dep: Deployment, state_dir: str, s: TuneSettings) -> tuple[list[Timings], float]:
    """Start the variant, wait, warm, time `s.requests` completions; stop it again."""
    text = prompt(s.prompt_tokens)
    place = f"{dep.prefix}/bin/{PLACE}"
    evict = conn.run([place, "--evict", *dep.model_files], timeout=600)
    if not evict.ok:
        raise HostError(f"dropping {dep.model} from the page cache failed: {(evict.stderr or evict.stdout).strip()}")
    with transient(conn, dep, state_dir) as running:
        healthy = 0.0
        for r in running:
            opener = endpoint_opener(conn, r.endpoint)
            try:
                healthy = max(healthy, wait_healthy(opener, dep.health_timeout_s, alive=r.alive))
                completion(opener, text, n_predict=s.n_predict, seed=s.seed)  # the warm-up (each replica its own copy)
            except HostError as e:
                raise HostError(f"{r.endpoint.unit}: {e}\n--- {r.log} ---\n{log_tail(conn, r.log)}") from None
        # what clients use: replicate's front-end (the last one started), else the instance
        ask = endpoint_opener(conn, running[-1].endpoint)
        timings = [completion(ask, text, n_predict=s.n_predict, seed=s.seed) for _ in range(s.requests)]
    return timings, healthy


def _record(name: str, dep: Deployment, facts: Any, layout: ModelLayout, version: str, timings: list[Timings],
            healthy: float, s: TuneSettings) -> dict[str, Any]:
    return {
        "variant": name,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hardware": records.hardware(facts),
        "model": {"path": dep.model, "bytes": layout.file_size, "identity": records.model_identity(layout),
                  **({"sha256": list(dep.model_sha256)} if dep.model_sha256 else {})},
        "llama_server": {"path": dep.llama_server, "version": version},
        "deployment_fingerprint": dep.to_json()["fingerprint"],
        "cpus": dep.services[0].cpus,
        "instances": len(dep.services),
        "requests": s.requests,
        "n_predict": s.n_predict,
        "prompt_tokens": timings[0].prompt_tokens,
        "generation_tokens_per_s": records.figures([t.predicted_per_second for t in timings]),
        "prompt_tokens_per_s": records.figures([t.prompt_per_second for t in timings]),
        "seconds_to_healthy": round(healthy, 3),
    }


def _units(conn: Connector, dep: Deployment, action: str) -> None:
    for svc in dep.services:
        r = conn.run(["systemctl", action, svc.unit], timeout=300)
        if not r.ok and action == "start":
            raise HostError(f"systemctl start {svc.unit}: {(r.stderr or r.stdout).strip()}")


def tune_host(host: Host, conn: Connector, play: Play, s: TuneSettings, run_id: str) -> TuneReport:
    """Everything `tune` does on one host. ConnectError propagates (the host is unreachable)."""
    report = TuneReport(host.name)
    report.install = apply_host(host, conn, play, s.apply)  # tools, model and llama-server in place
    if report.install.failed or report.install.error:
        failed = [f"{t.role}/{t.task}: {t.message}" for t in report.install.results if t.status.value == "failed"]
        report.error = report.install.error or "the first apply failed, nothing was measured: " + "; ".join(failed)
        return report
    facts, _ = load_or_probe(host, conn, facts_dir=s.apply.facts_dir)
    current, src = deployment_for(host, facts, conn, s.apply.sources)
    state_dir = str(play_vars(play, host.vars, play_extra(host, facts, current, src))["state_dir"])
    booted = conn.run(SYSTEMD_BOOTED).ok
    if booted:
        _units(conn, current, "stop")
    version = _version(conn, current.llama_server)
    tried: list[tuple[str, Deployment]] = []
    for name in s.variants:
        try:
            dep, _ = deployment_for(host, facts, conn, replace(s.apply.sources, overrides={**(s.apply.sources.overrides or {}), "strategy": name}))
        except CoffersError as e:
            report.variants.append(Variant(name, "skipped", f"not feasible here: {e}"))
            continue
        twin = next((n for n, d in tried if _same_command(d, dep)), None)
        if twin is not None:
            report.variants.append(Variant(name, "skipped", f"starts exactly what {twin} starts on this host"))
            continue
        tried.append((name, dep))
        start = time.monotonic()
        try:
            timings, healthy = _measure(conn, dep, state_dir, s)
        except HostError as e:
            report.variants.append(Variant(name, "failed", str(e)))
            continue
        rec = _record(name, dep, facts, current.plan.layout, version, timings, healthy, s)
        g = rec["generation_tokens_per_s"]
        report.variants.append(Variant(name, "measured", f"generation {g['median']:.2f} tokens/s (min {g['min']:.2f}, max {g['max']:.2f}) "
                                                          f"in {time.monotonic() - start:.0f} s", rec))
    measured = [v for v in report.variants if v.record]
    if measured:
        report.stored = records.write_host(s.tune_dir, run_id, host.name, [v.record for v in measured if v.record])
        report.winner = max(measured, key=lambda v: v.tokens_per_s or 0.0).name
    final_strategy = report.winner or current.plan.strategy
    decided = records.Tuned({v.name: v.tokens_per_s or 0.0 for v in measured}, report.stored, run_id) if report.stored else None
    final_sources = replace(s.apply.sources, overrides={**(s.apply.sources.overrides or {}), "strategy": final_strategy}, tune_run=decided)
    report.final = apply_host(host, conn, play, replace(s.apply, sources=final_sources))
    if booted and not report.final.failed:
        final, _ = deployment_for(host, facts, conn, final_sources)
        try:
            _units(conn, final, "start")  # a no-op where the final apply restarted them
            check_units(conn, final)
        except HostError as e:
            report.error = str(e)
    if not measured:
        report.error = report.error or "no variant could be measured: " + "; ".join(f"{v.name}: {v.message.splitlines()[0]}" for v in report.variants)
    return report


def ratios(report: TuneReport, base: str = "distribute") -> dict[str, float]:
    """Each measured variant's generation tokens/s over the baseline's (when it was measured)."""
    ref = next((v.tokens_per_s for v in report.variants if v.name == base and v.tokens_per_s), None)
    return {v.name: v.tokens_per_s / ref for v in report.variants if ref and v.tokens_per_s} if ref else {}
