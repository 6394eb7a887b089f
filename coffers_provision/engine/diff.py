"""Unified diffs of what a task changes on a host, for --diff."""

from __future__ import annotations

import difflib
import hashlib


def _text(data: bytes) -> list[str] | None:
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def file_diff(path: str, old: bytes | None, new: bytes | None) -> str:
    """A unified diff of one file (None: the file does not exist); binary files get a summary."""
    if old == new:
        return ""
    before, after = _text(old or b""), _text(new or b"")
    if before is None or after is None:
        def describe(data: bytes | None) -> str:
            return "absent" if data is None else f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}"

        return f"--- {path}\n+++ {path}\nbinary content: {describe(old)} -> {describe(new)}\n"
    lines = list(
        difflib.unified_diff(
            before,
            after,
            fromfile="/dev/null" if old is None else f"{path} (on host)",
            tofile="/dev/null" if new is None else f"{path} (desired)",
        )
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def attr_diff(path: str, what: str, old: str, new: str) -> str:
    return f"{path}: {what} {old} -> {new}\n"
