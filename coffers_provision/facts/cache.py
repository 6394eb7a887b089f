"""The facts cache: one `<facts dir>/<host>.json` per host, reused while it is fresh.

Fresh means: younger than `coffers: facts_max_age_s` (default one hour), valid against
the facts schema, and probed at the address and port the inventory names now.
Anything else is probed again; `refresh=True` always probes.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..connect.base import Connector
from .probe import probe, validate
from .system import DEFAULT_PREFIX

if TYPE_CHECKING:
    from ..inventory import Host

DEFAULT_FACTS_DIR = Path("facts")
DEFAULT_MAX_AGE_S = 3600


def cache_file(facts_dir: Path, host: str) -> Path:
    return Path(facts_dir) / f"{host.replace(os.sep, '_')}.json"


def connection_of(host: Host) -> dict[str, Any]:
    return {"address": host.address, "port": host.port, "connection": host.connection}


def max_age_of(host: Host) -> float:
    return float(host.coffers.get("facts_max_age_s", DEFAULT_MAX_AGE_S))


def read_fresh(facts_dir: Path, host: Host, *, now: float | None = None) -> dict[str, Any] | None:
    """The cached facts of `host` when they may be reused, else None."""
    path = cache_file(facts_dir, host.name)
    try:
        facts = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(facts, dict) or validate(facts):
        return None
    now = time.time() if now is None else now
    if facts.get("host") != host.name or facts.get("connection") != connection_of(host):
        return None
    if facts["disk"]["prefix"] != host.coffers.get("prefix", DEFAULT_PREFIX):
        return None
    age = now - facts["probed_at_epoch"]
    return facts if 0 <= age <= max_age_of(host) else None


def save(facts_dir: Path, facts: dict[str, Any]) -> Path:
    """Write atomically, so a reader never sees half a file and a crash leaves the old one."""
    path = cache_file(facts_dir, facts["host"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(facts, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_or_probe(
    host: Host, conn: Connector, *, facts_dir: Path = DEFAULT_FACTS_DIR, refresh: bool = False
) -> tuple[dict[str, Any], bool]:
    """`(facts, from_cache)`. Probes (through `conn`) only when the cache is stale or `refresh`.

    With a lazily connecting `conn` (fanout.run_hosts gives one), a cache hit opens no connection.
    """
    if not refresh and (facts := read_fresh(facts_dir, host)) is not None:
        return facts, True
    facts = probe(conn, host.name, prefix=host.coffers.get("prefix", DEFAULT_PREFIX))
    facts["connection"] = connection_of(host)
    save(facts_dir, facts)
    return facts, False
