"""Model layout: real GGUF files written by modelgen, read back and cross-checked with gguf's reader."""

from __future__ import annotations

import os

import pytest
from gguf import GGUFReader

from coffers_provision import modelgen
from coffers_provision.connect.local import LocalConnector
from coffers_provision.model import (
    ATTENTION, EMBEDDING, EXPERTS, FFN, NORM, OTHER, OUTPUT, ROUTER, SHARED_EXPERTS,
    classify, read_layout, read_remote_layout,
)


@pytest.fixture(scope="module")
def arch_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("arch")
    return {a: (root / f"{a}.gguf", modelgen.write_arch(root / f"{a}.gguf", a)) for a in modelgen.ARCHS}


@pytest.fixture(scope="module")
def sparse70b(tmp_path_factory):
    path = tmp_path_factory.mktemp("sparse") / "llama-70b.gguf"
    spec = modelgen.llama70b_spec()
    modelgen.vocab_spec(spec, 128256)
    size = modelgen.write_header_only(path, spec)
    return path, spec, size


# What each architecture must contain (kind of a few exact names) and must not.
EXPECT = {
    "llama": {"blk.0.attn_q.weight": ATTENTION, "blk.1.ffn_down.weight": FFN, "output.weight": OUTPUT},
    "mixtral": {"blk.0.ffn_gate_inp.weight": ROUTER, "blk.1.ffn_up_exps.weight": EXPERTS},
    "qwen2": {"blk.0.attn_q.bias": ATTENTION, "blk.0.ffn_gate.weight": FFN},
    "qwen3": {"blk.0.attn_q_norm.weight": NORM, "blk.0.attn_k_norm.weight": NORM},
    "qwen3moe": {"blk.1.ffn_down_exps.weight": EXPERTS, "blk.1.ffn_gate_inp.weight": ROUTER, "blk.0.attn_k_norm.weight": NORM},
    "gemma2": {"blk.0.post_attention_norm.weight": NORM, "blk.0.post_ffw_norm.weight": NORM, "token_embd.weight": EMBEDDING},
    "gemma3": {"blk.1.attn_q_norm.weight": NORM, "blk.1.ffn_up.weight": FFN},
    "deepseek2": {
        "blk.0.ffn_gate.weight": FFN,  # the leading dense layer
        "blk.1.attn_kv_a_mqa.weight": ATTENTION,
        "blk.1.attn_q_a.weight": ATTENTION,
        "blk.1.attn_q_b.weight": ATTENTION,
        "blk.1.attn_kv_a_norm.weight": NORM,
        "blk.1.ffn_gate_exps.weight": EXPERTS,
        "blk.1.ffn_up_shexp.weight": SHARED_EXPERTS,
        "blk.1.ffn_gate_inp.weight": ROUTER,
        "blk.1.exp_probs_b.bias": ROUTER,
    },
    "gpt-oss": {"blk.0.attn_sinks.weight": ATTENTION, "blk.1.ffn_down_exps.bias": EXPERTS, "blk.0.ffn_gate_inp.bias": ROUTER},
}
NO_OUTPUT = {"gemma2", "gemma3"}  # tied embeddings


@pytest.mark.parametrize("arch", modelgen.ARCHS)
def test_arch_layout_matches_the_spec_and_ggufs_reader(arch_files, arch):
    path, size = arch_files[arch]
    lay = read_layout(path)
    spec = modelgen.arch_spec(arch)
    assert lay.architecture == ("llama" if arch == "mixtral" else arch)
    assert lay.block_count == 2 and lay.layers == (0, 1)
    assert lay.file_size == size == os.path.getsize(path)
    assert [(t.name, t.type, t.shape) for t in lay.tensors] == [(n, q.name, s) for n, s, q in spec.tensors]
    assert lay.total_bytes == spec.n_bytes()
    # The package's own reader (whole file mapped) agrees on every tensor's type, size and offset.
    ref = GGUFReader(path)
    assert [(t.name, t.type, t.n_bytes, t.offset) for t in lay.tensors] == [
        (t.name, t.tensor_type.name, int(t.n_bytes), int(t.data_offset)) for t in ref.tensors
    ]
    assert lay.header_bytes_read == size  # the whole tiny file fits the first read


