"""Bad GGUF input: each failure is a GGUFError naming the file (and the offset when it helps)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from gguf import GGUFWriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coffers_provision import modelgen
from coffers_provision.model import GGUFError, parse_layout, read_layout


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("good") / "llama.gguf"
    modelgen.write_arch(path, "llama")
    return path.read_bytes()


def parse_bytes(data: bytes, source: str = "m.gguf"):
    return parse_layout(lambda off, n: data[off : off + n], len(data), source)


def write(tmp_path, data: bytes):
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    return path


def test_good_file_parses(good):
    assert parse_bytes(good).block_count == 2


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not a GGUF file: only 0 bytes"),
        (b"available: 2 nodes (0-1)\n", "not a GGUF file: magic is b'avai'"),
        (b"GGU", "not a GGUF file: only 3 bytes"),
        (b"GGUF\x03\x00", "truncated: version needs 4 bytes"),
    ],
)
def test_not_gguf(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(GGUFError) as e:
        read_layout(path)
    assert message in str(e.value) and str(path) in str(e.value)


@pytest.mark.parametrize(
    "version, message",
    [(1, "GGUF version 1 is not supported"), (4, "unknown GGUF version 4"), (0x03000000, "big-endian")],
)
def test_versions(good, version, message):
    bad = good[:4] + struct.pack("<I", version) + good[8:]
    with pytest.raises(GGUFError, match=message) as e:
        parse_bytes(bad)
    assert e.value.offset == 4


def test_version_2_reads_like_3(good):
    v2 = good[:4] + struct.pack("<I", 2) + good[8:]
    assert parse_bytes(v2).tensors == parse_bytes(good).tensors


def test_truncated_header(good):
    lay = parse_bytes(good)
    for cut in (12, 30, 500, lay.data_offset - 40):
        with pytest.raises(GGUFError, match="truncated") as e:
            parse_bytes(good[:cut], "cut.gguf")
        assert str(e.value).startswith("cut.gguf: offset ")


def test_truncated_data(good, tmp_path):
    path = write(tmp_path, good[:-100])
    with pytest.raises(GGUFError, match=r"truncated: tensor 'blk\.1\.ffn_down\.weight' ends at byte \d+, the file has \d+ bytes"):
        read_layout(path)


def test_absurd_counts(good):
    bad = good[:8] + struct.pack("<Q", 1 << 40) + good[16:]
    with pytest.raises(GGUFError, match="truncated or corrupt: 1099511627776 tensors"):
        parse_bytes(bad)


def test_string_longer_than_the_file(good):
    # the first key's length field sits right after the 24-byte header
    bad = good[:24] + struct.pack("<Q", 1 << 50) + good[32:]
    with pytest.raises(GGUFError, match="corrupt: metadata key claims") as e:
        parse_bytes(bad)
    assert e.value.offset == 24


def test_unknown_value_type(good):
    (klen,) = struct.unpack_from("<Q", good, 24)
    at = 32 + klen  # the value type of the first key
    bad = good[:at] + struct.pack("<I", 99) + good[at + 4 :]
    with pytest.raises(GGUFError, match="unknown value type 99 for key 'general.architecture'"):
        parse_bytes(bad)


def test_unknown_tensor_type(good):
    name = b"token_embd.weight"
    at = good.index(name) + len(name)
    (n_dims,) = struct.unpack_from("<I", good, at)
    type_at = at + 4 + 8 * n_dims
    bad = good[:type_at] + struct.pack("<I", 77) + good[type_at + 4 :]
    with pytest.raises(GGUFError, match="tensor 'token_embd.weight' has unknown type 77") as e:
        parse_bytes(bad)
    assert e.value.offset == type_at


def test_no_architecture(tmp_path):
    path = tmp_path / "noarch.gguf"
    w = GGUFWriter(str(path), "")  # an empty architecture is not written at all
    w.add_tensor("x", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(GGUFError, match="no general.architecture key"):
        read_layout(path)


def test_directory_and_missing(tmp_path):
    with pytest.raises(GGUFError, match="is a directory"):
        read_layout(tmp_path)
    with pytest.raises(GGUFError, match="cannot read: No such file"):
        read_layout(tmp_path / "absent.gguf")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_corrupt_header_never_crashes(good, data):
    """Any damage to the header is either still readable or a GGUFError, never another exception."""
    lay = parse_bytes(good)
    buf = bytearray(good)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, lay.data_offset - 1))
        buf[at] = data.draw(st.integers(0, 255))
    try:
        parse_bytes(bytes(buf))
    except GGUFError as e:
        assert str(e).startswith("m.gguf")
