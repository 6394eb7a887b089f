"""Real GGUF files for tests, the README's embedded default and the QEMU lab.

Three kinds, all written with `gguf.GGUFWriter`:
- `write_arch(path, arch)`: a tiny model of one architecture (llama, mixtral, qwen2, qwen3,
  qwen3moe, gemma2, gemma3, deepseek2, gpt-oss) with that architecture's tensor names,
  shapes and metadata, and small quantized weights.
- `write_llama(path, ...)`: a llama model a real llama-server can load: random F16 weights
  and a minimal SentencePiece-style vocabulary (<unk>, <s>, </s> and the 256 byte tokens).
- `write_header_only(path, spec)`: a big model's real tensor table (e.g. `llama70b_spec()`)
  in a file extended to its full size with a hole, so it costs only its header on disk.

`python -m coffers_provision.modelgen --help` writes any of them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, GGUFWriter, TokenType, quants

Q = GGMLQuantizationType
ARCHS = ("llama", "mixtral", "qwen2", "qwen3", "qwen3moe", "gemma2", "gemma3", "deepseek2", "gpt-oss")


@dataclass
class ModelSpec:
    """What a GGUF file holds: metadata (key, value, type) and tensors (name, ne shape, type)."""

    arch: str  # general.architecture
    metadata: list[tuple[str, Any, GGUFValueType]] = field(default_factory=list)
    tensors: list[tuple[str, tuple[int, ...], GGMLQuantizationType]] = field(default_factory=list)

    def kv(self, key: str, value: Any, vtype: GGUFValueType = GGUFValueType.UINT32) -> None:
        """Set a key (`{arch}` is filled in); setting it again replaces the value."""
        key = key.format(arch=self.arch)
        self.metadata = [m for m in self.metadata if m[0] != key] + [(key, value, vtype)]

    def add(self, name: str, shape: Sequence[int], qtype: GGMLQuantizationType) -> None:
        self.tensors.append((name, tuple(shape), qtype))

    def n_bytes(self) -> int:
        return sum(tensor_bytes(shape, qt) for _, shape, qt in self.tensors)


def tensor_bytes(shape: Sequence[int], qtype: GGMLQuantizationType) -> int:
    block, size = GGML_QUANT_SIZES[qtype]
    return int(np.prod(shape, dtype=np.int64)) // block * size


# -- vocabulary -------------------------------------------------------------------


def byte_vocab() -> tuple[list[str], list[float], list[int]]:
    """<unk>, <s>, </s> and one token per byte: enough for a SentencePiece-style tokenizer."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    scores = [0.0] * len(tokens)
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    return tokens, scores, [int(t) for t in types]


def _add_tokenizer(spec: ModelSpec) -> None:
    tokens, scores, types = byte_vocab()
    spec.kv("tokenizer.ggml.model", "llama", GGUFValueType.STRING)
    spec.kv("tokenizer.ggml.tokens", tokens, GGUFValueType.ARRAY)
    spec.kv("tokenizer.ggml.scores", scores, GGUFValueType.ARRAY)
    spec.kv("tokenizer.ggml.token_type", types, GGUFValueType.ARRAY)
    spec.kv("tokenizer.ggml.bos_token_id", 1)
    spec.kv("tokenizer.ggml.eos_token_id", 2)
    spec.kv("tokenizer.ggml.unknown_token_id", 0)
    spec.kv("tokenizer.ggml.add_bos_token", True, GGUFValueType.BOOL)
    spec.kv("tokenizer.ggml.add_eos_token", False, GGUFValueType.BOOL)


# -- architectures -----------------------------------------------------------------


@dataclass(frozen=True)
class Dims:
    n_layers: int = 2
    dim: int = 64
    n_head: int = 4
    n_head_kv: int = 2
    ffn: int = 128
    vocab: int = 259  # the byte vocabulary
    n_expert: int = 4
    n_expert_used: int = 2
    expert_ffn: int = 64
    context_length: int = 2048

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head


