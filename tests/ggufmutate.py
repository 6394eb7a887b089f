"""A seeded mutator of real GGUF headers, for the differential test and benchmarks/fuzz.

Seeds are small models of several architectures (dense, grouped-query, mixture of experts,
MLA) laid out as `modelgen` writes them, with their data zero-filled. A mutant is one to three
mutations of a seed: bit flips, truncations, length and count lies, type swaps, duplicated
keys and tensors, deep nesting, huge dims, names that are not UTF-8, and the planner's keys
set to absurd values or types. The same (seed number, mutant number) always gives the same bytes.
"""

from __future__ import annotations

import random
from dataclasses import replace
from functools import cache
from typing import Callable

from coffers_provision import modelgen
from coffers_provision.modelgen import Dims
from tests import ggufbytes as gb

V, Q = gb.V, gb.Q
SEED_ARCHS = ("llama", "qwen2", "qwen3moe", "mixtral", "deepseek2", "gpt-oss", "gemma3")
SMALL = Dims(n_layers=2, dim=32, n_head=4, n_head_kv=2, ffn=64, n_expert=4, n_expert_used=2, expert_ffn=32)
TOKENIZER_KEYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")


TINY = Dims(n_layers=1, dim=32, n_head=4, n_head_kv=2, ffn=32, vocab=8, n_expert=2, n_expert_used=1, expert_ffn=32)


@cache
def seeds(tiny: bool = False) -> tuple[gb.Header, ...]:
    """One header per architecture, a few with 64-byte alignment or a short vocabulary.
    `tiny`: one block and 8 tokens, a few KiB a file (the committed corpus)."""
    out = []
    for i, arch in enumerate(SEED_ARCHS):
        spec = modelgen.arch_spec(arch, TINY if tiny else SMALL)
        if i % 2 or tiny:  # a vocabulary of 8 tokens keeps the reference reader fast on half the seeds
            for key in TOKENIZER_KEYS:
                spec.metadata = [(k, v[:8] if k == key else v, t) for k, v, t in spec.metadata]
        out.append(gb.from_spec(spec, alignment=64 if i % 3 == 2 else 32))
    return tuple(out)


def copy(h: gb.Header) -> gb.Header:
    return replace(h, kvs=list(h.kvs), tensors=list(h.tensors))


# -- the fields of a serialized header, for byte-level mutations --------------------------------

def fields(h: gb.Header) -> list[tuple[str, int, int]]:
    """(kind, offset, size) of every fixed-size field of `h.to_bytes()`: counts, lengths, types, dims, offsets."""
    out = [("version", 4, 4), ("count", 8, 8), ("count", 16, 8)]
    pos = 24
    for key, _, payload in h.kvs:
        out.append(("length", pos, 8))
        pos += 8 + len(key)
        out.append(("vtype", pos, 4))
        pos += 4 + len(payload)
    for name, dims, _, _ in h.tensors:
        out.append(("length", pos, 8))
        pos += 8 + len(name)
        out.append(("n_dims", pos, 4))
        pos += 4
        for _ in dims:
            out.append(("dim", pos, 8))
            pos += 8
        out += [("ttype", pos, 4), ("offset", pos + 4, 8)]
        pos += 12
    return out


def header_end(h: gb.Header) -> int:
    return len(h.to_bytes()) - len(h.data)


INTERESTING_U64 = (0, 1, 2, 7, 31, 32, 33, 63, 64, 255, 4096, 65535, 65536, 2**31, 2**32 - 1, 2**32, 2**62,
                   2**63 - 1, 2**63, 2**64 - 1)
BAD_UTF8 = (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"blk.0.\x80x", b"\xc3")


def _set_field(data: bytearray, rng: random.Random, kind: str, at: int, size: int) -> None:
    old = int.from_bytes(data[at : at + size], "little")
    if kind in ("vtype", "ttype") and rng.random() < 0.8:
        value = rng.randrange(0, 45)  # valid and unknown types alike
    elif rng.random() < 0.5:
        value = rng.choice(INTERESTING_U64)
    else:
        value = old + rng.choice((-9, -8, -1, 1, 8, 32, 4096))
    data[at : at + size] = (value % (1 << (8 * size))).to_bytes(size, "little")


# -- mutations ---------------------------------------------------------------------------------
# Each takes the header and the rng and returns bytes, or changes the header and returns None.

def bit_flips(h: gb.Header, rng: random.Random) -> bytes:
    data = bytearray(h.to_bytes())
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(header_end(h))
        data[at] ^= 1 << rng.randrange(8)
    return bytes(data)


def truncate(h: gb.Header, rng: random.Random) -> bytes:
    data = h.to_bytes()
    cut = rng.randrange(header_end(h)) if rng.random() < 0.7 else rng.randrange(len(data))
    return data[:cut]


def field_lie(h: gb.Header, rng: random.Random) -> bytes:
    """A count, length, type, dim or offset set to another value."""
    data = bytearray(h.to_bytes())
    table = fields(h)
    kinds = sorted({k for k, _, _ in table})
    kind = rng.choice(kinds)
    _, at, size = rng.choice([f for f in table if f[0] == kind])
    _set_field(data, rng, kind, at, size)
    return bytes(data)


def duplicate(h: gb.Header, rng: random.Random) -> None:
    if rng.random() < 0.5:
        h.kvs.insert(rng.randrange(len(h.kvs) + 1), rng.choice(h.kvs))
    else:
        h.tensors.insert(rng.randrange(len(h.tensors) + 1), rng.choice(h.tensors))


def deep_nesting(h: gb.Header, rng: random.Random) -> None:
    depth = rng.choice((1, 2, 3, 4, 4, 5, 6, 64, 3000))
    h.kvs.insert(rng.randrange(len(h.kvs) + 1), (b"test.nested", int(V.ARRAY), gb.nested(depth)))


