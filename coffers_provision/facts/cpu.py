"""CPU facts: architecture, model, packages/cores/SMT siblings from sysfs, last-level cache.

Each fact is a shell command (its stdout is the fact's text) and a pure parser of
that text; tests/spec/facts/ holds captured texts with the expected results.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import CoffersError
from ..topology import parse_cpulist
from .dump import dump_command, parse_dump

CPU_ROOT = "/sys/devices/system/cpu"

ARCH = "uname -m"
# The first processor block, then the tail where POWER and some ARM kernels name the machine.
MODEL = "sed '/^$/q' /proc/cpuinfo; echo; tail -n 8 /proc/cpuinfo"
TOPOLOGY = dump_command(
    f"{CPU_ROOT}/online",
    f"{CPU_ROOT}/cpu[0-9]*/topology/physical_package_id",
    f"{CPU_ROOT}/cpu[0-9]*/topology/core_id",
    f"{CPU_ROOT}/cpu[0-9]*/topology/thread_siblings_list",
)
# Caches as the first online CPU sees them.
CACHE = (
    f'c=$(sed "s/[-,].*//" {CPU_ROOT}/online 2>/dev/null); c=${{c:-0}}; '
    + dump_command(*(f"{CPU_ROOT}/cpu$c/cache/index*/{f}" for f in ("level", "type", "size", "shared_cpu_list")))
)


class FactError(CoffersError, ValueError):
    """Text a fact parser cannot make sense of."""


def parse_arch(text: str) -> str:
    arch = text.strip()
    if not arch or len(arch.split()) != 1:
        raise FactError(f"expected one word from `uname -m`, got {text.strip()[:60]!r}")
    return arch


def _fields(text: str) -> dict[str, str]:
    """`key : value` lines of /proc/cpuinfo; the first value of each key wins."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and key.strip().lower() not in out:
            out[key.strip().lower()] = value.strip()
    return out


def parse_model(text: str) -> dict[str, str | None]:
    """The CPU model as the kernel names it: `model name` (x86), `cpu` (POWER),
    `Processor` (old ARM); for ARM, which names no model, its implementer and part codes."""
    f = _fields(text)
    processor = f.get("processor", "")
    model = f.get("model name") or f.get("cpu") or (processor if processor and not processor.isdigit() else None)
    implementer = f.get("cpu implementer")
    if not model and implementer:
        model = f"implementer {implementer} part {f.get('cpu part', '?')}"
    vendor = f.get("vendor_id") or (f"implementer {implementer}" if implementer else None)
    if vendor is None and model and model.startswith("POWER"):
        vendor = "IBM"
    return {"model": model, "vendor": vendor}


def parse_topology(text: str) -> dict[str, Any]:
    """Packages, cores and SMT sibling sets of the online CPUs, from a dump of their
    `topology/{physical_package_id,core_id,thread_siblings_list}` files."""
    files = parse_dump(text, CPU_ROOT)
    if "online" not in files:
        raise FactError(f"no {CPU_ROOT}/online in the dump")
    try:
        online = parse_cpulist(files["online"])
    except ValueError as e:
        raise FactError(f"{CPU_ROOT}/online: {e}") from None
    package: dict[int, int] = {}
    core: dict[int, int] = {}
    siblings: set[tuple[int, ...]] = set()
    for cpu in online:
        base = f"cpu{cpu}/topology/"
        try:
            package[cpu] = int(files[base + "physical_package_id"])
            core[cpu] = int(files[base + "core_id"])
            siblings.add(tuple(parse_cpulist(files[base + "thread_siblings_list"])))
        except KeyError as e:
            raise FactError(f"online CPU {cpu} has no {CPU_ROOT}/{e.args[0]}") from None
        except ValueError as e:
            raise FactError(f"{CPU_ROOT}/{base}: {e}") from None
    cores = len(set(zip(package.values(), core.values(), strict=True)))
    return {
        "cpus": len(online),
        "online": online,
        "sockets": len(set(package.values())),
        "cores": cores,
        "threads_per_core": max((len(s) for s in siblings), default=1),
        "thread_siblings": sorted(list(s) for s in siblings),
    }


_SIZE = re.compile(r"^(\d+)([KMG]?)$")


def parse_cache(text: str) -> dict[str, Any] | None:
    """The last-level cache (highest level holding data) of one CPU: level, size, and
    how many CPUs share it. None when the kernel exposes no cache info."""
    files = parse_dump(text)
    indexes: dict[str, dict[str, str]] = {}
    for path, content in files.items():
        m = re.search(r"/cache/(index\d+)/(\w+)$", path)
        if m:
            indexes.setdefault(m.group(1), {})[m.group(2)] = content.strip()
    best = None
    for idx, f in sorted(indexes.items()):
        if f.get("type") == "Instruction" or "level" not in f or "size" not in f:
            continue
        sm = _SIZE.match(f["size"])
        if not sm or not f["level"].isdigit():
            raise FactError(f"cache {idx}: bad level/size {f.get('level')!r}/{f.get('size')!r}")
        size_kb = int(sm.group(1)) * {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024 * 1024}[sm.group(2)]
        shared = len(parse_cpulist(f["shared_cpu_list"])) if f.get("shared_cpu_list") else None
        cand = {"level": int(f["level"]), "size_kb": int(size_kb), "shared_cpus": shared}
        if best is None or cand["level"] > best["level"]:
            best = cand
    return best
