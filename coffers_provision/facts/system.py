"""System facts: kernel, memory tuning, systemd, toolchain, disk, hardware identity.

Each fact is a shell command (its stdout is the fact's text) and a pure parser of
that text. Commands may read `$COFFERS_PREFIX`, which the probe script sets (quoted).
"""

from __future__ import annotations

import re
from typing import Any

from .cpu import FactError
from .dump import dump_command, parse_dump

DEFAULT_PREFIX = "/usr/local"  # where the native tools are installed unless `coffers: prefix` says otherwise

THP_ROOT = "/sys/kernel/mm/transparent_hugepage"

KERNEL_RELEASE = "uname -r"
NUMA_BALANCING = "cat /proc/sys/kernel/numa_balancing 2>/dev/null"
# MPOL_WEIGHTED_INTERLEAVE (Linux 6.9+) shows its per-node weights here.
WEIGHTED_INTERLEAVE = "[ -d /sys/kernel/mm/mempolicy/weighted_interleave ] && echo yes || echo no"
THP = dump_command(f"{THP_ROOT}/enabled", f"{THP_ROOT}/defrag")
MEMINFO = "grep -E '^(MemTotal|HugePages_Total|HugePages_Free|HugePages_Rsvd|Hugepagesize):' /proc/meminfo"
SYSTEMD = (
    "systemctl --version 2>/dev/null | head -n 1; "
    'printf "pid1=%s\\n" "$(cat /proc/1/comm 2>/dev/null)"; '
    "[ -d /run/systemd/system ] && echo booted=yes || echo booted=no"
)
GCC = "gcc -dumpfullversion 2>/dev/null || gcc -dumpversion 2>/dev/null"
# Ask the compiler (it knows its include path); without one, look where Debian and Red Hat put it.
LIBNUMA = (
    "if command -v gcc >/dev/null 2>&1; then "
    "printf '#include <numa.h>\\n' | gcc -E -x c - >/dev/null 2>&1 && echo yes || echo no; "
    "elif [ -f /usr/include/numa.h ]; then echo yes; else echo no; fi"
)
# The prefix may not exist yet: measure the filesystem of its nearest existing ancestor.
DISK = (
    'p=$COFFERS_PREFIX; while [ ! -e "$p" ]; do p=$(dirname -- "$p"); done; '
    'printf "%s\\n" "$p"; df -Pk -- "$p" | tail -n 1'
)
DMI = (
    "for f in sys_vendor product_name product_serial; do "
    'printf "%s=" "$f"; cat /sys/class/dmi/id/$f 2>/dev/null || echo; done; '
    "for f in model system-id; do "
    '[ -r /proc/device-tree/$f ] && { printf "dt_%s=" "$f"; tr -d "\\000" < /proc/device-tree/$f; echo; }; done; true'
)


def parse_release(text: str) -> str:
    release = text.strip()
    if not release or "\n" in release:
        raise FactError(f"expected one line from `uname -r`, got {text.strip()[:60]!r}")
    return release


def parse_numa_balancing(text: str) -> int | None:
    """0 off, 1 on, 2 memory tiering; None when the kernel has no such knob."""
    value = text.strip()
    if not value:
        return None
    if not value.isdigit():
        raise FactError(f"kernel.numa_balancing is {value!r}, not a number")
    return int(value)


def _selected(text: str) -> str:
    """`always [madvise] never` -> `madvise`."""
    m = re.search(r"\[([^\]]+)\]", text)
    if not m:
        raise FactError(f"no [selected] mode in {text.strip()!r}")
    return m.group(1)


def parse_thp(text: str) -> dict[str, str] | None:
    files = parse_dump(text, THP_ROOT)
    if not files:
        return None
    return {name: _selected(files[name]) for name in ("enabled", "defrag") if name in files}


def parse_meminfo(text: str) -> dict[str, Any]:
    values: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+):\s+(\d+)(?:\s+kB)?$", line.strip())
        if m:
            values[m.group(1)] = int(m.group(2))
    if "MemTotal" not in values:
        raise FactError("no MemTotal line from /proc/meminfo")
    huge = None
    if "HugePages_Total" in values:
        huge = {
            "total": values["HugePages_Total"],
            "free": values.get("HugePages_Free", 0),
            "reserved": values.get("HugePages_Rsvd", 0),
            "size_kb": values.get("Hugepagesize"),
        }
    return {"mem_total_kb": values["MemTotal"], "hugepages": huge}


def parse_systemd(text: str) -> dict[str, Any]:
    """Version from `systemctl --version`, PID 1's name, and whether systemd booted the host."""
    version = None
    pid1 = None
    booted = False
    for line in text.splitlines():
        if m := re.match(r"^systemd (\d+)\b", line.strip()):
            version = int(m.group(1))
        elif line.startswith("pid1="):
            pid1 = line[5:].strip() or None
        elif line.startswith("booted="):
            booted = line[7:].strip() == "yes"
    return {"version": version, "pid1": pid1, "is_pid1": pid1 == "systemd", "booted": booted}


def parse_gcc(text: str) -> str | None:
    version = text.strip()
    if not version:
        return None
    if not re.match(r"^\d+(\.\d+)*$", version):
        raise FactError(f"gcc printed {version[:60]!r} for its version")
    return version


def parse_yes_no(text: str) -> bool:
    word = text.strip()
    if word not in ("yes", "no"):
        raise FactError(f"expected yes or no, got {word[:60]!r}")
    return word == "yes"


_DF = re.compile(r"^(.*?)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)%\s+(/.*)$")


def parse_disk(text: str) -> dict[str, Any]:
    """The existing path measured and `df -Pk` of it (1024-byte blocks)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) != 2:
        raise FactError(f"expected the measured path and one df line, got {len(lines)} line(s)")
    m = _DF.match(lines[1].strip())
    if not m:
        raise FactError(f"not a `df -P` line: {lines[1][:80]!r}")
    return {
        "path": lines[0],
        "mount": m.group(6),
        "size_bytes": int(m.group(2)) * 1024,
        "free_bytes": int(m.group(4)) * 1024,
    }


def parse_dmi(text: str) -> dict[str, str | None]:
    """Vendor, product and serial from DMI, or from the device tree (POWER, ARM)."""
    raw: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and value.strip():
            raw[key] = value.strip()
    vendor = raw.get("sys_vendor")
    product = raw.get("product_name") or raw.get("dt_model")
    serial = raw.get("product_serial") or raw.get("dt_system-id")
    if vendor is None and product and product.startswith("IBM,"):
        vendor = "IBM"
    return {"vendor": vendor, "product": product, "serial": serial}