def _common(spec: ModelSpec, d: Dims, file_type: int, rope_dims: int | None = None) -> None:
    spec.kv("general.name", f"tiny-{spec.arch}", GGUFValueType.STRING)
    spec.kv("general.file_type", file_type)
    spec.kv("general.quantization_version", 2)
    spec.kv("{arch}.context_length", d.context_length)
    spec.kv("{arch}.embedding_length", d.dim)
    spec.kv("{arch}.block_count", d.n_layers)
    spec.kv("{arch}.feed_forward_length", d.ffn)
    spec.kv("{arch}.attention.head_count", d.n_head)
    spec.kv("{arch}.attention.head_count_kv", d.n_head_kv)
    spec.kv("{arch}.rope.dimension_count", rope_dims or d.head_dim)
    spec.kv("{arch}.rope.freq_base", 10000.0, GGUFValueType.FLOAT32)
    spec.kv("{arch}.attention.layer_norm_rms_epsilon", 1e-5, GGUFValueType.FLOAT32)


def _attention(spec: ModelSpec, i: int, d: Dims, w: Q, *, bias: bool = False, qk_norm: bool = False) -> None:
    hd = d.head_dim
    spec.add(f"blk.{i}.attn_norm.weight", (d.dim,), Q.F32)
    for stem, out in (("attn_q", d.n_head * hd), ("attn_k", d.n_head_kv * hd), ("attn_v", d.n_head_kv * hd)):
        spec.add(f"blk.{i}.{stem}.weight", (d.dim, out), w)
        if bias:
            spec.add(f"blk.{i}.{stem}.bias", (out,), Q.F32)
    spec.add(f"blk.{i}.attn_output.weight", (d.n_head * hd, d.dim), w)
    if qk_norm:
        spec.add(f"blk.{i}.attn_q_norm.weight", (hd,), Q.F32)
        spec.add(f"blk.{i}.attn_k_norm.weight", (hd,), Q.F32)


def _dense_ffn(spec: ModelSpec, i: int, d: Dims, w: Q, *, norm: bool = True) -> None:
    if norm:
        spec.add(f"blk.{i}.ffn_norm.weight", (d.dim,), Q.F32)
    spec.add(f"blk.{i}.ffn_gate.weight", (d.dim, d.ffn), w)
    spec.add(f"blk.{i}.ffn_up.weight", (d.dim, d.ffn), w)
    spec.add(f"blk.{i}.ffn_down.weight", (d.ffn, d.dim), w)


def _experts(spec: ModelSpec, i: int, d: Dims, w: Q, ffn: int, *, bias: bool = False) -> None:
    spec.add(f"blk.{i}.ffn_gate_inp.weight", (d.dim, d.n_expert), Q.F32)
    if bias:
        spec.add(f"blk.{i}.ffn_gate_inp.bias", (d.n_expert,), Q.F32)
    for stem, shape in (("ffn_gate_exps", (d.dim, ffn)), ("ffn_up_exps", (d.dim, ffn)), ("ffn_down_exps", (ffn, d.dim))):
        spec.add(f"blk.{i}.{stem}.weight", (*shape, d.n_expert), w)
        if bias:
            spec.add(f"blk.{i}.{stem}.bias", (shape[1], d.n_expert), Q.F32)


def _embeddings(spec: ModelSpec, d: Dims, w: Q, *, tied: bool = False) -> None:
    spec.add("token_embd.weight", (d.dim, d.vocab), Q.F16)
    spec.add("output_norm.weight", (d.dim,), Q.F32)
    if not tied:
        spec.add("output.weight", (d.dim, d.vocab), w)


