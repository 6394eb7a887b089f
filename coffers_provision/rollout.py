"""Rolling changes: hosts in batches (Ansible's `serial`) and the failure budget that
stops the rollout (Ansible's `max_fail_percentage`). Pure: no host is touched here."""

from __future__ import annotations

from typing import Sequence, TypeVar

T = TypeVar("T")

Step = tuple[int, bool]  # (count, is_percent)


def parse_serial(text: str) -> tuple[Step, ...]:
    """`N`, `P%` or a comma-separated list of them (`1,5,25%`); the last one repeats.

    Raises ValueError with a one-line reason."""
    steps = []
    for word in text.split(","):
        word = word.strip()
        percent = word.endswith("%")
        digits = word.removesuffix("%").strip()
        if not digits.isdigit() or int(digits) < 1 or (percent and int(digits) > 100):
            raise ValueError(f"{word!r} is not a batch size (N >= 1 hosts, or P% with 1 <= P <= 100)")
        steps.append((int(digits), percent))
    return tuple(steps)


def format_serial(steps: Sequence[Step]) -> str | None:
    return ",".join(f"{n}{'%' if percent else ''}" for n, percent in steps) or None


def parse_percent(text: str) -> float:
    """`--max-fail-percent`: a number from 0 to 100 (a trailing `%` is allowed)."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise ValueError(f"{text!r} is not a percentage") from None
    if not 0 <= value <= 100:
        raise ValueError(f"{text!r} is not between 0 and 100")
    return value


def batch_size(step: Step, total: int) -> int:
    """As Ansible: a percentage of every selected host, rounded down, at least one."""
    count, percent = step
    return max(1, total * count // 100) if percent else count


def batches(hosts: Sequence[T], serial: Sequence[Step]) -> list[list[T]]:
    """`hosts` cut into consecutive batches; without `serial`, one batch of all."""
    if not serial:
        return [list(hosts)] if hosts else []
    out, i, n = [], 0, 0
    while i < len(hosts):
        size = batch_size(serial[min(n, len(serial) - 1)], len(hosts))
        out.append(list(hosts[i : i + size]))
        i, n = i + size, n + 1
    return out


def stop_reason(failed: int, size: int, max_fail_percent: float | None) -> str | None:
    """Why the rollout stops after a batch of `size` hosts with `failed` of them failed,
    or None to go on. As Ansible: the failed share of the batch must exceed the budget;
    without one, the rollout stops only when every host of the batch failed."""
    if size == 0 or failed == 0:
        return None
    share = 100.0 * failed / size
    if max_fail_percent is None:
        return f"every host of the batch failed ({failed}/{size})" if failed == size else None
    if share > max_fail_percent:
        return f"{failed}/{size} hosts of the batch failed ({share:.0f}% > --max-fail-percent {max_fail_percent:g})"
    return None
