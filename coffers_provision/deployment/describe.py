"""The deployment description: one immutable value per host, from plan to argv.

`describe` turns a host's plan into everything the host will run: each instance's unit
name, port, CPU list, memory policy, full ExecStart argv and environment, the placement
tool's argv, and the same command for hosts where systemd is not PID 1. `plan` prints
this value, `apply` deploys exactly it (the templates only format its fields) and
records it on the host. How each strategy gets its pages where the plan says is decided
here and nowhere else (docs/strategies.md):

- shard: GGML_NUMA_SHARD_MAP in the environment; numa-shard-place binds each tensor's
  page-cache pages to its node before the server maps the file;
- replicate: one instance per node, each reading the model into its own memory
  (--no-mmap) under a memory policy bound to its node, so no two share a page;
- interleave / weighted-interleave: numa-shard-place re-places the page cache page by
  page over the nodes (by weight), and the process policy interleaves what the server
  allocates itself (the KV cache);
- baselines (measured by `tune`, never better placed than a user would): distribute and
  interleave-all drop the model from the page cache first, so the server's first touch
  (--numa distribute, or the interleave policy over every node) decides; one-node is a
  shard map on one node, with that node's CPUs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from ..model import part_paths
from ..planner import Instance, Plan, Policy
from ..topology import format_cpulist
from .inputs import ModelSource

UNIT_PREFIX = "coffers-"
PLACE = "numa-shard-place"
SHARDED = ("shard", "one-node")  # placed by GGML_NUMA_SHARD_MAP
COLD = ("distribute", "interleave-all")
LOOPBACK = "127.0.0.1"
HAPROXY = "/usr/sbin/haproxy"  # Debian's load balancer (scripts/bootstrap installs it here)  # baselines: the page cache dropped, then first touch
# Health: a server gets this long to load, plus the model read at a slow disk's pace.
HEALTH_BASE_S = 60.0
HEALTH_LOAD_BYTES_PER_S = 50 * 2**20


def health_timeout_s(model_bytes: int, override: float | None = None) -> float:
    """How long /health may take to answer 200 after a (re)start: 60 s + 1 s per 50 MiB of
    model (a cold read from a slow disk, or a TCG guest), unless the inventory says."""
    return float(override) if override is not None else HEALTH_BASE_S + model_bytes / HEALTH_LOAD_BYTES_PER_S


@dataclass(frozen=True)
class Service:
    """One llama-server instance as the host runs it."""

    name: str  # the plan's instance name
    unit: str  # coffers-llama.service, or coffers-llama@0.service for a per-node instance
    instance: str | None  # the template instance (the node id) when one unit serves several
    host: str
    port: int
    argv: tuple[str, ...]  # ExecStart
    pre: tuple[tuple[str, ...], ...]  # ExecStartPre, in order
    environment: tuple[tuple[str, str], ...]
    cpus: str | None  # CPUAffinity
    numa_policy: str | None  # systemd's NUMAPolicy= (None: leave the default)
    numa_mask: tuple[int, ...]
    launch: tuple[str, ...]  # argv that runs `argv` with the same CPUs and policy, without systemd

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "unit": self.unit, "instance": self.instance, "host": self.host, "port": self.port,
            "argv": list(self.argv), "pre": [list(p) for p in self.pre], "environment": dict(self.environment),
            "cpus": self.cpus, "numa_policy": self.numa_policy, "numa_mask": list(self.numa_mask), "launch": list(self.launch),
        }  # fmt: skip


@dataclass(frozen=True)
class Frontend:
    """replicate's one endpoint: a load balancer on the service port over the per-node
    instances, health-checking each (a dead instance gets no requests)."""

    unit: str  # coffers-llama-frontend.service
    host: str
    port: int
    config: str  # path of its config file on the host
    backends: tuple[tuple[str, str, int], ...]  # (instance name, address, port)
    argv: tuple[str, ...]  # ExecStart (master-worker, readiness told to systemd)
    check: tuple[str, ...]  # the config check, ExecStartPre and before every write
    launch: tuple[str, ...]  # the same, without systemd (its config under <state_dir>/run/)
    launch_config: str  # where `launch` reads the config from
    text: str  # the config itself

    def to_json(self) -> dict[str, Any]:
        return {"unit": self.unit, "host": self.host, "port": self.port, "config": self.config,
                "backends": [{"name": n, "address": a, "port": p} for n, a, p in self.backends],
                "argv": list(self.argv), "check": list(self.check), "launch": list(self.launch),
                "launch_config": self.launch_config, "text": self.text}  # fmt: skip


@dataclass(frozen=True)
class Deployment:
    host: str
    plan: Plan = field(repr=False)
    model: str  # path on the host (the first part of a split model: what llama-server opens)
    model_bytes: int
    prefix: str
    llama_server: str
    unit_base: str  # coffers-llama
    template: bool  # one template unit with an instance per node (replicate)
    services: tuple[Service, ...]
    user: str | None
    restart_sec: float
    limit_memlock: bool
    health_timeout_s: float
    verify: bool = True  # ask the server after a (re)start
    frontend: Frontend | None = None  # replicate: one endpoint over the instances
    warnings: tuple[str, ...] = ()
    model_parts: tuple[str, ...] = ()  # every file of a split model, in order; () for one file
    model_sha256: tuple[str, ...] = ()  # each file's sha256 where it was hashed (deployment/identity.py)

    @property
    def model_files(self) -> tuple[str, ...]:
        """The files the model's pages come from: its parts, or the one file."""
        return self.model_parts or (self.model,)
    # what decided it (tool version, bench and tune records, inventory commit): recorded
    # beside the description, never part of it, so a new commit is no drift
    provenance: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def unit_file(self) -> str:
        return f"{self.unit_base}@.service" if self.template else f"{self.unit_base}.service"

    @property
    def secrets(self) -> list[str]:
        """Values never shown in a diff or JSON: the environment the user supplied."""
        planned = {"GGML_NUMA_SHARD_MAP"}
        return sorted({v for s in self.services for k, v in s.environment if k not in planned and len(v) >= 4})

    def to_json(self, *, mask: bool = True) -> dict[str, Any]:
        """The description as recorded on the host and printed by `plan --json`; the user's
        environment values are masked unless `mask` is false (the units need them)."""
        doc = {
            "host": self.host,
            "strategy": self.plan.strategy,
            "model": {"path": self.model, "bytes": self.model_bytes, "architecture": self.plan.layout.architecture,
                      **({"parts": list(self.model_parts)} if self.model_parts else {})},
            "shard_map": self.plan.shard_map,
            "topology_fingerprint": self.plan.topology_fingerprint,
            "prefix": self.prefix,
            "llama_server": self.llama_server,
            "unit_file": self.unit_file,
            "template": self.template,
            "user": self.user,
            "restart_sec": self.restart_sec,
            "limit_memlock": self.limit_memlock,
            "health_timeout_s": self.health_timeout_s,
            "verify": self.verify,
            "services": [s.to_json() for s in self.services],
            "frontend": self.frontend.to_json() if self.frontend else None,
        }
        doc["fingerprint"] = fingerprint(doc)
        if mask:
            hidden = set(self.secrets)
            for s in doc["services"]:
                s["environment"] = {k: ("********" if v in hidden else v) for k, v in s["environment"].items()}
        return doc


