"""Host keys as ansible-core reads them: `name[:port]`, `[v6addr]:port`, and ranges.

Ranges: `[01:50]` (zero-padded when the start is, both ends the same width), `[:5]`
(start 0), `[a:f]` (letters, a-z then A-Z), a stride `[1:9:2]`, several in one name.
"""

from __future__ import annotations

import re
import string
from functools import cache

_NUM = r"\[(?:[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_HEX = r"\[(?:[0-9a-f]+:[0-9a-f]+)(?::[0-9]+)?\]"
_ALNUM = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_V6 = rf"(?:[0-9a-f]{{1,4}}|{_HEX})"
_V4 = rf"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{_NUM})"
_LABEL = rf"(?:[\w]|{_ALNUM})(?:[\w_-]|{_ALNUM})*(?<![_-])"

_BRACKETED_PORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_HOST_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
_IPV4 = re.compile(rf"^(?:{_V4}\.){{3}}{_V4}$", re.I)
_IPV6_PATTERN = (
    rf"""^(?:{_V6}:){{7}}{_V6}|(?:{_V6}:){{1,6}}:|(?:{_V6}:)(?::{_V6}){{1,6}}|(?:{_V6}:){{2}}(?::{_V6}){{1,5}}|
    (?:{_V6}:){{3}}(?::{_V6}){{1,4}}|(?:{_V6}:){{4}}(?::{_V6}){{1,3}}|(?:{_V6}:){{5}}(?::{_V6}){{1,2}}|
    (?:{_V6}:){{6}}(?::{_V6})|:(?::{_V6}){{1,6}}|{_V6}?::|(?:0:){{6}}(?:{_V6}\.){{3}}{_V6}|
    ::(?:ffff:)?(?:{_V6}\.){{3}}{_V6}|(?:0:){{5}}ffff:(?:{_V6}\.){{3}}{_V6}$""".replace("\n", "").replace(" ", "")
)
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.I | re.UNICODE)


@cache
def _ipv6() -> re.Pattern[str]:
    """Compiled on first use: it costs more than the rest of the inventory's start-up."""
    return re.compile(_IPV6_PATTERN, re.I)


def split_port(key: str) -> tuple[str, int | None]:
    """`host:port` -> (host, port); a key that is not an address with a port stays whole."""
    port = None
    rest = key
    for rx in (_BRACKETED_PORT, _HOST_PORT):  # both are tried, in turn, as ansible-core does
        m = rx.match(rest)
        if m:
            rest, port = m.group(1), int(m.group(2))
    if not (_IPV4.match(rest) or _HOSTNAME.match(rest) or _ipv6().match(rest)):
        return key, None
    return rest, port


def expand(name: str) -> list[str]:
    """Every host a (possibly ranged) name stands for; raises ValueError on a bad range."""
    if "[" not in name:
        return [name]
    head, _, rest = name.partition("[")
    body, sep, tail = rest.partition("]")
    if not sep:
        raise ValueError(f"unclosed range in {name!r}")
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(f"host range [{body}] in {name!r} must be begin:end or begin:end:step")
    beg, end = bounds[0] or "0", bounds[1]
    if not end:
        raise ValueError(f"host range [{body}] in {name!r} must give an end")
    try:
        step = int(bounds[2]) if len(bounds) == 3 else 1
    except ValueError:
        raise ValueError(f"host range [{body}] in {name!r}: the step must be a number") from None
    if step < 1:
        raise ValueError(f"host range [{body}] in {name!r}: the step must be at least 1")
    width = 0
    if beg[0] == "0" and len(beg) > 1:
        width = len(beg)
        if len(end) != width:
            raise ValueError(f"host range [{body}] in {name!r}: a zero-padded begin and its end must have the same width")
    letters = string.ascii_letters
    if beg in letters and end in letters and len(beg) == len(end) == 1:
        i, j = letters.index(beg), letters.index(end)
        if i > j:
            raise ValueError(f"host range [{body}] in {name!r}: begin must not come after end")
        values = list(letters[i : j + 1 : step])
    else:
        try:
            values = [str(v).zfill(width) for v in range(int(beg), int(end) + 1, step)]
        except ValueError:
            raise ValueError(f"host range [{body}] in {name!r}: both ends numbers or both single letters") from None
    return [h for v in values for h in expand(head + v + tail)]


def expand_hostpattern(key: str) -> tuple[list[str], int | None]:
    """A host key of an inventory: the hosts it names and the port it gives them (or None)."""
    pattern, port = split_port(key)
    return expand(pattern), port
