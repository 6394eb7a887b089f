"""numa-shard-place on this machine: its GGUF reading agrees with the gguf package, placement
and --verify report 100% on node 0, --evict empties the cache, and malformed files fail clearly."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import gguf
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T

from coffers_provision import shardmap
from coffers_provision.facts.numa import parse_sysfs
from tests.c.nativebuild import C_TESTS, PLACE, build, sanitized

PAGE = os.sysconf("SC_PAGESIZE")
MEMORY_NODES = parse_sysfs("/sys/devices/system/node").memory_nodes


def place(*args: str, env: dict[str, str] | None = None, asan: bool = True) -> subprocess.CompletedProcess:
    binary = sanitized(PLACE) if asan else build(PLACE)
    full_env = {k: v for k, v in os.environ.items() if k != "GGML_NUMA_SHARD_MAP"} | (env or {})
    return subprocess.run([str(binary), *args], capture_output=True, text=True, env=full_env, timeout=300)


def write_model(path: Path, *, layers: int = 6, alignment: int | None = None) -> Path:
    """A small llama-like model with F32, F16, Q8_0 and Q4_K tensors of page-straddling sizes."""
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(layers)
    w.add_array("tokenizer.ggml.tokens", [f"t{i}" for i in range(300)])
    if alignment:
        w.add_custom_alignment(alignment)

    def quant(name: str, qtype: T, rows: int, cols: int) -> None:
        block, size = GGML_QUANT_SIZES[qtype]
        w.add_tensor(name, rng.integers(0, 255, (rows, cols // block * size), dtype=np.uint8), raw_dtype=qtype)

    w.add_tensor("token_embd.weight", rng.random((96, 1000), dtype=np.float32))
    for b in range(layers):
        w.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(1000, np.float32))
        w.add_tensor(f"blk.{b}.attn_q.weight", rng.random((200, 1000)).astype(np.float16))
        w.add_tensor(f"blk.{b}.attn_q_norm.weight", np.ones(100, np.float32))
        quant(f"blk.{b}.ffn_up.weight", T.Q8_0, 300, 1024)
        quant(f"blk.{b}.ffn_down.weight", T.Q4_K, 170, 1024)
    w.add_tensor("output_norm.weight", np.ones(1000, np.float32))
    w.add_tensor("output.weight", rng.random((130, 1000), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "model.gguf")


def planned_pages(path: Path) -> int:
    pages: set[int] = set()
    for t in gguf.GGUFReader(str(path)).tensors:
        if t.n_bytes:
            pages.update(range(t.data_offset // PAGE, (t.data_offset + t.n_bytes - 1) // PAGE + 1))
    return len(pages)


# -- reading the model ------------------------------------------------------------------------

@pytest.mark.parametrize("alignment", [None, 64, 4096])
def test_plan_matches_the_gguf_package(tmp_path, alignment):
    path = write_model(tmp_path / "m.gguf", layers=3, alignment=alignment)
    smap = "0-1:node0,attn:node0"
    proc = place("--plan", "--json", "--map", smap, str(path))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["alignment"] == (alignment or 32)
    reader = gguf.GGUFReader(str(path))
    want = sorted(((t.name, t.tensor_type.name, int(t.data_offset), int(t.n_bytes)) for t in reader.tensors),
                  key=lambda x: x[2])
    assert [(t["name"], t["type"], t["offset"], t["bytes"]) for t in got["tensors"]] == want
    parsed = shardmap.parse(smap)
    assert [t["node"] for t in got["tensors"]] == [parsed.node_for(t["name"], MEMORY_NODES) for t in got["tensors"]]


def test_type_table_matches_the_gguf_package(tmp_path):
    """One tensor of every ggml type the gguf package knows, sized by its table."""
    w = gguf.GGUFWriter(str(tmp_path / "types.gguf"), "llama")
    types = [q for q in T if q != T.Q8_1]  # gguf-py still lists Q8_1 as 40 bytes; ggml's block_q8_1 is 36
    for q in types:
        block, size = GGML_QUANT_SIZES[q]
        w.add_tensor(f"t{int(q)}", np.zeros((3, 2 * size), np.uint8), raw_dtype=q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    proc = place("--plan", "--json", "--map", "", str(tmp_path / "types.gguf"))
    assert proc.returncode == 0, proc.stderr
    got = {t["name"]: t for t in json.loads(proc.stdout)["tensors"]}
    for q in types:
        assert got[f"t{int(q)}"]["type"] == q.name
        assert got[f"t{int(q)}"]["bytes"] == 3 * 2 * GGML_QUANT_SIZES[q][1]
    q8_1 = gguf_blob(tensors=[("q", [64], int(T.Q8_1), 0)], data=bytes(72))
    proc = place("--plan", "--json", "--map", "", str(write(tmp_path / "q8_1.gguf", q8_1)))
    assert json.loads(proc.stdout)["tensors"][0]["bytes"] == 2 * 36


# -- placing on this machine ------------------------------------------------------------------

def test_place_then_verify_reports_every_page_on_node_zero(model):
    env = {"GGML_NUMA_SHARD_MAP": "0-2:node0,3-5:0,*:node0"}  # the unit's Environment=
    proc = place("--json", str(model), env=env)
    assert proc.returncode == 0, proc.stderr
    placed = json.loads(proc.stdout)
    assert placed["mode"] == "place" and placed["ok"]
    assert placed["total"]["planned_pages"] == planned_pages(model)
    assert placed["total"]["on_node_pages"] == placed["total"]["planned_pages"]
    assert [n["node"] for n in placed["nodes"]] == [0]
    assert placed["nodes"][0]["tensors"] == len(gguf.GGUFReader(str(model)).tensors)

    proc = place("--verify", str(model), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "verify: 100.000% of the model's pages on their planned node" in proc.stdout
    assert f"{0:<6d}" in proc.stdout.splitlines()[2]


def test_evict_drops_the_cache_and_verify_fails_below_the_threshold(tmp_path):
    path = write_model(tmp_path / "fresh.gguf", layers=2)  # its pages are cached and dirty
    proc = place("--evict", "--json", "--map", "", str(path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["evict"] == {"still_cached_pages": 0}
    assert result["total"]["percent"] == 100.0

    # Now drop the cache behind the tool's back. Freshly read pages can sit in per-CPU LRU
    # batches for a moment, where DONTNEED cannot drop them, so try a few times.
    for _ in range(50):
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        proc = place("--verify", "--json", "--map", "", str(path))
        if proc.returncode != 0:
            break
        time.sleep(0.1)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["total"]["resident_pages"] < result["total"]["planned_pages"] and not result["ok"]
    assert place("--verify", "--min-percent", "0", "--map", "", str(path)).returncode == 0


def test_unoptimised_and_sanitized_builds_agree(model):
    a = json.loads(place("--plan", "--json", "--map", "", str(model)).stdout)
    b = json.loads(place("--plan", "--json", "--map", "", str(model), asan=False).stdout)
    assert a == b


# -- bad input ---------------------------------------------------------------------------------

def gguf_string(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(raw)) + raw


def gguf_blob(*, magic: bytes = b"GGUF", version: int = 3, kvs=(), tensors=(), alignment: int = 32,
              data: bytes = b"", n_tensors: int | None = None, n_kv: int | None = None) -> bytes:
    """A GGUF file built field by field: kvs are (key, type, payload), tensors (name, dims, type, offset)."""
    out = bytearray(magic + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                        len(kvs) if n_kv is None else n_kv))
    for key, vtype, payload in kvs:
        out += gguf_string(key) + struct.pack("<I", vtype) + payload
    for name, dims, ttype, offset in tensors:
        out += gguf_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ttype, offset)
    out += bytes(-len(out) % alignment)
    return bytes(out + data)


def write(path: Path, blob: bytes) -> Path:
    path.write_bytes(blob)
    return path


F32 = int(T.F32)
GOOD = [("a.weight", [8], F32, 0), ("b.weight", [8], F32, 32)]
BAD_FILES = {
    "empty": (b"", "offset 0: not a GGUF file"),
    "wrong magic": (b"GGML" + bytes(40), "offset 0: not a GGUF file (no GGUF magic)"),
    "version 1": (gguf_blob(version=1), "offset 4: GGUF version 1 is not supported (only 2 and 3)"),
    "version 4": (gguf_blob(version=4), "GGUF version 4 is not supported"),
    "big-endian": (b"GGUF" + struct.pack(">I", 3) + bytes(16), "offset 4: big-endian GGUF is not supported"),
    "truncated counts": (gguf_blob()[:12], "the tensor count (8 bytes) runs past the end of the file"),
    "absurd tensor count": (gguf_blob(n_tensors=1 << 60), "1152921504606846976 tensors cannot fit"),
    "absurd kv count": (gguf_blob(n_kv=1 << 62), "key-value pairs cannot fit"),
    "key past end": (gguf_blob(n_kv=1, alignment=1) + struct.pack("<Q", 1 << 40) + bytes(16),
                     "offset 24: a key (1099511627776 bytes) runs past the end of the file (48 bytes)"),
    "unknown value type": (gguf_blob(kvs=[("k", 13, b"\0" * 8)]), "unknown value type 13"),
    "array past end": (gguf_blob(kvs=[("k", 9, struct.pack("<IQ", 4, 1 << 40))]), "array of 1099511627776 values"),
    "string array past end": (gguf_blob(kvs=[("k", 9, struct.pack("<IQ", 8, 1 << 40))]), "runs past the end"),
    "nested arrays": (gguf_blob(kvs=[("k", 9, struct.pack("<IQ", 9, 1) * 5 + struct.pack("<IQ", 4, 0))]),
                      "arrays nested more than 4 deep"),
    "alignment type": (gguf_blob(kvs=[("general.alignment", 10, struct.pack("<Q", 64))]),
                       "general.alignment has value type 10, not uint32"),
    "alignment not a power of two": (gguf_blob(kvs=[("general.alignment", 4, struct.pack("<I", 48))]),
                                     "general.alignment 48 is not a power of two"),
    "unknown tensor type": (gguf_blob(tensors=[("x", [8], 99, 0)], data=bytes(32)),
                            "tensor 'x' has unknown ggml type 99"),
    "retired tensor type": (gguf_blob(tensors=[("x", [32], 4, 0)], data=bytes(32)), "unknown ggml type 4"),
    "too many dims": (gguf_blob(tensors=[("x", [1, 1, 1, 1, 8], F32, 0)], data=bytes(32)),
                      "tensor 'x' has 5 dimensions (at most 4)"),
    "partial block": (gguf_blob(tensors=[("x", [33], int(T.Q8_0), 0)], data=bytes(64)),
                      "33 elements per row is not a multiple of the Q8_0 block (32)"),
    "element overflow": (gguf_blob(tensors=[("x", [1 << 40, 1 << 40], F32, 0)], data=bytes(32)),
                         "tensor 'x' has too many elements"),
    "name too long": (gguf_blob(tensors=[("n" * 64, [8], F32, 0)], data=bytes(32)), "tensor name of 64 bytes"),
    "misaligned offset": (gguf_blob(tensors=[("x", [8], F32, 4)], data=bytes(64)),
                          "tensor 'x' offset 4 is not a multiple of the alignment 32"),
    "tensor past end": (gguf_blob(tensors=GOOD, data=bytes(40)),
                        "tensor 'b.weight' (32 bytes at data offset 32) runs past the end of the file"),
    "duplicate name": (gguf_blob(tensors=[GOOD[0], ("a.weight", [8], F32, 32)], data=bytes(64)),
                       "tensor 'a.weight' appears twice"),
    "overlap": (gguf_blob(tensors=[("a", [16], F32, 0), ("b", [8], F32, 32)], data=bytes(96)),
                "tensors 'a' and 'b' overlap"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=str)
def test_malformed_files_fail_with_a_clear_message(tmp_path, case):
    blob, message = BAD_FILES[case]
    proc = place("--map", "", str(write(tmp_path / "bad.gguf", blob)))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("numa-shard-place: ") and message in proc.stderr, proc.stderr
    assert "Sanitizer" not in proc.stderr


def test_a_well_formed_hand_built_file_is_accepted(tmp_path):
    proc = place("--plan", "--json", "--map", "", str(write(tmp_path / "ok.gguf", gguf_blob(tensors=GOOD, data=bytes(64)))))
    assert proc.returncode == 0, proc.stderr
    # 24 bytes of header, two 40-byte tensor infos, aligned up to 32: data at 128.
    assert [t["offset"] for t in json.loads(proc.stdout)["tensors"]] == [128, 160]


def test_every_truncation_of_a_real_model_fails_cleanly(tmp_path, model):
    blob = model.read_bytes()
    header_end = min(t.data_offset for t in gguf.GGUFReader(str(model)).tensors)
    for cut in sorted({0, 3, 4, 8, 16, 23, 24, 40, header_end // 3, header_end // 2, header_end - 1, header_end,
                       header_end + 100, len(blob) - 1}):
        proc = place("--map", "", str(write(tmp_path / "cut.gguf", blob[:cut])))
        assert proc.returncode == 1, (cut, proc.stdout, proc.stderr)
        assert "numa-shard-place: " in proc.stderr and "Sanitizer" not in proc.stderr, (cut, proc.stderr)


@pytest.mark.parametrize(
    "args, env, status, message",
    [
        ([], {}, 2, "no model given"),
        (["--frob", "m"], {}, 2, "unknown option or missing value: '--frob'"),
        (["--min-percent", "101", "m"], {}, 2, "--min-percent: expected a number in 0..100, got '101'"),
        (["--evict", "--verify", "m"], {}, 2, "--evict changes the page cache; --verify only looks"),
        (["MODEL"], {}, 1, "no map: set GGML_NUMA_SHARD_MAP or pass --map"),
        (["MODEL"], {"GGML_NUMA_SHARD_MAP": "0-3:node0,,4:node0"}, 1, "GGML_NUMA_SHARD_MAP position 11 (''): empty rule"),
        (["--map", "attn:node1023", "MODEL"], {}, 1, "position 1 ('attn:node1023'): node 1023 is offline or does not exist"),
        (["--map", "", "/nonexistent.gguf"], {}, 1, "/nonexistent.gguf: No such file or directory"),
        (["--map", "", "/"], {}, 1, "/: not a regular file"),
    ],
)
def test_bad_usage_fails_clearly(model, args, env, status, message):
    proc = place(*[str(model) if a == "MODEL" else a for a in args], env=env)
    assert proc.returncode == status, proc.stderr
    assert message in proc.stderr


# -- place_check, the lab's placement check, here on one node ------------------------------

@pytest.mark.parametrize("mode", ["anon", "file", "model"])
def test_place_check_passes_on_node_zero(mode, model, tmp_path):
    args = [str(model)] if mode == "model" else ["--mode", mode, "--dir", str(tmp_path), "--size-mb", "8"]
    proc = subprocess.run([str(sanitized(C_TESTS / "place_check.c")), "--json", *args], capture_output=True, text=True,
                          env={**os.environ, "GGML_NUMA_SHARD_MAP": "0-3:node0,*:node0"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["mode"] == mode and got["ok"] and got["percent"] == 100.0
    assert got["on_node"] == got["pages"] == sum(t["pages"] for t in got["per_tensor"]) > 0
    assert all(t["assign"] == t["node"] == 0 for t in got["per_tensor"])
    if mode == "model":
        assert [t["name"] for t in got["per_tensor"]] == [t.name for t in sorted(
            gguf.GGUFReader(str(model)).tensors, key=lambda t: t.data_offset)]
    assert not list(tmp_path.iterdir())  # the file mode cleans up


def test_place_check_refuses_a_map_naming_an_absent_node():
    proc = subprocess.run([str(sanitized(C_TESTS / "place_check.c"))], capture_output=True, text=True,
                          env={**os.environ, "GGML_NUMA_SHARD_MAP": "0-3:node1023"}, timeout=60)
    assert proc.returncode == 1 and "node 1023 is offline or does not exist" in proc.stderr


def test_a_node_that_refuses_pages_is_named_and_exits_4():
    """tests/c/place_refused.c feeds the kernel's per-page refusals to the tool's own
    accounting: each refusing node is named with its count and reason, exit 4."""
    proc = subprocess.run([str(sanitized(C_TESTS / "place_refused.c"))], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4, proc.stderr
    assert proc.stdout == "moved 1 0 1 failed 2 1 0\n"
    assert proc.stderr.splitlines() == [
        "numa-shard-place: model.gguf: node 1 could not take 2 of its 3 pages: Cannot allocate memory (the node has no free memory left)",
        "numa-shard-place: model.gguf: node 2 could not take 1 of its 1 pages: Device or resource busy (the pages are locked, pinned or under I/O)",
    ]