def fingerprint(doc: Mapping[str, Any]) -> str:
    """A hash of what the host runs: equal descriptions, equal fingerprints."""
    body = {k: v for k, v in doc.items() if k != "fingerprint"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


# -- building it ------------------------------------------------------------------------


def llama_args(inst: Instance, model: str, *, mlock: bool, no_mmap: bool, extra: tuple[str, ...], legacy: bool = False) -> list[str]:
    """llama-server's arguments for one instance, all in this one place."""
    out = ["-m", model, "--host", inst.host, "--port", str(inst.port)]
    if inst.threads:
        out += ["-t", str(inst.threads), "-tb", str(inst.threads_batch)]
    if inst.numa:
        out += ["--numa", inst.numa]
    out += ["-c", str(inst.context_length * inst.parallel), "-np", str(inst.parallel)]
    if inst.kv_cache_type != "f16":
        out += ["-ctk", inst.kv_cache_type, "-ctv", inst.kv_cache_type]
    out += _load_flags(no_mmap=no_mmap, mlock=mlock, legacy=legacy)
    return out + list(extra)


def _load_flags(*, no_mmap: bool, mlock: bool, legacy: bool) -> list[str]:
    """How the model is loaded. llama.cpp replaced --no-mmap/--mlock by --load-mode (the
    pinned source has only the latter); `coffers.service.load_flags: legacy` is for older
    servers."""
    if legacy:
        return (["--no-mmap"] if no_mmap else []) + (["--mlock"] if mlock else [])
    if no_mmap:
        return ["--load-mode", "mlock" if mlock else "none"]
    return ["--load-mode", "mmap+mlock"] if mlock else []


def _nodes(ids: tuple[int, ...] | list[int]) -> str:
    return format_cpulist(sorted(ids))


def _weights(weights: Mapping[int, int]) -> str:
    return ",".join(f"{n}:{w}" for n, w in sorted(weights.items()))


def _placement(plan: Plan, place: str, files: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """numa-shard-place before the server starts: the page cache where the strategy wants it
    (every part of a split model: the map names tensors, each part places its own)."""
    if plan.strategy in SHARDED and plan.shard_map:
        return tuple((place, f) for f in files)  # the map comes from GGML_NUMA_SHARD_MAP
    if plan.strategy in COLD:  # the baselines as users run them: first touch decides
        return ((place, "--evict", *files),)
    if plan.strategy in ("interleave", "weighted-interleave") and len(plan.instances[0].numa_mask) > 1:
        argv = [place, "--interleave", _nodes(plan.instances[0].numa_mask)]
        if plan.strategy == "weighted-interleave" and plan.interleave_weights:
            argv += ["--weights", _weights(plan.interleave_weights)]
        return (tuple(argv + list(files)),)
    return ()


def _process_policy(plan: Plan, inst: Instance, kernel_weighted: bool) -> tuple[str | None, list[str]]:
    """(systemd NUMAPolicy, exec-wrapper flags): what the server's own allocations follow."""
    policy = inst.numa_policy
    if policy == "weighted-interleave":
        if kernel_weighted and plan.interleave_weights:
            return None, ["--policy", "weighted-interleave", "--nodes", _nodes(inst.numa_mask), "--weights", _weights(plan.interleave_weights)]
        policy = "interleave"  # the model's pages still follow the weights (placement above)
    if policy is None or not inst.numa_mask:
        return None, []
    return policy, ["--policy", policy, "--nodes", _nodes(inst.numa_mask)]


def describe(
    host: str,
    plan: Plan,
    model: ModelSource,
    coffers: Mapping[str, Any],
    *,
    kernel_weighted_interleave: bool = False,
    state_dir: str = "/var/lib/coffers",
) -> Deployment:
    """The deployment of `plan` on `host`, from the host's validated `coffers:` settings."""
    prefix = str(coffers.get("prefix", "/usr/local"))
    service = dict(coffers.get("service") or {})
    llama_server = str(coffers.get("llama_server") or f"{prefix}/bin/llama-server")
    place = f"{prefix}/bin/{PLACE}"
    base = UNIT_PREFIX + str(service.get("name", "llama"))
    replicate = plan.strategy == "replicate"
    mlock = bool(coffers.get("mlock", False))
    user_env = tuple((str(k), str(v)) for k, v in (service.get("environment") or {}).items())
    extra = tuple(str(a) for a in service.get("extra_args") or ())
    warnings: list[str] = []
    if plan.strategy == "weighted-interleave" and not kernel_weighted_interleave:
        warnings.append("the kernel has no weighted interleave (Linux 6.9+): the model's pages follow the weights, "
                        "the server's own allocations (KV cache) are interleaved evenly")
    parts = tuple(part_paths(model.path, len(plan.layout.parts))) if plan.layout.parts else ()
    path = parts[0] if parts else model.path  # llama.cpp loads a split model from its first part
    pre = _placement(plan, place, parts or (path,))
    services = []
    for inst in plan.instances:
        if replicate:  # only the front-end listens where clients connect
            inst = replace(inst, host=LOOPBACK)
        argv = (llama_server, *llama_args(inst, path, mlock=mlock, no_mmap=replicate, extra=extra,
                                          legacy=service.get("load_flags") == "legacy"))
        numa_policy, wrap = _process_policy(plan, inst, kernel_weighted_interleave)
        if wrap and numa_policy is None:  # systemd has no such policy: the wrapper sets it
            argv = (place, "--exec", *wrap, "--", *argv)
        env = ((("GGML_NUMA_SHARD_MAP", inst.shard_map),) if plan.strategy in SHARDED and inst.shard_map else ()) + user_env
        instance = (str(inst.numa_mask[0]) if inst.numa_mask else str(len(services))) if replicate else None
        launch = [place, "--exec"]
        if inst.cpu_affinity:
            launch += ["--cpus", inst.cpu_affinity]
        launch += wrap if numa_policy is not None else []
        services.append(Service(
            name=inst.name, unit=f"{base}@{instance}.service" if instance is not None else f"{base}.service",
            instance=instance, host=inst.host, port=inst.port, argv=argv, pre=pre, environment=env,
            cpus=inst.cpu_affinity, numa_policy=numa_policy, numa_mask=inst.numa_mask if numa_policy else (),
            launch=tuple(launch + ["--", *argv]),
        ))
    frontend = _frontend(base, service, services, state_dir) if replicate else None
    return Deployment(
        host=host, plan=plan, model=path, model_parts=parts, model_bytes=plan.layout.total_bytes, prefix=prefix,
        llama_server=llama_server, unit_base=base, template=replicate, services=tuple(services),
        user=service.get("user"), restart_sec=float(service.get("restart_sec", 5)), limit_memlock=mlock,
        health_timeout_s=health_timeout_s(plan.layout.total_bytes, service.get("health_timeout_s")),
        verify=bool(service.get("verify", True)), frontend=frontend,
        warnings=tuple(warnings),
    )


def _frontend(base: str, service: Mapping[str, Any], services: list[Service], state_dir: str) -> Frontend:
    config = f"{state_dir.rstrip('/')}/{base}-frontend.cfg"
    transient = f"{state_dir.rstrip('/')}/run/{base}-frontend.cfg"
    host, port = str(service.get("host", Policy.service_host)), int(service.get("port", Policy.service_port))
    backends = tuple((s.name, s.host, s.port) for s in services)
    return Frontend(
        unit=f"{base}-frontend.service", host=host, port=port, config=config, backends=backends,
        argv=(HAPROXY, "-Ws", "-f", config), check=(HAPROXY, "-c", "-q", "-f", config),
        launch=(HAPROXY, "-W", "-f", transient), launch_config=transient, text=frontend_config(host, port, backends),
    )


def frontend_config(host: str, port: int, backends: tuple[tuple[str, str, int], ...]) -> str:
    """The load balancer's config: one HTTP front-end, the instances health-checked on /health."""
    servers = "".join(f"    server {name} {addr}:{p} check inter 2s fall 2 rise 1\n" for name, addr, p in backends)
    return f"""# Managed by coffers-provision (role inference_service); the next apply rewrites it.
# replicate's one endpoint: {host}:{port} over one llama-server per node.
global
    maxconn 1024

defaults
    mode http
    timeout connect 5s
    # a completion streams for as long as it generates
    timeout client 1h
    timeout server 1h
    timeout queue 1h
    retries 2
    option redispatch

frontend llama
    bind {host}:{port}
    default_backend instances

backend instances
    # the least busy instance first: each request runs on one node's CPUs and memory
    balance leastconn
    option httpchk GET /health
    http-check expect status 200
{servers}"""
