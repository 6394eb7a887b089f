"""modelgen: the loadable llama model (metadata, vocabulary, weights) and the CLI entry."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from gguf import GGUFReader, GGUFValueType

from coffers_provision import modelgen
from coffers_provision.model import read_layout


def field(reader: GGUFReader, key: str):
    f = reader.fields[key]
    if f.types[0] == GGUFValueType.ARRAY:
        if f.types[-1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode() for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    if f.types[0] == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode()
    return f.parts[f.data[0]][0].item()


@pytest.fixture(scope="module")
def small_llama(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama") / "small.gguf"
    modelgen.write_llama(path, n_layers=4, dim=256, n_head=4, n_head_kv=2, ffn=512, seed=3)
    return path


def test_llama_metadata_a_loader_needs(small_llama):
    r = GGUFReader(small_llama)
    assert field(r, "general.architecture") == "llama"
    assert field(r, "general.file_type") == 1  # mostly F16
    expect = {
        "llama.block_count": 4, "llama.embedding_length": 256, "llama.feed_forward_length": 512,
        "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2, "llama.rope.dimension_count": 64,
        "llama.context_length": 2048, "llama.vocab_size": 259,
        "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0,
    }
    for key, value in expect.items():
        assert field(r, key) == value, key
    assert field(r, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    assert field(r, "tokenizer.ggml.model") == "llama"


def test_byte_vocabulary(small_llama):
    r = GGUFReader(small_llama)
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    scores = field(r, "tokenizer.ggml.scores")
    assert len(tokens) == len(types) == len(scores) == 259
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and types[:3] == [2, 3, 3]
    assert tokens[3:] == [f"<0x{b:02X}>" for b in range(256)] and set(types[3:]) == {6}
    assert tokens[3 + 0x0A] == "<0x0A>"  # the newline byte token a loader looks for


def test_llama_tensors_and_weights(small_llama):
    lay = read_layout(small_llama)
    assert lay.layers == (0, 1, 2, 3)
    names = {t.name: t for t in lay.tensors}
    assert names["token_embd.weight"].shape == (256, 259) and names["output.weight"].shape == (256, 259)
    assert names["blk.0.attn_k.weight"].shape == (256, 128)  # 2 KV heads x 64
    assert names["blk.3.ffn_down.weight"].shape == (512, 256)
    assert {t.type for t in lay.tensors if len(t.shape) == 2} == {"F16"}
    assert {t.type for t in lay.tensors if len(t.shape) == 1} == {"F32"}
    r = GGUFReader(small_llama)
    for t in r.tensors:
        data = np.asarray(t.data, dtype=np.float32)
        assert np.isfinite(data).all(), t.name
        if t.name.endswith("norm.weight"):
            assert abs(float(data.mean()) - 1.0) < 0.05
        else:
            assert 0.01 < float(data.std()) < 0.03  # small random weights keep activations sane
    # a different seed gives different weights; the same seed the same file
    other = small_llama.with_name("other.gguf")
    modelgen.write_llama(other, n_layers=4, dim=256, n_head=4, n_head_kv=2, ffn=512, seed=3)
    assert other.read_bytes() == small_llama.read_bytes()
    modelgen.write_llama(other, n_layers=4, dim=256, n_head=4, n_head_kv=2, ffn=512, seed=4)
    assert other.read_bytes() != small_llama.read_bytes()


def test_default_llama_is_lab_sized():
    spec = modelgen.llama_spec()
    assert 64 * 2**20 <= spec.n_bytes() <= 128 * 2**20
    with pytest.raises(ValueError, match="must divide"):
        modelgen.llama_spec(dim=250, n_head=4)


def test_cli_entry(tmp_path):
    out = tmp_path / "m.gguf"
    proc = subprocess.run([sys.executable, "-m", "coffers_provision.modelgen", "llama", str(out), "--layers", "2",
                           "--dim", "256", "--heads", "4", "--kv-heads", "4", "--ffn", "256"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"{out}: {out.stat().st_size} bytes" in proc.stdout
    assert read_layout(out).block_count == 2
    proc = subprocess.run([sys.executable, "-m", "coffers_provision.modelgen", "llama70b", str(tmp_path / "big.gguf"),
                           "--vocab-tokens", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert read_layout(tmp_path / "big.gguf").layers == tuple(range(80))
    proc = subprocess.run([sys.executable, "-m", "coffers_provision.modelgen", "llama", str(tmp_path / "x.gguf"), "--dim", "250"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "must divide" in proc.stderr
