"""A model's identity: the sha256 of each of its files, computed on the host, once.

Hashing 400 GB takes minutes, so the host keeps the answers in <state_dir>/model-sha256.json,
keyed by path, size and mtime (nanoseconds): a file that kept all three is not read again.
Everything runs on the host (stat, sha256sum, the cache's atomic rewrite); only the small
cache and the hashes travel.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from ..connect.base import Connector
from ..errors import HostError
from ..planner import PlanError

CACHE = "model-sha256.json"
_HASH_TIMEOUT_S = 3600.0  # sha256sum reads about 1 GB/s: a 671B Q8_0 model in about 12 minutes
_STAT = "stat -L -c '%s %.9Y' -- "  # size, mtime with nanoseconds (GNU coreutils)


def cache_path(state_dir: str) -> str:
    return f"{state_dir.rstrip('/')}/{CACHE}"


def _run(conn: Connector, script: str, what: str, *, timeout: float = 60.0, stdin: bytes | None = None) -> str:
    r = conn.run(["sh", "-c", script], timeout=timeout, stdin=stdin)
    if not r.ok:
        raise HostError(f"{conn.host}: {what} failed: {(r.stderr or r.stdout).strip()}")
    return r.stdout


def _stat_and_cache(conn: Connector, paths: tuple[str, ...], cache: str) -> tuple[list[str], dict[str, Any]]:
    """Each file's "size mtime" and the host's cache, in one round trip."""
    q = shlex.quote
    checks = "".join(f"[ -f {q(p)} ] || {{ echo {q(p + ': no such file')} >&2; exit 1; }}; " for p in paths)
    out = _run(conn, f"{checks}{_STAT}{' '.join(map(q, paths))}; echo; cat {q(cache)} 2>/dev/null || true", "reading the model's files")
    lines, _, cached = out.partition("\n\n")
    try:
        doc = json.loads(cached) if cached.strip() else {}
    except ValueError:
        doc = {}  # a damaged cache only costs a re-hash; it is rewritten whole below
    return lines.splitlines(), doc if isinstance(doc, dict) else {}


def model_sha256(conn: Connector, paths: tuple[str, ...], state_dir: str, *, write: bool = True) -> tuple[str, ...]:
    """The sha256 of each file, from the host's cache where (size, mtime) still match; new
    answers are written back unless `write` is false (--check changes nothing)."""
    if any("\n" in p for p in paths):
        raise PlanError(f"{conn.host}: a model path with a newline cannot be hashed: {paths!r}")
    cache = cache_path(state_dir)
    stats, doc = _stat_and_cache(conn, paths, cache)
    todo = [p for p, st in zip(paths, stats) if (doc.get(p) or {}).get("stat") != st]
    if todo:
        q = shlex.quote
        out = _run(conn, f"sha256sum -- {' '.join(map(q, todo))}", "hashing the model", timeout=_HASH_TIMEOUT_S * len(todo))
        digests = [line.lstrip("\\").split()[0] for line in out.splitlines() if line.strip()]
        keep = {p: v for p, v in doc.items() if p not in todo}
        if len(digests) != len(todo):
            raise HostError(f"{conn.host}: sha256sum answered {len(digests)} lines for {len(todo)} files")
        doc = keep | {p: {"stat": stats[paths.index(p)], "sha256": h} for p, h in zip(todo, digests)}
        if write:  # put is atomic: a temporary file beside the cache, then a rename
            _run(conn, f"mkdir -p -- {q(state_dir)}", "making the state directory")
            conn.put((json.dumps(doc, indent=1, sort_keys=True) + "\n").encode(), cache, mode=0o644)
    return tuple(doc[p]["sha256"] for p in paths)


def check_expected(host: str, files: tuple[str, ...], found: tuple[str, ...], expected: str | list[str] | None) -> None:
    """`coffers.model_sha256` (one hash, or one per part) against what the host holds."""
    if expected is None:
        return
    want = [expected] if isinstance(expected, str) else list(expected)
    if len(want) != len(found):
        raise PlanError(f"{host}: coffers.model_sha256 names {len(want)} hash(es), the model has {len(found)} file(s): {', '.join(files)}")
    for path, have, need in zip(files, found, want):
        if have != need.lower():
            raise PlanError(f"{host}:{path} is not the model the inventory names: its sha256 is {have}, coffers.model_sha256 says {need}")
