"""Shared terminal output: one rich console for stdout, one for stderr."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable

from rich.console import Console
from rich.markup import escape

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """Machine output goes to stdout as plain JSON, never through rich markup."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def diagnostics(items: Iterable[object]) -> None:
    """FILE:LINE:COL lines to stderr, unstyled, so editors and scripts can parse them."""
    for d in items:
        print(d, file=sys.stderr)


def error(message: str) -> None:
    """One error line; the message is text, never markup (it may quote a file's `[...]`)."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True)