def huge_dim(h: gb.Header, rng: random.Random) -> None:
    i = rng.randrange(len(h.tensors))
    name, dims, ttype, offset = h.tensors[i]
    dims = list(dims)
    dims[rng.randrange(len(dims))] = rng.choice((0, 2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 3 * 2**61))
    h.tensors[i] = (name, dims, ttype, offset)


def n_dims(h: gb.Header, rng: random.Random) -> None:
    i = rng.randrange(len(h.tensors))
    name, dims, ttype, offset = h.tensors[i]
    h.tensors[i] = (name, rng.choice(([], [1] * 5, list(dims) + [1], [1, *dims])), ttype, offset)


def bad_name(h: gb.Header, rng: random.Random) -> None:
    """A tensor name or key that is not UTF-8, holds a NUL, is too long, or has an absurd layer."""
    bad = rng.choice(BAD_UTF8 + (b"a\0b", b"x" * 63, b"x" * 64, b"blk.99999999999999999999.attn_q.weight",
                                 b"blk.4096.ffn_up.weight", b"blk.2.attn_k.weight", b"", "блок".encode()))
    if rng.random() < 0.7:
        i = rng.randrange(len(h.tensors))
        _, dims, ttype, offset = h.tensors[i]
        h.tensors[i] = (bad, dims, ttype, offset)
    else:
        i = rng.randrange(len(h.kvs))
        _, vtype, payload = h.kvs[i]
        h.kvs[i] = (bad, vtype, payload)


def planner_key(h: gb.Header, rng: random.Random) -> None:
    """A key the planner reads, set to an absurd value or another type."""
    arch = next((p[8:].decode("utf-8", "replace") for k, _, p in h.kvs if k == b"general.architecture"), "llama")
    key = rng.choice(("block_count", "attention.head_count", "attention.head_count_kv", "context_length",
                      "embedding_length", "expert_count", "expert_used_count", "attention.key_length",
                      "leading_dense_block_count"))
    vtype, payload = rng.choice((
        (V.UINT64, gb.scalar(V.UINT64, 2**62)), (V.INT32, gb.scalar(V.INT32, -3)), (V.UINT32, gb.scalar(V.UINT32, 10**9)),
        (V.UINT32, gb.scalar(V.UINT32, 0)), (V.UINT32, gb.scalar(V.UINT32, 1)), (V.STRING, gb.string("four")),
        (V.FLOAT32, gb.scalar(V.FLOAT32, 4.0)), (V.BOOL, gb.scalar(V.BOOL, True)),
        (V.ARRAY, gb.array(V.INT32, [4, 2])), (V.ARRAY, gb.array(V.INT32, [1, 2, 3])), (V.ARRAY, gb.array(V.STRING, ["a", "b"])),
    ))
    h.kv(f"{arch}.{key}", int(vtype), payload)


def misplace(h: gb.Header, rng: random.Random) -> None:
    """A tensor moved onto another, off its alignment, or past the end."""
    i = rng.randrange(len(h.tensors))
    name, dims, ttype, offset = h.tensors[i]
    other = rng.choice(h.tensors)[3]
    h.tensors[i] = (name, dims, ttype, rng.choice((other, other + 1, offset + h.alignment, offset + 8, len(h.data), 2**63)))


def alignment(h: gb.Header, rng: random.Random) -> None:
    vtype, value = rng.choice(((V.UINT32, 0), (V.UINT32, 48), (V.UINT32, 1), (V.UINT32, 8), (V.UINT32, 64), (V.UINT64, 32), (V.INT32, 32)))
    h.kv("general.alignment", int(vtype), gb.scalar(vtype, value))
    if vtype == V.UINT32 and value and not value & (value - 1):
        h.alignment = value


def drop(h: gb.Header, rng: random.Random) -> None:
    if rng.random() < 0.5 and h.kvs:
        h.kvs.pop(rng.randrange(len(h.kvs)))
    elif h.tensors:
        h.tensors.pop(rng.randrange(len(h.tensors)))


def type_swap(h: gb.Header, rng: random.Random) -> None:
    """A tensor's ggml type or a key's value type changed, the bytes left as they were."""
    if rng.random() < 0.6:
        i = rng.randrange(len(h.tensors))
        name, dims, _, offset = h.tensors[i]
        h.tensors[i] = (name, dims, rng.choice([int(q) for q in Q] + [4, 31, 42, 99, 2**31]), offset)
    else:
        i = rng.randrange(len(h.kvs))
        key, _, payload = h.kvs[i]
        h.kvs[i] = (key, rng.randrange(0, 14), payload)


STRUCTURAL: tuple[Callable[[gb.Header, random.Random], None], ...] = (
    duplicate, deep_nesting, huge_dim, n_dims, bad_name, planner_key, misplace, alignment, drop, type_swap,
)
BYTES: tuple[Callable[[gb.Header, random.Random], bytes], ...] = (bit_flips, truncate, field_lie)


def mutant(seed: int, index: int, *, tiny: bool = False) -> tuple[bytes, str]:
    """Mutant `index` of the run seeded `seed`: its bytes and the names of the mutations made."""
    rng = random.Random(seed * 1_000_003 + index)
    pool = seeds(tiny)
    h = copy(pool[index % len(pool)])
    done = []
    for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
        m = rng.choice(STRUCTURAL)
        m(h, rng)
        done.append(m.__name__)
    data = h.to_bytes()
    if not done or rng.random() < 0.3:
        m = rng.choice(BYTES)
        data = m(h, rng)
        done.append(m.__name__)
    return data, "+".join(done)

