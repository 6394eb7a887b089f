"""libFuzzer runs of the map parser and the GGUF header parser, under ASan and UBSan, for a
bounded time from the seed corpus in tests/c/corpus/ (copied, so the repo stays unchanged)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.c.nativebuild import C_TESTS, compile_c

FUZZ_SECONDS = 25
FUZZ_FLAGS = ("-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all")


@pytest.mark.slow
@pytest.mark.parametrize("target, corpus", [("fuzz_map", "map"), ("fuzz_gguf", "gguf")])
def test_fuzzer_runs_clean(target, corpus, tmp_path):
    exe = compile_c(C_TESTS / f"{target}.c", tmp_path / target, "clang", FUZZ_FLAGS)
    work = tmp_path / "corpus"
    shutil.copytree(C_TESTS / "corpus" / corpus, work)
    seeds = len(list(work.iterdir()))
    proc = subprocess.run(
        [str(exe), f"-max_total_time={FUZZ_SECONDS}", "-timeout=10", "-rss_limit_mb=2048", "-max_len=8192",
         f"-artifact_prefix={tmp_path}/", str(work)],
        capture_output=True, text=True, timeout=FUZZ_SECONDS + 120,
    )
    tail = proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    assert "ERROR: " not in proc.stderr and "runtime error" not in proc.stderr, tail
    runs = int(proc.stderr.rsplit("Done ", 1)[1].split()[0])
    assert runs > 10_000, tail  # it really fuzzed
    assert len(list(work.iterdir())) > seeds, "the fuzzer found no new coverage"
