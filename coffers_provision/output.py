"""Shared terminal output: one rich console for stdout, one for stderr.

The consoles are made on first use (`output.out`, `output.err`), so commands that print
plain lines never import rich.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from rich.console import Console


@cache
def _console(stderr: bool) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def __getattr__(name: str) -> Any:
    if name in ("out", "err"):
        return _console(name == "err")
    raise AttributeError(name)


def print_json(data: Any) -> None:
    """Machine output goes to stdout as plain JSON, never through rich markup."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def diagnostics(items: Iterable[object]) -> None:
    """FILE:LINE:COL lines to stderr, unstyled, so editors and scripts can parse them."""
    for d in items:
        print(d, file=sys.stderr)


def error(message: str) -> None:
    """One `error: ...` line on stderr (plain: it is read by people and scripts alike)."""
    print(f"error: {message}", file=sys.stderr)
