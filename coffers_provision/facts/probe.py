"""Gather every fact of a host in one round trip.

Each Fact is a shell command and a pure parser. `probe_script()` joins all the commands
into one POSIX sh script that prints each fact's output after a marker line;
`assemble()` splits that text and parses it into the facts document that
`schemas/facts.schema.json` describes. The topology comes from `numactl --hardware`
when the host has numactl, else from a dump of its sysfs node tree.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from typing import Any, Callable

import jsonschema

from ..connect.base import Connector
from ..errors import ProbeError
from ..resources import schema_path
from ..schema import inline_refs
from ..topology import Topology, TopologyError
from . import cpu, system
from .cpu import FactError
from .dump import dump_command, parse_dump
from .numa import parse_numactl, parse_sysfs_files

SCHEMA_VERSION = 1
NODE_ROOT = "/sys/devices/system/node"
MARKER = "@@coffers-fact "
PROBE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Fact:
    name: str
    command: str  # POSIX sh; its stdout is the text `parse` reads
    parse: Callable[[str], Any]


FACTS: tuple[Fact, ...] = (
    Fact("arch", cpu.ARCH, cpu.parse_arch),
    Fact("cpu_model", cpu.MODEL, cpu.parse_model),
    Fact("cpu_topology", cpu.TOPOLOGY, cpu.parse_topology),
    Fact("cpu_cache", cpu.CACHE, cpu.parse_cache),
    Fact("kernel_release", system.KERNEL_RELEASE, system.parse_release),
    Fact("numa_balancing", system.NUMA_BALANCING, system.parse_numa_balancing),
    Fact("weighted_interleave", system.WEIGHTED_INTERLEAVE, system.parse_yes_no),
    Fact("thp", system.THP, system.parse_thp),
    Fact("meminfo", system.MEMINFO, system.parse_meminfo),
    Fact("systemd", system.SYSTEMD, system.parse_systemd),
    Fact("gcc", system.GCC, system.parse_gcc),
    Fact("libnuma", system.LIBNUMA, system.parse_yes_no),
    Fact("disk", system.DISK, system.parse_disk),
    Fact("dmi", system.DMI, system.parse_dmi),
)

# The topology is one of two facts, chosen on the host: numactl when it is installed.
NUMACTL = "numactl --hardware 2>&1"
SYSFS_NODE = dump_command(
    *(f"{NODE_ROOT}/{f}" for f in ("online", "possible", "has_memory", "has_cpu")),
    *(f"{NODE_ROOT}/node[0-9]*/{f}" for f in ("cpulist", "meminfo", "distance")),
)


def parse_sysfs_dump(text: str) -> Topology:
    return parse_sysfs_files(parse_dump(text, NODE_ROOT), NODE_ROOT)


TOPOLOGY_FACTS = {
    "numactl": lambda text: parse_numactl(text, source="numactl --hardware"),
    "sysfs_node": parse_sysfs_dump,
}


def probe_script(prefix: str) -> str:
    """One script for every fact. `prefix` is a value from the inventory: it is quoted."""
    lines = [
        "export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH",
        f"COFFERS_PREFIX={shlex.quote(prefix)}",
        f"m() {{ printf '\\n{MARKER}%s\\n' \"$1\"; }}",
        'if n=$(command -v numactl) && [ -x "$n" ]; then',
        f"  m numactl; {NUMACTL}",
        "else",
        f"  m sysfs_node; {SYSFS_NODE}",
        "fi",
    ]
    for fact in FACTS:
        lines.append(f"m {fact.name}; {{ {fact.command}; }} 2>/dev/null")
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def split_sections(stdout: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    name = None
    for line in stdout.splitlines(keepends=True):
        if line.startswith(MARKER):
            name = line[len(MARKER) :].strip()
            sections[name] = ""
        elif name is not None:
            sections[name] += line
    return {k: v.strip("\n") + "\n" if v.strip() else "" for k, v in sections.items()}


def assemble(sections: dict[str, str], *, host: str, prefix: str, now: float | None = None) -> dict[str, Any]:
    """The facts document from the script's sections (pure: no I/O)."""
    parsed: dict[str, Any] = {}
    for fact in FACTS:
        if fact.name not in sections:
            raise ProbeError(f"{host}: the probe printed no {fact.name!r} section (script cut short?)")
        try:
            parsed[fact.name] = fact.parse(sections[fact.name])
        except (FactError, ValueError) as e:
            raise ProbeError(f"{host}: fact {fact.name}: {e}") from None
    topo_name = next((n for n in TOPOLOGY_FACTS if n in sections), None)
    if topo_name is None:
        raise ProbeError(f"{host}: the probe printed no topology section")
    try:
        topo = TOPOLOGY_FACTS[topo_name](sections[topo_name])
    except TopologyError as e:
        raise ProbeError(f"{host}: {topo_name}: {e}") from None

    model = parsed["cpu_model"]
    dmi = parsed["dmi"]
    identity = [dmi["vendor"], dmi["product"], dmi["serial"], model["model"], topo.fingerprint()]
    now = time.time() if now is None else now
    return {
        "schema_version": SCHEMA_VERSION,
        "host": host,
        "probed_at": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
        "probed_at_epoch": now,
        "topology": topo.to_json() | {"source": topo.source},
        "cpu": {
            "architecture": parsed["arch"],
            "model": model["model"],
            "vendor": model["vendor"],
            **parsed["cpu_topology"],
            "llc": parsed["cpu_cache"],
        },
        "system": {
            "kernel_release": parsed["kernel_release"],
            "numa_balancing": parsed["numa_balancing"],
            "weighted_interleave": parsed["weighted_interleave"],
            "thp": parsed["thp"],
            **parsed["meminfo"],
        },
        "systemd": parsed["systemd"],
        "toolchain": {"gcc": parsed["gcc"], "libnuma_headers": parsed["libnuma"]},
        "disk": {"prefix": prefix, **parsed["disk"]},
        "hardware": {
            **dmi,
            "cpu_model": model["model"],
            "topology_hash": topo.fingerprint(),
            "fingerprint": hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16],
        },
    }


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(schema_path("facts").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(inline_refs(schema))  # read at every apply for every host: no lookup per CPU id


def validate(facts: dict[str, Any]) -> list[str]:
    """Schema problems as `json.path: message` strings (empty when valid)."""
    errors = sorted(_validator().iter_errors(facts), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]


def probe(conn: Connector, host: str, *, prefix: str = system.DEFAULT_PREFIX, timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """Run the probe script on a host and return its validated facts."""
    result = conn.run(probe_script(prefix), timeout=timeout)
    if not result.ok:
        raise ProbeError(f"{host}: probe script exited {result.rc}: {result.stderr.strip()[:500]}")
    facts = assemble(split_sections(result.stdout), host=host, prefix=prefix)
    problems = validate(facts)
    if problems:
        raise ProbeError(f"{host}: facts do not match schemas/facts.schema.json: " + "; ".join(problems[:5]))
    return facts


def topology_of(facts: dict[str, Any]) -> Topology:
    return Topology.from_json(facts["topology"])
