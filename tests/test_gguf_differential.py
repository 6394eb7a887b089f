"""Our reader, numa-shard-place's parser and gguf.GGUFReader on mutated real headers.

1,000 seeded mutants of seven architectures' headers here (a few seconds); benchmarks/fuzz
runs 5,000 and more. tests/ggufdiff.py says what must agree and where the reference may differ.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests import ggufbytes as gb
from tests import ggufdiff as gd
from tests import ggufmutate as gm
from tests.c.nativebuild import PLACE, sanitized

MUTANTS = 1000
SEED = 12


@pytest.fixture(scope="module")
def c_parser():
    with gd.CParser(sanitize=True) as c:  # ASan and UBSan: a memory error is a failure, not a verdict
        yield c


def place_plan(path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GGML_NUMA_SHARD_MAP"}
    return subprocess.run([str(sanitized(PLACE)), "--plan", "--json", "--map", "", str(path)],
                          capture_output=True, text=True, errors="surrogateescape", env=env, timeout=60)


def test_seeded_mutants_get_one_verdict(c_parser, tmp_path):
    counts: Counter[str] = Counter()
    problems = []
    for i in range(MUTANTS):
        data, how = gm.mutant(SEED, i)
        o = gd.compare(data, tmp_path / "m.gguf", c_parser)
        counts["accepted" if o.ours.ok else "rejected"] += 1
        counts["planner refuses"] += bool(o.planner)
        counts["reference not asked"] += o.reference is None
        if o.reference is not None and o.reference.ok and not o.ours.ok:
            counts["reference laxer"] += 1
        problems += [f"mutant {i} ({how}): {p}" for p in o.problems]
    assert not problems, "\n".join(problems[:10])
    # The mix is worth something: both verdicts, planner refusals of well-formed files, and
    # rejections the reference would have let through.
    assert counts["accepted"] >= 100 and counts["rejected"] >= 500, counts
    assert counts["planner refuses"] >= 30 and counts["reference laxer"] >= 30, counts


def test_the_issue_s_three_disagreements_are_gone(c_parser, tmp_path):
    """A zero-dimension tensor, a duplicate key and a tensor name that is not UTF-8: rejected by both."""
    zero = gm.copy(gm.seeds()[0])
    name, _, ttype, offset = zero.tensors[1]
    zero.tensors[1] = (name, [], ttype, offset)
    dup = gm.copy(gm.seeds()[0])
    dup.kvs.append(dup.kvs[2])
    latin = gm.copy(gm.seeds()[0])
    _, dims, ttype, offset = latin.tensors[0]
    latin.tensors[0] = ("tête.weight".encode("latin-1"), dims, ttype, offset)
    for h, c_says in ((zero, "has 0 dimensions (at least 1)"), (dup, "key 'general.file_type' appears twice"),
                      (latin, "tensor name of 11 bytes is not UTF-8")):
        path = tmp_path / "bad.gguf"
        o = gd.compare(h.to_bytes(), path, c_parser)
        assert not o.ours.ok and not o.c.ok and not o.problems, o
        proc = place_plan(path)
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.startswith(f"numa-shard-place: {path}: offset ") and c_says in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "raw",
    [b"\xc2\x80", b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xe0\xa0\x80", b"\xed\x9f\xbf", b"\xed\xa0\x80", b"\xef\xbf\xbf",
     b"\xf0\x8f\xbf\xbf", b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
     b"\x80", b"\xc3", b"\xe2\x82", b"\xe2\x28\xa1", b"\xf0\x9f\x98", b"\xff"],
)
def test_utf8_is_the_same_in_c_and_python(c_parser, tmp_path, raw):
    h = gm.copy(gm.seeds()[1])
    _, dims, ttype, offset = h.tensors[0]
    h.tensors[0] = (b"t" + raw, dims, ttype, offset)
    h.kv(b"k" + raw, gb.V.UINT8, b"\0")
    o = gd.compare(h.to_bytes(), tmp_path / "u.gguf", c_parser)
    assert not o.problems, o.problems
    try:
        raw.decode("utf-8")
        assert o.ours.ok
    except UnicodeDecodeError:
        assert not o.ours.ok


def test_numa_shard_place_prints_the_table_the_driver_does(c_parser, tmp_path):
    """gguf_table is numa-shard-place's parser; the tool itself agrees on a sample of mutants."""
    seen = Counter()
    for i in range(0, MUTANTS, 10):
        data, how = gm.mutant(SEED, i)
        path = tmp_path / "m.gguf"
        path.write_bytes(data)
        want = c_parser(path)
        proc = place_plan(path)
        if not want.ok:
            assert proc.returncode == 1 and proc.stderr.strip().endswith(want.error), (how, proc.stderr)
            seen["rejected"] += 1
            continue
        assert proc.returncode == 0, (how, proc.stderr)
        doc = json.loads(proc.stdout)
        got = tuple(sorted(((t["name"], t["type"], t["offset"], t["bytes"]) for t in doc["tensors"]), key=lambda r: (r[2], r[0])))
        assert got == tuple(row[:4] for row in want.table), how
        assert (doc["alignment"], doc["data_offset"]) == (want.alignment, want.data_offset)
        seen["accepted"] += 1
    assert seen["accepted"] >= 10 and seen["rejected"] >= 50, seen


def test_an_overlap_behind_an_empty_tensor_is_found_by_both(c_parser, tmp_path):
    """A [0, 64), an empty tensor at 32, B at 32: the C check once compared neighbours only."""
    h = gb.Header(data=bytes(128))
    h.kv("general.architecture", gb.V.STRING, gb.string("llama"))
    h.tensors = [(b"a", [16], int(gb.Q.F32), 0), (b"empty", [0], int(gb.Q.F32), 32), (b"b", [16], int(gb.Q.F32), 32)]
    o = gd.compare(h.to_bytes(), tmp_path / "o.gguf", c_parser)
    assert not o.ours.ok and "overlap" in o.ours.error and not o.c.ok and "overlap" in o.c.error, o
