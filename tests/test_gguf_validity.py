"""docs/gguf-validity.md, rule by rule: the structure every reader must agree on, and the
planner's keys checked for type and range, each failure one line naming the file and offset."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from coffers_provision import modelgen
from coffers_provision.model import GGUFError, GGUFMetadataError, parse_layout, read_header
from tests import ggufbytes as gb

V = gb.V
ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "tests" / "fixtures" / "numactl" / "aws-c5n-18xlarge-xeon-2s-2node.txt"


def llama() -> gb.Header:
    return gb.from_spec(modelgen.arch_spec("llama"))


def parse(h: gb.Header | bytes):
    data = h if isinstance(h, bytes) else h.to_bytes()
    return parse_layout(lambda off, n: data[off : off + n], len(data), "m.gguf")


def header(h: gb.Header):
    data = h.to_bytes()
    return read_header(lambda off, n: data[off : off + n], len(data), "m.gguf")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coffers_provision", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def with_kv(key: str, vtype: int, payload: bytes) -> gb.Header:
    h = llama()
    h.kv(key, vtype, payload)
    return h


def renamed(h: gb.Header, index: int, name: bytes) -> gb.Header:
    _, dims, ttype, offset = h.tensors[index]
    h.tensors[index] = (name, dims, ttype, offset)
    return h


# Each of these crashed a command (RecursionError, MemoryError, ValueError, AssertionError) or
# passed `model inspect` with exit 0 before the rules existed.
CRASHES = {
    "arrays nested 5000 deep": (with_kv("deep", V.ARRAY, gb.nested(5000)), "arrays in 'deep' nested more than 4 deep"),
    "block_count 2^62": (with_kv("llama.block_count", V.UINT64, gb.scalar(V.UINT64, 2**62)),
                         "llama.block_count is 4611686018427387904; expected an integer in 1..4096"),
    "head_count a string": (with_kv("llama.attention.head_count", V.STRING, gb.string("four")),
                            "llama.attention.head_count is 'four'; expected an integer, or 2 integers (one per block)"),
    "negative block_count": (with_kv("llama.block_count", V.INT32, gb.scalar(V.INT32, -3)),
                             "llama.block_count is -3; expected an integer in 1..4096"),
    "head_count_kv 10^9": (with_kv("llama.attention.head_count_kv", V.UINT32, gb.scalar(V.UINT32, 10**9)),
                           "llama.attention.head_count_kv is 1000000000; expected an integer in 0..4"),
    "absurd layer id": (renamed(llama(), -1, b"blk.99999999999999999999.ffn_up.weight"),
                        "tensor 'blk.99999999999999999999.ffn_up.weight' is in layer 99999999999999999999, but llama.block_count is 2"),
}


@pytest.mark.parametrize("case", CRASHES, ids=str)
def test_each_reported_crash_is_a_one_line_error(tmp_path, case):
    h, message = CRASHES[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(h.to_bytes())
    for args in (["model", "inspect", str(path)], ["plan", "--topology", str(TOPOLOGY), "--model", str(path), "--json"]):
        proc = cli(*args)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
        (line,) = proc.stderr.splitlines()
        assert line.startswith(f"error: {path}: offset ") and line.endswith(message), line


def test_arrays_nest_four_deep_and_no_deeper():
    assert parse(with_kv("deep", V.ARRAY, gb.nested(4))).block_count == 2
    with pytest.raises(GGUFError, match="nested more than 4 deep"):
        parse(with_kv("deep", V.ARRAY, gb.nested(5)))


@pytest.mark.parametrize(
    "key, vtype, payload, message",
    [
        ("llama.block_count", V.BOOL, gb.scalar(V.BOOL, True), "llama.block_count is True"),
        ("llama.block_count", V.FLOAT32, gb.scalar(V.FLOAT32, 2.0), "llama.block_count is 2.0"),
        ("llama.block_count", V.UINT32, gb.scalar(V.UINT32, 0), "llama.block_count is 0"),
        ("llama.context_length", V.UINT64, gb.scalar(V.UINT64, 1 << 40), "llama.context_length is 1099511627776; expected an integer in 1..16777216"),
        ("llama.embedding_length", V.INT32, gb.scalar(V.INT32, -64), "llama.embedding_length is -64"),
        ("llama.attention.head_count", V.ARRAY, gb.array(V.INT32, [4, 4, 4]), "llama.attention.head_count is [4, 4, 4] (3 values); expected an integer, or 2 integers"),
        ("llama.attention.head_count_kv", V.ARRAY, gb.array(V.INT32, [2, 5]), "llama.attention.head_count_kv is [2, 5] (2 values); expected block 1: an integer in 0..4"),
        ("llama.attention.key_length", V.UINT32, gb.scalar(V.UINT32, 0), "llama.attention.key_length is 0; expected an integer in 1..65536"),
        ("llama.expert_count", V.UINT32, gb.scalar(V.UINT32, 10**6), "llama.expert_count is 1000000"),
        ("llama.expert_used_count", V.UINT32, gb.scalar(V.UINT32, 3), "llama.expert_used_count is 3"),
        ("general.architecture", V.STRING, gb.string("ll ama\n"), "general.architecture is 'll ama\\n'"),
    ],
)
def test_planner_keys_are_type_and_range_checked(key, vtype, payload, message):
    h = with_kv(key, vtype, payload)
    if key == "llama.expert_used_count":
        h.kv("llama.expert_count", V.UINT32, gb.scalar(V.UINT32, 2))
    with pytest.raises(GGUFMetadataError) as e:
        parse(h)
    assert message in str(e.value) and str(e.value).startswith("m.gguf: offset ")
    header(h)  # the structure is fine: only the planner refuses it


def test_per_layer_head_counts_are_accepted():
    h = with_kv("llama.attention.head_count", V.ARRAY, gb.array(V.INT32, [4, 2]))
    h.kv("llama.attention.head_count_kv", V.ARRAY, gb.array(V.UINT32, [2, 0]))  # a block without attention
    lay = parse(h)
    assert lay.key("attention.head_count") == [4, 2]
    assert lay.kv_bytes_per_token() == 2 * 2 * 16 * 2  # block 0 only: 2 kv heads x (k + v) x 16 dims x f16


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda h: renamed(h, 0, "é".encode("latin-1") + b".weight"), r"tensor name b'\\xe9.weight' is not UTF-8"),
        (lambda h: renamed(h, 0, b"a\0b"), "holds a NUL byte"),
        (lambda h: renamed(h, 0, b"x" * 64), "tensor name of 64 bytes is longer than 63"),
        (lambda h: h.kv(b"\xff\xfe", V.UINT8, b"\0") or h, r"metadata key b'\\xff\\xfe' is not UTF-8"),
        (lambda h: h.kv(b"k" * 65536, V.UINT8, b"\0") or h, "metadata key of 65536 bytes is longer than 65535"),
        (lambda h: h.kv("general.alignment", V.UINT64, gb.scalar(V.UINT64, 64)) or h, "general.alignment has value type 10, not uint32"),
        (lambda h: h.kvs.append(h.kvs[1]) or h, "key 'general.name' appears twice"),
        (lambda h: h.tensors.append(h.tensors[2]) or h, "appears twice"),
    ],
)
def test_structural_rules(mutate, message):
    with pytest.raises(GGUFError, match=message):
        header(mutate(llama()))


def test_a_zero_dimension_tensor_is_rejected():
    h = llama()
    name, _, _, offset = h.tensors[1]
    h.tensors[1] = (name, [], int(gb.Q.F32), offset)
    with pytest.raises(GGUFError, match="has 0 dimensions"):
        header(h)


def test_overlapping_tensors_are_rejected():
    h = llama()
    name, dims, ttype, _ = h.tensors[3]
    h.tensors[3] = (name, dims, ttype, h.tensors[2][3])
    with pytest.raises(GGUFError, match="overlap"):
        header(h)


def test_a_string_value_that_is_not_text_is_kept_out_of_the_metadata():
    h = with_kv("general.note", V.STRING, gb.string(b"\xff\xfe"))
    lay = parse(h)
    assert "general.note" not in lay.metadata


def test_q8_1_is_36_bytes_a_block_as_in_ggml():
    h = llama()
    name, _, _, offset = h.tensors[0]
    h.tensors[0] = (name, [64], int(gb.Q.Q8_1), offset)
    (t,) = [t for t in header(h).tensors if t.name == name.decode()]
    assert t.n_bytes == 2 * 36


def test_a_long_string_value_is_skipped_unread():
    """A 64 MiB chat template costs no read: only the bytes around it are fetched."""
    h = with_kv("tokenizer.chat_template", V.STRING, gb.string(b"{" * (64 << 20)))
    data = h.to_bytes()
    reads: list[int] = []

    def read_at(off: int, n: int) -> bytes:
        reads.append(n)
        return data[off : off + n]

    hdr = read_header(read_at, len(data), "m.gguf", first_read=4096)
    assert "tokenizer.chat_template" in hdr.metadata and sum(reads) < 1 << 20


def test_lying_counts_fail_before_anything_is_allocated():
    h = llama()
    h.n_tensors = 1 << 62
    with pytest.raises(GGUFError, match="4611686018427387904 tensors cannot fit"):
        header(h)
    h = with_kv("big", V.ARRAY, struct.pack("<IQ", V.ARRAY, 1 << 60))
    with pytest.raises(GGUFError, match="claims 1152921504606846976 elements"):
        header(h)
