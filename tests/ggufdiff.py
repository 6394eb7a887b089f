"""Three readers of one GGUF file, and where they may differ (docs/gguf-validity.md).

- ours: `model.read_header` (the structure) then `model.check_layout` (the planner's keys);
- the C parser: numa-shard-place's `gguf_parse`, through tests/c/gguf_table.c (one process
  for many files; `numa-shard-place --plan --json` runs the same function);
- the reference: `gguf.GGUFReader`, the format's reference implementation.

Ours and the C parser must agree exactly: the same verdict, and on acceptance the same version,
alignment, data offset and tensor table (names, types, offsets, sizes, layers). The reference
must accept what we accept, with the same table (Q8_1 sizes aside), and may accept what we
reject only for the reasons in `REFERENCE_LAXER`.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from coffers_provision.model import GGUFError, GGUFMetadataError, check_layout, read_header
from coffers_provision.shardmap import layer_of
from tests.c.nativebuild import C_TESTS, SANITIZE, build

LLONG_MAX = (1 << 63) - 1
Row = tuple[str, str, int, int, "int | None"]

# Our rules the reference reader does not have: a file broken only in one of these ways it
# reads (keyed by a phrase of our message). Each is argued in docs/gguf-validity.md.
REFERENCE_LAXER = {
    "is not 32-aligned": "tensor data offsets off the alignment",
    "-aligned": "tensor data offsets off the alignment",
    "overlap": "tensors sharing bytes",
    "dimensions (1 to 4)": "zero or more than four dimensions",
    "longer than 63": "tensor names of 64 bytes or more",
    "longer than 65535": "keys over 65535 bytes",
    "holds a NUL byte": "NUL bytes in tensor names",
    "nested more than 4 deep": "arrays nested deeper than four (it recurses until the interpreter stops it)",
    "big-endian": "big-endian files",
    "too many elements": "element counts past 2^63 (its product wraps)",
}
# The reference's exceptions on a file it cannot read (it has no error type of its own).
REFERENCE_ERRORS = (ValueError, KeyError, IndexError, TypeError, OverflowError, RecursionError)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    error: str = ""
    version: int = 0
    alignment: int = 0
    data_offset: int = 0
    table: tuple[Row, ...] = ()


def ours(data: bytes, source: str = "m.gguf") -> tuple[Verdict, str]:
    """The structural verdict, and the planner's objection ("" when none) to a well-formed file."""
    try:
        h = read_header(lambda off, n: data[off : off + n], len(data), source)
    except GGUFMetadataError:
        raise AssertionError("read_header raised a metadata error")  # noqa: B904 (a bug, keep the trace)
    except GGUFError as e:
        return Verdict(False, str(e)), ""
    table = tuple(sorted(((t.name, t.type.name, t.offset, t.n_bytes, _layer(t.name)) for t in h.tensors), key=_order))
    planner = ""
    try:
        check_layout(h)
    except GGUFMetadataError as e:
        planner = str(e)
    return Verdict(True, "", h.version, h.alignment, h.data_offset, table), planner


def _layer(name: str) -> int | None:
    layer = layer_of(name)
    return None if layer is None else min(layer, LLONG_MAX)  # C saturates


def _order(row: Row) -> tuple[int, str]:
    return row[2], row[0]


def reference(path: Path) -> Verdict:
    try:
        r = gguf.GGUFReader(str(path))
    except REFERENCE_ERRORS as e:
        return Verdict(False, f"{type(e).__name__}: {e}"[:300])
    table = tuple(sorted(((t.name, t.tensor_type.name, int(t.data_offset), int(t.n_bytes), _layer(t.name))
                          for t in r.tensors), key=_order))
    version = int(r.fields["GGUF.version"].parts[0][0])
    return Verdict(True, "", version, int(r.alignment), int(r.data_offset), table)


class CParser:
    """gguf_table (built with ASan and UBSan when `sanitize`) answering one path a line."""

    def __init__(self, sanitize: bool = False):
        exe = build(C_TESTS / "gguf_table.c", "gcc", ("-std=c99", *SANITIZE) if sanitize else ("-O2",))
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, encoding="utf-8",
                                     errors="surrogateescape", bufsize=1)  # names that are not UTF-8 still compare

    def __call__(self, path: Path) -> Verdict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"gguf_table died on {path} (exit {self.proc.wait()})")
        doc: dict[str, Any] = json.loads(line)
        if not doc["ok"]:
            return Verdict(False, doc["error"])
        table = tuple(sorted(((n, t, o, b, layer) for n, t, o, b, layer in doc["tensors"]), key=_order))
        return Verdict(True, "", doc["version"], doc["alignment"], doc["data_offset"], table)

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        rc = self.proc.wait(timeout=60)
        assert rc == 0, f"gguf_table exited {rc}"

    def __enter__(self) -> CParser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _same_table(a: Verdict, b: Verdict) -> bool:
    return (a.version, a.alignment, a.data_offset, a.table) == (b.version, b.alignment, b.data_offset, b.table)


def _without_q8_1_sizes(v: Verdict) -> Verdict:
    """The table with Q8_1 sizes blanked (the reference says 40 bytes a block, ggml 36) and no layers."""
    table = tuple((n, t, o, -1 if t == "Q8_1" else b, None) for n, t, o, b, _ in v.table)
    return Verdict(v.ok, v.error, v.version, v.alignment, v.data_offset, table)


@dataclass
class Outcome:
    ours: Verdict
    planner: str
    c: Verdict
    reference: Verdict | None
    problems: list[str]


def compare(data: bytes, path: Path, c_parser: CParser, *, with_reference: bool = True) -> Outcome:
    """All readers on one file (written to `path`), and every disagreement not documented."""
    path.write_bytes(data)
    mine, planner = ours(data, str(path))
    c = c_parser(path)
    problems = []
    if mine.ok != c.ok:
        problems.append(f"verdicts differ: ours {mine.error or 'accepts'} / C {c.error or 'accepts'}")
    elif mine.ok and not _same_table(mine, c):
        problems.append(f"tables differ:\n  ours {mine}\n  C    {c}")
    # The reference walks every element an array claims, however few bytes are left: on a
    # length lie that is hours and all the memory there is, so it is not asked.
    walks = not mine.ok and "elements, more than the file holds" in mine.error
    ref = reference(path) if with_reference and not walks else None
    if ref is not None:
        if mine.ok and not ref.ok:
            if "Q8_1" not in {t for _, t, _, _, _ in mine.table}:  # the reference's Q8_1 blocks run 4 bytes longer
                problems.append(f"the reference rejects what we accept: {ref.error}")
        elif mine.ok and _without_q8_1_sizes(mine) != _without_q8_1_sizes(ref):
            problems.append(f"tables differ from the reference:\n  ours {mine}\n  ref  {ref}")
        elif not mine.ok and ref.ok and not any(phrase in mine.error for phrase in REFERENCE_LAXER):
            problems.append(f"the reference accepts, undocumented, what we reject: {mine.error}")
    return Outcome(mine, planner, c, ref, problems)
