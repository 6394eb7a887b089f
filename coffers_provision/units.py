"""Sizes as people read them, in one place: messages, tables and recaps."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """1536 -> '1.50 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def short_bytes(n: float) -> str:
    """Narrow table cells: 1536 -> '1.5K', 45e9 -> '41.9G'."""
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.3g}{unit}" if abs(n) < 100 else f"{n:.0f}{unit}"
        n /= 1024
    raise AssertionError("unreachable")
