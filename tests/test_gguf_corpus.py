"""The committed GGUF corpus (tests/c/corpus/gguf, written by tests/c/make_corpus.py) as a
regression set: every file gets one verdict from our reader, the C parser and the reference
(tests/ggufdiff.py), and the libFuzzer harness runs each file once under ASan and UBSan."""

from __future__ import annotations

import subprocess

from tests import ggufdiff as gd
from tests.c.nativebuild import C_TESTS, compile_c

CORPUS = C_TESTS / "corpus" / "gguf"
FILES = sorted(CORPUS.iterdir())


def test_the_corpus_is_bounded():
    assert 20 <= len(FILES) <= 100 and sum(f.stat().st_size for f in FILES) < 1 << 20


def test_every_corpus_file_gets_one_verdict(tmp_path):
    problems, accepted = [], 0
    with gd.CParser(sanitize=True) as c:
        for f in FILES:
            o = gd.compare(f.read_bytes(), tmp_path / f.name, c)
            accepted += o.ours.ok
            problems += [f"{f.name}: {p}" for p in o.problems]
    assert not problems, "\n".join(problems)
    assert 5 <= accepted < len(FILES)


def test_the_fuzz_harness_runs_the_corpus_clean(tmp_path):
    exe = compile_c(C_TESTS / "fuzz_gguf.c", tmp_path / "fuzz_gguf", "clang",
                    ("-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all"))
    proc = subprocess.run([str(exe), "-runs=0", *map(str, FILES)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ERROR: " not in proc.stderr and "runtime error" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.count("Running: ") == len(FILES), proc.stderr[-3000:]