def arch_spec(arch: str, dims: Dims | None = None) -> ModelSpec:
    """A tiny model of `arch` with that architecture's tensor names, shapes and metadata."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    d = dims or Dims()
    w = Q.Q8_0
    gguf_arch = "llama" if arch == "mixtral" else arch  # mixtral files say llama, with experts
    spec = ModelSpec(gguf_arch)
    if arch == "deepseek2":
        d = replace(d, n_head_kv=d.n_head)  # MLA: every head reads the shared latent
    _common(spec, d, file_type=7, rope_dims=16 if arch == "deepseek2" else None)  # 7: mostly Q8_0
    _add_tokenizer(spec)
    if arch in ("gemma2", "gemma3"):
        _embeddings(spec, d, w, tied=True)
        spec.kv("{arch}.attention.key_length", d.head_dim)
        spec.kv("{arch}.attention.value_length", d.head_dim)
        spec.kv("{arch}.attention.sliding_window", 512)
        if arch == "gemma2":
            spec.kv("{arch}.attn_logit_softcapping", 50.0, GGUFValueType.FLOAT32)
            spec.kv("{arch}.final_logit_softcapping", 30.0, GGUFValueType.FLOAT32)
        for i in range(d.n_layers):
            _attention(spec, i, d, w, qk_norm=arch == "gemma3")
            spec.add(f"blk.{i}.post_attention_norm.weight", (d.dim,), Q.F32)
            _dense_ffn(spec, i, d, w)
            spec.add(f"blk.{i}.post_ffw_norm.weight", (d.dim,), Q.F32)
        return spec
    if arch == "deepseek2":
        return _deepseek2(spec, d, w)
    _embeddings(spec, d, w)
    moe = arch in ("mixtral", "qwen3moe", "gpt-oss")
    if moe:
        spec.kv("{arch}.expert_count", d.n_expert)
        spec.kv("{arch}.expert_used_count", d.n_expert_used)
    if arch in ("qwen3moe", "gpt-oss"):
        spec.kv("{arch}.expert_feed_forward_length", d.expert_ffn)
    if arch == "gpt-oss":
        spec.kv("{arch}.attention.key_length", d.head_dim)
        spec.kv("{arch}.attention.value_length", d.head_dim)
        spec.kv("{arch}.attention.sliding_window", 128)
    for i in range(d.n_layers):
        _attention(spec, i, d, w, bias=arch in ("qwen2", "gpt-oss"), qk_norm=arch in ("qwen3", "qwen3moe"))
        if arch == "gpt-oss":
            spec.add(f"blk.{i}.attn_sinks.weight", (d.n_head,), Q.F32)
            spec.add(f"blk.{i}.post_attention_norm.weight", (d.dim,), Q.F32)
            _experts(spec, i, d, Q.MXFP4, d.expert_ffn, bias=True)
        elif moe:
            spec.add(f"blk.{i}.ffn_norm.weight", (d.dim,), Q.F32)
            _experts(spec, i, d, w, d.ffn if arch == "mixtral" else d.expert_ffn)
        else:
            _dense_ffn(spec, i, d, w)
    return spec


def _mla_blocks(spec: ModelSpec, d: Dims, w: Q, q_lora: int, kv_lora: int, nope: int, rope: int, v_head: int,
                n_dense: int) -> ModelSpec:
    """DeepSeek-style blocks: MLA attention, `n_dense` dense FFN blocks, then routed experts
    plus one shared expert per block."""
    for i in range(d.n_layers):
        b = f"blk.{i}."
        spec.add(b + "attn_norm.weight", (d.dim,), Q.F32)
        spec.add(b + "attn_q_a.weight", (d.dim, q_lora), w)
        spec.add(b + "attn_q_a_norm.weight", (q_lora,), Q.F32)
        spec.add(b + "attn_q_b.weight", (q_lora, d.n_head * (nope + rope)), w)
        spec.add(b + "attn_kv_a_mqa.weight", (d.dim, kv_lora + rope), w)
        spec.add(b + "attn_kv_a_norm.weight", (kv_lora,), Q.F32)
        spec.add(b + "attn_kv_b.weight", (kv_lora, d.n_head * (nope + v_head)), w)
        spec.add(b + "attn_output.weight", (d.n_head * v_head, d.dim), w)
        if i < n_dense:
            _dense_ffn(spec, i, d, w)
            continue
        spec.add(b + "ffn_norm.weight", (d.dim,), Q.F32)
        _experts(spec, i, d, w, d.expert_ffn)
        spec.add(b + "exp_probs_b.bias", (d.n_expert,), Q.F32)
        spec.add(b + "ffn_gate_shexp.weight", (d.dim, d.expert_ffn), w)
        spec.add(b + "ffn_up_shexp.weight", (d.dim, d.expert_ffn), w)
        spec.add(b + "ffn_down_shexp.weight", (d.expert_ffn, d.dim), w)
    return spec


def _deepseek2(spec: ModelSpec, d: Dims, w: Q) -> ModelSpec:
    """MLA attention (compressed q and kv), leading dense layers, then routed + shared experts."""
    q_lora, kv_lora, nope, rope, v_head, n_dense = 32, 32, 16, 16, 16, 1
    spec.kv("{arch}.leading_dense_block_count", n_dense)
    spec.kv("{arch}.expert_count", d.n_expert)
    spec.kv("{arch}.expert_used_count", d.n_expert_used)
    spec.kv("{arch}.expert_shared_count", 1)
    spec.kv("{arch}.expert_feed_forward_length", d.expert_ffn)
    spec.kv("{arch}.expert_weights_scale", 1.0, GGUFValueType.FLOAT32)
    spec.kv("{arch}.attention.q_lora_rank", q_lora)
    spec.kv("{arch}.attention.kv_lora_rank", kv_lora)
    spec.kv("{arch}.attention.key_length", nope + rope)
    spec.kv("{arch}.attention.value_length", v_head)
    _embeddings(spec, d, w)
    return _mla_blocks(spec, d, w, q_lora, kv_lora, nope, rope, v_head, n_dense)


def llama70b_spec() -> ModelSpec:
    """The tensor table of a Llama-3-70B at a Q4_K_M-like mix (attn_v, ffn_down, output at Q6_K)."""
    d = Dims(n_layers=80, dim=8192, n_head=64, n_head_kv=8, ffn=28672, vocab=128256, context_length=8192)
    spec = ModelSpec("llama")
    _common(spec, d, file_type=15)  # 15: mostly Q4_K_M
    spec.kv("{arch}.vocab_size", d.vocab)
    spec.kv("{arch}.rope.freq_base", 500000.0, GGUFValueType.FLOAT32)
    spec.add("token_embd.weight", (d.dim, d.vocab), Q.Q4_K)
    spec.add("output_norm.weight", (d.dim,), Q.F32)
    spec.add("output.weight", (d.dim, d.vocab), Q.Q6_K)
    spec.add("rope_freqs.weight", (d.head_dim // 2,), Q.F32)
    for i in range(d.n_layers):
        for name, shape, qt in _llama_block(i, d):
            spec.add(name, shape, qt)
    return spec


def _llama_block(i: int, d: Dims) -> list[tuple[str, tuple[int, ...], GGMLQuantizationType]]:
    hd, b = d.head_dim, f"blk.{i}."
    return [
        (b + "attn_norm.weight", (d.dim,), Q.F32),
        (b + "attn_q.weight", (d.dim, d.n_head * hd), Q.Q4_K),
        (b + "attn_k.weight", (d.dim, d.n_head_kv * hd), Q.Q4_K),
        (b + "attn_v.weight", (d.dim, d.n_head_kv * hd), Q.Q6_K),
        (b + "attn_output.weight", (d.n_head * hd, d.dim), Q.Q4_K),
        (b + "ffn_norm.weight", (d.dim,), Q.F32),
        (b + "ffn_gate.weight", (d.dim, d.ffn), Q.Q4_K),
        (b + "ffn_up.weight", (d.dim, d.ffn), Q.Q4_K),
        (b + "ffn_down.weight", (d.ffn, d.dim), Q.Q6_K),
    ]


# -- the 400B class, header only ----------------------------------------------------------
# Shapes from each model's public config.json (Hugging Face); types as llama.cpp's quantize
# writes a "pure" legacy type (Q8_0, Q4_0): every 2-D weight of that type but output.weight
# (Q6_K unless Q8_0), norms, the MoE router (ffn_gate_inp) and exp_probs_b F32. So each
# layer's bytes are exact for those files (docs/models.md).
FILE_TYPES = {Q.Q8_0: 7, Q.Q4_0: 2}  # general.file_type: mostly Q8_0, mostly Q4_0


def _big_common(spec: ModelSpec, d: Dims, w: Q, rope_dims: int | None = None) -> None:
    if w not in FILE_TYPES:
        raise ValueError(f"{w.name}: the 400B-class layouts are written at {', '.join(q.name for q in FILE_TYPES)}")
    _common(spec, d, file_type=FILE_TYPES[w], rope_dims=rope_dims)
    spec.kv("{arch}.vocab_size", d.vocab)
    spec.add("token_embd.weight", (d.dim, d.vocab), w)
    spec.add("output_norm.weight", (d.dim,), Q.F32)
    spec.add("output.weight", (d.dim, d.vocab), w if w == Q.Q8_0 else Q.Q6_K)


def llama405b_spec(w: Q = Q.Q8_0) -> ModelSpec:
    """Llama-3.1-405B: 126 blocks, 16384 wide, 128 heads over 8 KV heads, ffn 53248."""
    d = Dims(n_layers=126, dim=16384, n_head=128, n_head_kv=8, ffn=53248, vocab=128256, context_length=131072)
    spec = ModelSpec("llama")
    _big_common(spec, d, w)
    spec.kv("{arch}.rope.freq_base", 500000.0, GGUFValueType.FLOAT32)
    spec.add("rope_freqs.weight", (d.head_dim // 2,), Q.F32)
    for i in range(d.n_layers):
        _attention(spec, i, d, w)
        _dense_ffn(spec, i, d, w)
    return spec


def deepseek_v3_spec(w: Q = Q.Q8_0) -> ModelSpec:
    """DeepSeek-V3 (and R1, the same shapes): 61 blocks, MLA attention, 3 dense blocks,
    then 256 routed experts plus one shared per block (the MTP block is not in the GGUF)."""
    d = Dims(n_layers=61, dim=7168, n_head=128, n_head_kv=128, ffn=18432, vocab=129280, n_expert=256, n_expert_used=8,
             expert_ffn=2048, context_length=163840)
    q_lora, kv_lora, nope, rope, v_head, n_dense = 1536, 512, 128, 64, 128, 3
    spec = ModelSpec("deepseek2")
    _big_common(spec, d, w, rope_dims=rope)
    spec.kv("{arch}.leading_dense_block_count", n_dense)
    spec.kv("{arch}.expert_count", d.n_expert)
    spec.kv("{arch}.expert_used_count", d.n_expert_used)
    spec.kv("{arch}.expert_shared_count", 1)
    spec.kv("{arch}.expert_feed_forward_length", d.expert_ffn)
    spec.kv("{arch}.attention.q_lora_rank", q_lora)
    spec.kv("{arch}.attention.kv_lora_rank", kv_lora)
    spec.kv("{arch}.attention.key_length", nope + rope)
    spec.kv("{arch}.attention.value_length", v_head)
    return _mla_blocks(spec, d, w, q_lora, kv_lora, nope, rope, v_head, n_dense)


def qwen3_235b_spec(w: Q = Q.Q8_0) -> ModelSpec:
    """Qwen3-235B-A22B: 94 blocks, 4096 wide, 64 heads of 128 over 4 KV heads, q/k norms,
    128 experts (8 used) of ffn 1536, no shared expert."""
    d = Dims(n_layers=94, dim=4096, n_head=64, n_head_kv=4, ffn=12288, vocab=151936, n_expert=128, n_expert_used=8,
             expert_ffn=1536, context_length=40960)
    hd = 128
    spec = ModelSpec("qwen3moe")
    _big_common(spec, d, w, rope_dims=hd)
    spec.kv("{arch}.expert_count", d.n_expert)
    spec.kv("{arch}.expert_used_count", d.n_expert_used)
    spec.kv("{arch}.expert_feed_forward_length", d.expert_ffn)
    spec.kv("{arch}.attention.key_length", hd)
    spec.kv("{arch}.attention.value_length", hd)
    for i in range(d.n_layers):
        b = f"blk.{i}."
        spec.add(b + "attn_norm.weight", (d.dim,), Q.F32)
        spec.add(b + "attn_q.weight", (d.dim, d.n_head * hd), w)
        spec.add(b + "attn_k.weight", (d.dim, d.n_head_kv * hd), w)
        spec.add(b + "attn_v.weight", (d.dim, d.n_head_kv * hd), w)
        spec.add(b + "attn_output.weight", (d.n_head * hd, d.dim), w)
        spec.add(b + "attn_q_norm.weight", (hd,), Q.F32)
        spec.add(b + "attn_k_norm.weight", (hd,), Q.F32)
        spec.add(b + "ffn_norm.weight", (d.dim,), Q.F32)
        _experts(spec, i, d, w, d.expert_ffn)
    return spec


BIG: dict[str, Callable[..., ModelSpec]] = {
    "llama70b": llama70b_spec, "llama405b": llama405b_spec, "deepseek-v3": deepseek_v3_spec, "qwen3-235b": qwen3_235b_spec,
}


def vocab_spec(spec: ModelSpec, n_tokens: int) -> None:
    """Add a vocabulary of `n_tokens` placeholder tokens, so the header is as long as a real one."""
    tokens = [f"tok{i:06d}" for i in range(n_tokens)]
    spec.kv("tokenizer.ggml.model", "gpt2", GGUFValueType.STRING)
    spec.kv("tokenizer.ggml.tokens", tokens, GGUFValueType.ARRAY)
    spec.kv("tokenizer.ggml.token_type", [1] * n_tokens, GGUFValueType.ARRAY)


# -- writers --------------------------------------------------------------------------


def _writer(path: str | os.PathLike[str], spec: ModelSpec, parts: int = 1) -> GGUFWriter:
    """A writer for `spec`; with `parts` > 1 the gguf package splits the tensors into that many
    files (PREFIX-00001-of-0000N.gguf, split.* keys in each, the metadata in the first)."""
    per_part = -(-len(spec.tensors) // parts) if parts > 1 else 0
    if parts > 1 and -(-len(spec.tensors) // per_part) != parts:
        raise ValueError(f"{len(spec.tensors)} tensors cannot be split into {parts} parts")
    writer = GGUFWriter(os.fspath(path), spec.arch, split_max_tensors=per_part)
    for key, value, vtype in spec.metadata:
        if vtype == GGUFValueType.ARRAY:
            writer.add_array(key, value)
        else:
            writer.add_key_value(key, value, vtype)
    return writer


def split_paths(path: str | os.PathLike[str], parts: int) -> list[Path]:
    """The files `write_model(path, spec, parts=parts)` writes."""
    p = Path(path)
    return [p] if parts == 1 else [p.with_name(f"{p.stem}-{i + 1:05d}-of-{parts:05d}.gguf") for i in range(parts)]


def _weights(rng: np.random.Generator, shape: tuple[int, ...], qtype: GGMLQuantizationType) -> np.ndarray:
    """Random small weights (numpy shape is GGUF's reversed), converted or quantized to `qtype`."""
    data = rng.standard_normal(shape[::-1], dtype=np.float32) * 0.02
    if len(shape) == 1:
        data = data + 1.0  # norm weights near one keep activations sane
    if qtype == Q.F32:
        return data
    if qtype == Q.F16:
        return data.astype(np.float16)
    return quants.quantize(data, qtype)


def write_model(path: str | os.PathLike[str], spec: ModelSpec, *, seed: int = 0, parts: int = 1) -> int:
    """Write `spec` with random weights, in `parts` files; returns the bytes written."""
    rng = np.random.default_rng(seed)
    writer = _writer(path, spec, parts)
    for name, shape, qtype in spec.tensors:
        arr = _weights(rng, shape, qtype)
        writer.add_tensor(name, arr, raw_dtype=qtype if qtype not in (Q.F32, Q.F16) else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return sum(os.path.getsize(p) for p in split_paths(path, parts))


def write_header_only(path: str | os.PathLike[str], spec: ModelSpec, *, parts: int = 1) -> int:
    """Write the header and tensor table (in `parts` files), then extend each file to its full
    size with a hole; returns the bytes the files claim."""
    writer = _writer(path, spec, parts)
    for name, shape, qtype in spec.tensors:
        # the writer takes numpy's order and stores it reversed: ne0, the row, comes first in the file
        writer.add_tensor_info(name, shape[::-1], np.dtype(np.float32), tensor_bytes(shape, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    align, total = writer.data_alignment, 0
    for file, tensors in zip(split_paths(path, parts), writer.tensors):
        size = -(-os.path.getsize(file) // align) * align
        size += sum(-(-ti.nbytes // align) * align for ti in tensors.values())
        os.truncate(file, size)
        total += size
    return total


def write_arch(path: str | os.PathLike[str], arch: str, dims: Dims | None = None, *, seed: int = 0) -> int:
    """A tiny real model of `arch`; returns the file size."""
    return write_model(path, arch_spec(arch, dims), seed=seed)


def llama_spec(
    *,
    n_layers: int = 4,
    dim: int = 1024,
    n_head: int = 8,
    n_head_kv: int = 8,
    ffn: int = 2816,
    context_length: int = 2048,
) -> ModelSpec:
    """A llama model llama-server can load: F16 weights, F32 norms, the byte vocabulary."""
    if dim % n_head or n_head % n_head_kv:
        raise ValueError(f"dim {dim} must divide by n_head {n_head}, and n_head by n_head_kv {n_head_kv}")
    d = Dims(n_layers=n_layers, dim=dim, n_head=n_head, n_head_kv=n_head_kv, ffn=ffn, context_length=context_length)
    spec = ModelSpec("llama")
    _common(spec, d, file_type=1)  # 1: mostly F16
    _add_tokenizer(spec)
    spec.kv("{arch}.vocab_size", d.vocab)
    _embeddings(spec, d, Q.F16)
    for i in range(n_layers):
        _attention(spec, i, d, Q.F16)
        _dense_ffn(spec, i, d, Q.F16)
    return spec


def write_llama(path: str | os.PathLike[str], *, seed: int = 0, **dims: int) -> int:
    """Write a loadable llama model (see `llama_spec` for the dims and their defaults, ~98 MiB)."""
    return write_model(path, llama_spec(**dims), seed=seed)


# -- command line ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m coffers_provision.modelgen", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="kind", required=True)
    lp = sub.add_parser("llama", help="a llama model llama-server can load (random F16 weights)")
    lp.add_argument("path")
    for flag, default in (("layers", 4), ("dim", 1024), ("heads", 8), ("kv-heads", 8), ("ffn", 2816), ("context", 2048), ("seed", 0)):
        lp.add_argument(f"--{flag}", type=int, default=default)
    ap = sub.add_parser("arch", help="a tiny model of one architecture")
    ap.add_argument("arch", choices=ARCHS)
    ap.add_argument("path")
    for name in BIG:
        hp = sub.add_parser(name, help=f"{BIG[name].__doc__.split(':')[0]}: the tensor table, header only, in sparse files")
        hp.add_argument("path")
        hp.add_argument("--vocab-tokens", type=int, default=128256, help="placeholder tokens in the header (0: none)")
        hp.add_argument("--parts", type=int, default=1, help="split into this many files, PREFIX-0000N-of-0000M.gguf")
        if name != "llama70b":
            hp.add_argument("--type", choices=[q.name for q in FILE_TYPES], default="Q8_0", help="the weights' type")
    args = p.parse_args(argv)
    try:
        if args.kind == "llama":
            size = write_llama(
                args.path, n_layers=args.layers, dim=args.dim, n_head=args.heads, n_head_kv=args.kv_heads,
                ffn=args.ffn, context_length=args.context, seed=args.seed,
            )
        elif args.kind == "arch":
            size = write_arch(args.path, args.arch)
        else:
            spec = BIG[args.kind](Q[args.type]) if args.kind != "llama70b" else llama70b_spec()
            if args.vocab_tokens:
                vocab_spec(spec, args.vocab_tokens)
            size = write_header_only(args.path, spec, parts=args.parts)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.path}: {size} bytes ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
