"""Host patterns (`--limit`): names, groups, globs, `~regex`, `@file`, with `:`/`,`, `&` and `!`."""

from __future__ import annotations

import difflib
import fnmatch
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from .model import PatternError


def _close(name: str, known: Iterable[str]) -> str:
    hint = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {hint[0]!r}?" if hint else ""


# -- host patterns (--limit) ---------------------------------------------------------


def split_pattern(pattern: str) -> list[str]:
    """Split on ',' when present, else on ':' outside brackets and outside `~regex` terms."""
    pattern = pattern.strip()
    if "," in pattern:
        return [t.strip() for t in pattern.split(",")]
    terms, depth, cur = [], 0, ""
    for ch in pattern:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == ":" and depth == 0 and not cur.lstrip("!&").startswith("~"):
            terms.append(cur.strip())
            cur = ""
        else:
            cur += ch
    terms.append(cur.strip())
    return terms


def match_pattern(pattern: str, hosts: Mapping[str, Any], groups: Mapping[str, list[str]]) -> set[str]:
    """Union of plain terms, then `&` intersections, then `!` exclusions (order-independent)."""
    terms = split_pattern(pattern)
    if any(not t or t in ("!", "&") for t in terms):
        raise PatternError(f"bad host pattern {pattern!r}: empty term")
    plain = [t for t in terms if t[0] not in "!&"]
    inter = [t[1:] for t in terms if t[0] == "&"]
    excl = [t[1:] for t in terms if t[0] == "!"]
    selected: set[str] = set(hosts) if not plain else set()
    for term in plain:
        selected |= _match_term(term, hosts, groups)
    for term in inter:
        selected &= _match_term(term, hosts, groups)
    for term in excl:
        selected -= _match_term(term, hosts, groups)
    return selected


def _match_term(term: str, hosts: Mapping[str, Any], groups: Mapping[str, list[str]]) -> set[str]:
    if term.startswith("@"):
        path = Path(term[1:]).expanduser()
        try:
            lines = [ln.strip() for ln in path.read_text().splitlines()]
        except OSError as e:
            raise PatternError(f"host pattern {term!r}: cannot read {path}: {e.strerror}") from None
        names = [ln for ln in lines if ln and not ln.startswith("#")]
        unknown = [n for n in names if n not in hosts]
        if unknown:
            raise PatternError(f"host pattern {term!r}: {path} names hosts not in the inventory: {', '.join(unknown)}")
        return set(names)
    if term.startswith("~"):
        try:
            rx = re.compile(term[1:])
        except re.error as e:
            raise PatternError(f"host pattern {term!r}: bad regular expression: {e}") from None
        found = {g for g in groups if rx.search(g)}
        matched = {h for g in found for h in groups[g]} | {h for h in hosts if rx.search(h)}
    elif any(c in term for c in "*?[") and term not in hosts:
        matched = {h for g in fnmatch.filter(groups, term) for h in groups[g]} | set(fnmatch.filter(hosts, term))
    elif term in groups:
        matched = set(groups[term])
    elif term in hosts:
        matched = {term}
    else:
        matched = set()
    if not matched:
        raise PatternError(f"host pattern {term!r} matches no host or group{_close(term, [*groups, *hosts])}")
    return matched