@pytest.mark.parametrize("arch", modelgen.ARCHS)
def test_arch_classification(arch_files, arch):
    lay = read_layout(arch_files[arch][0])
    kinds = {t.name: t.kind for t in lay.tensors}
    for name, kind in EXPECT[arch].items():
        assert kinds[name] == kind, name
    assert (OUTPUT in lay.kind_bytes) == (arch not in NO_OUTPUT)
    assert kinds["token_embd.weight"] == EMBEDDING and kinds["output_norm.weight"] == NORM
    assert OTHER not in lay.kind_bytes
    moe = arch in ("mixtral", "qwen3moe", "deepseek2", "gpt-oss")
    assert (EXPERTS in lay.kind_bytes) == moe and (ROUTER in lay.kind_bytes) == moe
    assert (SHARED_EXPERTS in lay.kind_bytes) == (arch == "deepseek2")
    # per-layer sums add up to the total
    assert sum(sum(k.values()) for k in lay.bytes_by_layer_kind.values()) == lay.total_bytes


def test_deepseek2_leading_dense_layer(arch_files):
    lay = read_layout(arch_files["deepseek2"][0])
    assert lay.key("leading_dense_block_count") == 1
    by_layer = lay.bytes_by_layer_kind
    assert FFN in by_layer[0] and EXPERTS not in by_layer[0]
    assert EXPERTS in by_layer[1] and FFN not in by_layer[1]


@pytest.mark.parametrize(
    "name, kind",
    [
        ("blk.12.ffn_gate_inp_shexp.weight", SHARED_EXPERTS),
        ("blk.3.ffn_gate_up_exps.weight", EXPERTS),
        ("blk.0.attn_qkv.weight", ATTENTION),
        ("blk.7.layer_output_norm.weight", NORM),
        ("rope_freqs.weight", OTHER),
        ("token_embd_norm.weight", NORM),
        ("per_layer_token_embd.weight", EMBEDDING),
        ("blk.61.nextn.eh_proj.weight", OTHER),
    ],
)
def test_classify_names(name, kind):
    assert classify(name) == kind


def test_kv_bytes_per_token(arch_files):
    llama = read_layout(arch_files["llama"][0])
    # 2 layers x 2 KV heads x (16 + 16) dims x 2 bytes
    assert llama.kv_bytes_per_token("f16") == 2 * 2 * 32 * 2
    assert llama.kv_bytes_per_token("q8_0") == 2 * 2 * 32 * 34 // 32
    ds = read_layout(arch_files["deepseek2"][0])
    # MLA: 2 layers x (2 x kv_lora_rank 32 + rope 16) x 2 bytes
    assert ds.kv_bytes_per_token("f16") == 2 * (2 * 32 + 16) * 2
    with pytest.raises(ValueError, match="unknown KV cache type"):
        llama.kv_bytes_per_token("q9_9")


def test_sparse_70b_layout(sparse70b):
    path, spec, size = sparse70b
    st = os.stat(path)
    assert st.st_size == size
    assert st.st_blocks * 512 < 16 * 2**20  # the weights are a hole: only the header is on disk
    lay = read_layout(path)
    assert lay.block_count == 80
    assert lay.layers == tuple(range(80))  # exact: not the 71 a tensor-count guess gives
    assert all(sum(1 for t in lay.tensors if t.layer == i) == 9 for i in range(80))
    assert lay.total_bytes == spec.n_bytes()
    assert 40 * 2**30 < lay.total_bytes < 44 * 2**30  # a Q4_K_M-class 70B
    assert lay.kv_bytes_per_token() == 80 * 8 * 256 * 2  # 320 KiB per token
    assert [t.name for t in lay.tensors if t.layer is None] == ["token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight"]
    assert lay.header_bytes_read < 8 * 2**20  # header only, never the weights


class CountingConnector(LocalConnector):
    """The real local connector, counting the bytes each read returns."""

    def __init__(self):
        super().__init__()
        self.bytes_read = 0
        self.reads = 0

    def read(self, path, offset=0, length=None):
        data = super().read(path, offset, length)
        self.bytes_read += len(data)
        self.reads += 1
        return data


@pytest.mark.parametrize("first_read", [4096, 1 << 20])
def test_remote_read_fetches_only_the_header(sparse70b, first_read):
    path, _, size = sparse70b
    local = read_layout(path)
    conn = CountingConnector()
    remote = read_remote_layout(conn, str(path), first_read=first_read)
    assert remote.tensors == local.tensors and remote.metadata == local.metadata
    assert remote.source == f"localhost:{path}"
    assert conn.bytes_read == remote.header_bytes_read
    # at least the whole header and table, at most twice that (geometric growth), never the data
    assert remote.data_offset - 32 <= conn.bytes_read <= 2 * remote.data_offset
    assert conn.bytes_read < size / 10000
    if first_read == 4096:
        assert conn.reads > 5  # the 2.5 MB header needed the read to grow


def test_remote_missing_file(tmp_path):
    from coffers_provision.model import GGUFError

    with pytest.raises(GGUFError, match="no such file"):
        read_remote_layout(CountingConnector(), str(tmp_path / "absent.gguf"))
