"""The layout of a GGUF model: every tensor's name, layer, kind, type and exact size.

Only the header and the tensor-info table are read, through a byte-range callback
`read_at(offset, length)`, so a remote model costs a few megabytes of transfer, not
its weights. The format constants (value types, quantization block sizes) come from
the `gguf` package; the parser is ours because the package's reader wants the whole
file mapped.
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import accumulate
from typing import Any, Callable, Mapping

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from .errors import CoffersError
from .shardmap import layer_of, tensor_type

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
FIRST_READ = 1 << 20  # most headers fit in one read; a 128k-token vocabulary needs a few more
# Structural limits (docs/gguf-validity.md); numa-shard-place's gguf_parse has the same ones.
MAX_ARRAY_DEPTH = 4  # an array of arrays of arrays of arrays, no deeper
MAX_KEY_BYTES = 65535  # the format's own limit on a key
MAX_NAME_BYTES = 63  # ggml's GGML_MAX_NAME is 64 with the NUL
MIN_KV_BYTES = 13  # an empty key (8), its type (4), a one-byte value
MIN_TENSOR_INFO_BYTES = 32  # an empty name (8), n_dims (4), one dim (8), type (4), offset (8)
KEEP_ARRAY_MAX = 4096  # numeric arrays up to this length are kept (per-layer head counts, ...)
KEEP_STRING_MAX = 1 << 20  # longer string values are skipped, never read
# Ranges of the keys the planner reads: far beyond any model, so only corruption trips them.
MAX_BLOCKS = 4096
MAX_CONTEXT = 1 << 24
MAX_EMBEDDING = 1 << 20
MAX_HEADS = 16384
MAX_HEAD_DIM = 65536
MAX_EXPERTS = 4096
_ARCH = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")

# Kinds, in the order tables show them.
ATTENTION, FFN, EXPERTS, SHARED_EXPERTS, ROUTER = "attention", "ffn", "experts", "shared_experts", "router"
NORM, EMBEDDING, OUTPUT, OTHER = "norm", "embedding", "output", "other"
KINDS = (ATTENTION, FFN, EXPERTS, SHARED_EXPERTS, ROUTER, NORM, EMBEDDING, OUTPUT, OTHER)
_EMBEDDING_STEMS = ("token_embd", "position_embd", "token_types", "per_layer_token_embd")

ReadAt = Callable[[int, int], bytes]


class GGUFError(CoffersError, ValueError):
    """A file that is not a GGUF model we can read. `offset` is the byte where it went wrong."""

    def __init__(self, message: str, *, source: str, offset: int | None = None):
        self.message, self.source, self.offset = message, source, offset
        where = f"{source}: offset {offset}" if offset is not None else source
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Tensor:
    name: str
    layer: int | None  # N of `blk.N.`; None for token_embd, output, ...
    kind: str  # one of KINDS
    type: str  # GGML type name: F16, Q4_K, ...
    shape: tuple[int, ...]  # ne0 first, as GGUF stores it
    n_bytes: int
    offset: int  # absolute offset of the data in its part's file
    part: int = 0  # index of the file that holds it (0 unless the model is split)


@dataclass(frozen=True)
class Part:
    """One file of a split model: `PREFIX-%05d-of-%05d.gguf`, numbered from 1 on disk."""

    source: str
    size: int
    n_tensors: int


@dataclass(frozen=True)
class ModelLayout:
    source: str
    architecture: str
    version: int
    file_size: int
    alignment: int
    data_offset: int  # where tensor data starts
    block_count: int
    tensors: tuple[Tensor, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)  # scalars and short numeric arrays
    header_bytes_read: int = 0
    parts: tuple[Part, ...] = ()  # every file of a split model, in order; () for one file

    # -- derived (computed once; the layout is shared by many plans) -------
    @cached_property
    def total_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @cached_property
    def layers(self) -> tuple[int, ...]:
        """The layer ids present in the tensor table, sorted."""
        return tuple(sorted({t.layer for t in self.tensors if t.layer is not None}))

    @cached_property
    def layer_bytes(self) -> dict[int, int]:
        out = dict.fromkeys(self.layers, 0)
        for t in self.tensors:
            if t.layer is not None:
                out[t.layer] += t.n_bytes
        return out

    @cached_property
    def layer_prefix(self) -> tuple[int, ...]:
        """Bytes before each layer in layer order, then the total of all layers."""
        return (0, *accumulate(self.layer_bytes.values()))

    @cached_property
    def layer_midpoints(self) -> tuple[float, ...]:
        """Where each layer's middle falls in the layer bytes, as the planner's packer sums it."""
        out, cum = [], 0.0
        for b in self.layer_bytes.values():
            out.append(cum + b / 2)
            cum += b
        return tuple(out)

    @cached_property
    def bytes_by_layer_kind(self) -> dict[int | None, dict[str, int]]:
        """layer (None for layerless tensors) -> kind -> bytes; layers in order, layerless last."""
        out: dict[int | None, dict[str, int]] = {layer: {} for layer in self.layers}
        out[None] = {}
        for t in self.tensors:
            row = out[t.layer]
            row[t.kind] = row.get(t.kind, 0) + t.n_bytes
        return out

    @cached_property
    def kind_bytes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.kind] = out.get(t.kind, 0) + t.n_bytes
        return out

    @cached_property
    def layerless(self) -> tuple[Tensor, ...]:
        """The tensors outside any block (embedding, output, norms): a handful per model."""
        return tuple(t for t in self.tensors if t.layer is None)

    @cached_property
    def map_groups(self) -> dict[str, tuple[int, int]]:
        """The layerless tensors as the shard map groups them: "embed" (token_embd-type) and
        "other" -> (how many, bytes)."""
        out = {"embed": (0, 0), "other": (0, 0)}
        for t in self.layerless:
            group = "embed" if tensor_type(t.name) == "embed" else "other"
            count, size = out[group]
            out[group] = (count + 1, size + t.n_bytes)
        return out

    @cached_property
    def _kv_per_token(self) -> dict[str, int]:
        return {}

    def key(self, name: str, default: Any = None) -> Any:
        """An architecture key without the prefix: `key("embedding_length")`."""
        return self.metadata.get(f"{self.architecture}.{name}", default)

    # -- the dims the KV-cache estimate needs -------------------------------
    def kv_bytes_per_token(self, cache_type: str = "f16") -> int:
        """Bytes of K and V cache one token of context costs, summed over all blocks
        (computed once per cache type: one layout serves every host's plan).

        Standard attention stores head_count_kv x (key_length + value_length) per layer.
        MLA (deepseek2) stores the compressed latent: kv_lora_rank + rope dims for K, and
        we also count kv_lora_rank for V, an upper bound for builds that keep V apart.
        Sliding-window layers are counted at full context (an upper bound too).
        """
        memo = self._kv_per_token
        if cache_type not in memo:
            memo[cache_type] = self._kv_bytes(cache_type)
        return memo[cache_type]

    def _kv_bytes(self, cache_type: str) -> int:
        per_elem = cache_elem_bytes(cache_type)
        n_layers = self.block_count
        kv_lora = self.key("attention.kv_lora_rank")
        if kv_lora:
            rope = self.key("rope.dimension_count", 0)
            return int(n_layers * (2 * kv_lora + rope) * per_elem + 0.999999)
        n_embd = self.key("embedding_length", 0)
        heads = _per_layer(self.key("attention.head_count", 0), n_layers)
        heads_kv = _per_layer(self.key("attention.head_count_kv"), n_layers) or heads
        total_elems = 0
        for h, hkv in zip(heads, heads_kv):
            head_dim = n_embd // h if h else 0
            k = self.key("attention.key_length", head_dim)
            v = self.key("attention.value_length", head_dim)
            total_elems += hkv * (k + v)
        return int(total_elems * per_elem + 0.999999)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "architecture": self.architecture,
            "gguf_version": self.version,
            "file_size": self.file_size,
            "block_count": self.block_count,
            "header_bytes_read": self.header_bytes_read,
            "parts": [{"source": p.source, "bytes": p.size, "tensors": p.n_tensors} for p in self.parts],
            "total_bytes": self.total_bytes,
            "kinds": dict(self.kind_bytes),
            "layers": [
                {"layer": layer, "bytes": sum(kinds.values()), "kinds": kinds}
                for layer, kinds in self.bytes_by_layer_kind.items()
            ],
            "tensors": [
                {"name": t.name, "layer": t.layer, "kind": t.kind, "type": t.type, "shape": list(t.shape), "bytes": t.n_bytes, "part": t.part}
                for t in self.tensors
            ],
        }


def _per_layer(value: Any, n_layers: int) -> list[int]:
    """A per-layer list from a scalar or a per-layer array key (check_layout checked both)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)[:n_layers]
    return [value] * n_layers


def cache_elem_bytes(cache_type: str) -> float:
    """Bytes per element of a KV cache type (f16, q8_0, q4_0, ...), from the GGML block sizes."""
    try:
        qtype = GGMLQuantizationType[cache_type.upper()]
    except KeyError:
        raise ValueError(f"unknown KV cache type {cache_type!r}") from None
    block, size = GGML_QUANT_SIZES[qtype]
    return size / block


# -- classification -----------------------------------------------------------


def classify(name: str) -> str:
    """The kind of a tensor from its name (the order of the checks matters)."""
    layer = layer_of(name)
    base = name.split(".", 2)[2] if layer is not None else name
    stem = base.split(".", 1)[0]
    if layer is None:
        if stem in _EMBEDDING_STEMS:
            return EMBEDDING
        if stem == "output":
            return OUTPUT
        return NORM if "norm" in stem else OTHER
    if "_shexp" in stem:  # before the router check: ffn_gate_inp_shexp gates the shared expert
        return SHARED_EXPERTS
    if "_exps" in stem:
        return EXPERTS
    if stem.startswith("ffn_gate_inp") or stem == "exp_probs_b":
        return ROUTER
    if "norm" in stem:
        return NORM
    if stem.startswith("attn_"):
        return ATTENTION
    if stem.startswith("ffn_"):
        return FFN
    return OTHER


# -- the parser -------------------------------------------------------------------
# docs/gguf-validity.md is the definition this implements; numa-shard-place's gguf_parse
# implements the same structural rules, and tests/test_gguf_differential.py holds them to it.

_SCALARS: dict[GGUFValueType, struct.Struct] = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: struct.Struct("<I"),
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<?"),
    GGUFValueType.UINT64: struct.Struct("<Q"),
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}
_U32, _U64 = _SCALARS[GGUFValueType.UINT32], _SCALARS[GGUFValueType.UINT64]
INT64_MAX = (1 << 63) - 1
# ggml's block_q8_1 is two halves and 32 quants (36 bytes); the gguf package still says 40.
TYPE_SIZES: dict[GGMLQuantizationType, tuple[int, int]] = {**GGML_QUANT_SIZES, GGMLQuantizationType.Q8_1: (32, 36)}


class _Cursor:
    """Sequential reads over `read_at`, fetching only the bytes the parse looks at.

    The bytes held are a window [base, base + len(buf)) grown geometrically, so a long table
    costs a few round trips; a skip far past the window (a long string or array) reads nothing,
    and the next read starts a new window there.
    """

    def __init__(self, read_at: ReadAt, size: int, source: str, first_read: int):
        self.read_at, self.size, self.source = read_at, size, source
        self.first_read = max(first_read, 64)
        self.buf = bytearray()
        self.base = self.pos = self.fetched = 0

    def fail(self, message: str, offset: int | None = None) -> GGUFError:
        return GGUFError(message, source=self.source, offset=self.pos if offset is None else offset)

    def left(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        end = self.pos + n
        if end > self.size:
            raise self.fail(f"truncated: {what} needs {n} bytes, the file ends at byte {self.size}")
        have = self.base + len(self.buf)
        if end <= have:
            return
        if self.pos - have > max(len(self.buf), self.first_read):  # a long skip: a new window there
            self.base, self.buf, have = self.pos, bytearray(), self.pos
        want = min(self.size, max(end, self.base + 2 * len(self.buf), self.base + self.first_read)) - have
        data = self.read_at(have, want)
        if len(data) != want:
            raise self.fail(f"short read: asked {want} bytes at {have}, got {len(data)}", have)
        self.buf += data
        self.fetched += want

    def take(self, n: int, what: str) -> bytes:
        self.need(n, what)
        at = self.pos - self.base
        self.pos += n
        return bytes(self.buf[at : at + n])

    def unpack(self, st: struct.Struct, what: str) -> Any:
        self.need(st.size, what)
        (value,) = st.unpack_from(self.buf, self.pos - self.base)
        self.pos += st.size
        return value

    def skip(self, n: int, what: str) -> None:
        if n > self.left():
            raise self.fail(f"truncated: {what} needs {n} bytes, the file ends at byte {self.size}")
        self.pos += n

    def length(self, what: str, limit: int | None = None) -> int:
        """A string's u64 length, checked against the file (and `limit`) before anything is read."""
        start = self.pos
        n = self.unpack(_U64, what)
        if n > self.left():
            raise self.fail(f"corrupt: {what} claims {n} bytes, past the end of the file", start)
        if limit is not None and n > limit:
            raise self.fail(f"corrupt: {what} of {n} bytes is longer than {limit}", start)
        return n

    def name(self, what: str, limit: int) -> str:
        """A key or a tensor name: at most `limit` bytes of UTF-8."""
        start = self.pos
        raw = self.take(self.length(what, limit), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"corrupt: {what} {raw!r} is not UTF-8", start) from None

    def value(self, vtype: int, key: str, depth: int = 0) -> Any:
        """One value of type `vtype`; long arrays and strings are skipped, summarised by their length."""
        start = self.pos
        try:
            vt = GGUFValueType(vtype)
        except ValueError:
            raise self.fail(f"corrupt: unknown value type {vtype} for key {key!r}", start - 4) from None
        if vt == GGUFValueType.STRING:
            n = self.length(f"value of {key!r}")
            if n > KEEP_STRING_MAX:
                self.skip(n, f"value of {key!r}")
                return _Skipped(n)
            try:
                return self.take(n, f"value of {key!r}").decode("utf-8")
            except UnicodeDecodeError:  # string values need not be text; the planner reads none of these
                return _Skipped(n)
        if vt != GGUFValueType.ARRAY:
            return self.unpack(_SCALARS[vt], f"value of {key!r}")
        if depth >= MAX_ARRAY_DEPTH:
            raise self.fail(f"corrupt: arrays in {key!r} nested more than {MAX_ARRAY_DEPTH} deep", start)
        item_type = self.unpack(_U32, f"array type of {key!r}")
        count = self.unpack(_U64, f"array length of {key!r}")
        try:
            it = GGUFValueType(item_type)
        except ValueError:
            raise self.fail(f"corrupt: unknown array element type {item_type} for key {key!r}", start) from None
        # The smallest element: a scalar's size, a string's 8-byte length, an array's 12-byte head.
        least = _SCALARS[it].size if it in _SCALARS else 8 if it == GGUFValueType.STRING else 12
        if count > self.left() // least:
            raise self.fail(f"corrupt: array {key!r} claims {count} elements, more than the file holds", start)
        if it in _SCALARS:
            st = _SCALARS[it]
            if count > KEEP_ARRAY_MAX:
                self.skip(count * st.size, f"array {key!r}")
                return _Skipped(count)
            raw = self.take(count * st.size, f"array {key!r}")
            return [v for (v,) in st.iter_unpack(raw)]
        for _ in range(count):  # strings or nested arrays: walk them, keep nothing
            if it == GGUFValueType.STRING:
                self.skip(self.length(f"a string in array {key!r}"), f"array {key!r}")
            else:
                self.value(it, key, depth + 1)
        return _Skipped(count)


@dataclass(frozen=True)
class _Skipped:
    """A value we did not keep, only measured (a vocabulary, a chat template, bytes that are not text)."""

    count: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type: GGMLQuantizationType
    offset: int  # absolute offset of the data in the file
    n_bytes: int
    at: int  # where its tensor info starts
    part: int = 0  # which file of a split model holds it


@dataclass(frozen=True)
class GGUFHeader:
    """A structurally valid GGUF header: what every reader of the file must agree on."""

    source: str
    version: int
    file_size: int
    alignment: int
    data_offset: int
    metadata: Mapping[str, Any]  # every key; long arrays and strings as _Skipped
    key_offsets: Mapping[str, int]  # where each key-value pair starts
    tensors: tuple[TensorInfo, ...]  # in file order
    bytes_read: int


def read_header(read_at: ReadAt, size: int, source: str, *, first_read: int = FIRST_READ) -> GGUFHeader:
    """The header and tensor table of a GGUF file of `size` bytes, checked against the format's rules."""
    cur = _Cursor(read_at, size, source, first_read)
    if size < 4:
        raise GGUFError(f"not a GGUF file: only {size} bytes", source=source)
    magic = cur.take(4, "magic")
    if magic != GGUF_MAGIC:
        raise GGUFError(f"not a GGUF file: magic is {magic!r}, expected {GGUF_MAGIC!r}", source=source, offset=0)
    version = cur.unpack(_U32, "version")
    if version not in SUPPORTED_VERSIONS:
        if version & 0xFFFF == 0 and (version >> 24) in SUPPORTED_VERSIONS:
            raise cur.fail("big-endian GGUF files are not supported", 4)
        if version == 1:
            raise cur.fail("GGUF version 1 is not supported (versions 2 and 3 are)", 4)
        raise cur.fail(f"unknown GGUF version {version} (versions 2 and 3 are supported)", 4)
    n_tensors = cur.unpack(_U64, "tensor count")
    n_kv = cur.unpack(_U64, "metadata count")
    if n_kv > cur.left() // MIN_KV_BYTES:
        raise cur.fail(f"truncated or corrupt: {n_kv} keys cannot fit in {size} bytes", 16)

    metadata: dict[str, Any] = {}
    key_offsets: dict[str, int] = {}
    alignment = DEFAULT_ALIGNMENT
    for _ in range(n_kv):
        key_at = cur.pos
        key = cur.name("metadata key", MAX_KEY_BYTES)
        vtype = cur.unpack(_U32, f"type of {key!r}")
        if key in metadata:
            raise cur.fail(f"corrupt: key {key!r} appears twice", key_at)
        if key == "general.alignment" and vtype != GGUFValueType.UINT32:
            raise cur.fail(f"general.alignment has value type {vtype}, not uint32", key_at)
        metadata[key], key_offsets[key] = cur.value(vtype, key), key_at
        if key == "general.alignment":
            alignment = metadata[key]
            if alignment == 0 or alignment & (alignment - 1):
                raise cur.fail(f"general.alignment {alignment} is not a power of two", key_at)

    if n_tensors > cur.left() // MIN_TENSOR_INFO_BYTES:
        raise cur.fail(f"truncated or corrupt: {n_tensors} tensors cannot fit in {size} bytes", 8)
    infos: list[tuple[str, tuple[int, ...], GGMLQuantizationType, int, int]] = []
    seen: set[str] = set()
    for _ in range(n_tensors):
        at = cur.pos
        name = cur.name("tensor name", MAX_NAME_BYTES)
        if "\0" in name:
            raise cur.fail(f"corrupt: tensor name {name!r} holds a NUL byte", at)
        if name in seen:
            raise cur.fail(f"corrupt: tensor {name!r} appears twice", at)
        seen.add(name)
        n_dims = cur.unpack(_U32, f"dims of {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise cur.fail(f"corrupt: tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS})", at)
        shape = tuple(cur.unpack(_U64, f"shape of {name!r}") for _ in range(n_dims))
        if math.prod(shape) > INT64_MAX or max(shape) > INT64_MAX:
            raise cur.fail(f"corrupt: tensor {name!r} has too many elements {list(shape)}", at)
        raw_type = cur.unpack(_U32, f"type of {name!r}")
        try:
            qtype = GGMLQuantizationType(raw_type)
        except ValueError:
            raise cur.fail(f"tensor {name!r} has unknown type {raw_type}", cur.pos - 4) from None
        offset = cur.unpack(_U64, f"offset of {name!r}")
        infos.append((name, shape, qtype, offset, at))

    data_offset = -(-cur.pos // alignment) * alignment
    tensors = []
    for name, shape, qtype, offset, at in infos:
        block, type_size = TYPE_SIZES[qtype]
        if shape[0] % block:
            raise GGUFError(f"corrupt: tensor {name!r} row of {shape[0]} is not a multiple of the {qtype.name} block {block}", source=source, offset=at)
        n_bytes = math.prod(shape) // block * type_size
        if offset % alignment:
            raise GGUFError(f"corrupt: tensor {name!r} data offset {offset} is not {alignment}-aligned", source=source, offset=at)
        start = data_offset + offset
        if start + n_bytes > size:
            raise GGUFError(f"truncated: tensor {name!r} ends at byte {start + n_bytes}, the file has {size} bytes", source=source, offset=at)
        tensors.append(TensorInfo(name, shape, qtype, start, n_bytes, at))
    placed = sorted((t for t in tensors if t.n_bytes), key=lambda t: t.offset)
    for a, b in zip(placed, placed[1:]):
        if a.offset + a.n_bytes > b.offset:
            raise GGUFError(f"corrupt: tensors {a.name!r} and {b.name!r} overlap", source=source, offset=b.at)
    return GGUFHeader(source, version, size, alignment, data_offset, metadata, key_offsets, tuple(tensors), cur.fetched)


# -- the planner's metadata ---------------------------------------------------------


class GGUFMetadataError(GGUFError):
    """A well-formed file whose metadata the planner cannot use (a key's type or range is wrong)."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _describe(v: Any) -> str:
    if isinstance(v, _Skipped):
        return f"a value of {v.count} elements or bytes"
    if isinstance(v, list):
        return f"[{', '.join(map(repr, v[:4]))}{', ...' if len(v) > 4 else ''}] ({len(v)} values)"
    return repr(v)


def check_layout(h: GGUFHeader, parts: tuple[Part, ...] = ()) -> ModelLayout:
    """The layout of a well-formed header whose planner keys have the types and ranges they must.

    Each error names the key, where it is in the file, and the value found (docs/gguf-validity.md).
    """

    def fail(key: str, value: Any, expected: str) -> GGUFMetadataError:
        return GGUFMetadataError(f"{key} is {_describe(value)}; expected {expected}", source=h.source, offset=h.key_offsets.get(key))

    arch = h.metadata.get("general.architecture")
    if arch is None:
        raise GGUFMetadataError("no general.architecture key: not a model file", source=h.source)
    if not isinstance(arch, str) or not _ARCH.match(arch):
        raise fail("general.architecture", arch, "a name of 1 to 64 letters, digits, '_' or '-'")

    def integer(name: str, lo: int, hi: int, *, required: bool = False) -> int | None:
        key = f"{arch}.{name}"
        if key not in h.metadata:
            if required:
                raise GGUFMetadataError(f"no {key} key", source=h.source)
            return None
        v = h.metadata[key]
        if not _is_int(v) or not lo <= v <= hi:
            raise fail(key, v, f"an integer in {lo}..{hi}")
        return v

    def per_layer(name: str, tops: list[int]) -> list[int] | None:
        """A scalar, or one value per block (hybrid models vary head counts); block i's value in 0..tops[i]."""
        key = f"{arch}.{name}"
        if key not in h.metadata:
            return None
        v = h.metadata[key]
        if _is_int(v):
            values = [v] * len(tops)
        elif isinstance(v, list) and len(v) == len(tops) and all(map(_is_int, v)):
            values = v
        else:
            raise fail(key, v, f"an integer, or {len(tops)} integers (one per block)")
        for i, (x, top) in enumerate(zip(values, tops)):
            if not 0 <= x <= top:
                raise fail(key, v, f"{'an integer' if _is_int(v) else f'block {i}: an integer'} in 0..{top}")
        return values

    n_blocks = integer("block_count", 1, MAX_BLOCKS, required=True) or 0
    integer("context_length", 1, MAX_CONTEXT)
    integer("embedding_length", 1, MAX_EMBEDDING)
    for name in ("attention.key_length", "attention.value_length", "attention.kv_lora_rank"):
        integer(name, 1, MAX_HEAD_DIM)
    integer("rope.dimension_count", 0, MAX_HEAD_DIM)
    heads = per_layer("attention.head_count", [MAX_HEADS] * n_blocks)
    per_layer("attention.head_count_kv", heads or [MAX_HEADS] * n_blocks)  # grouped-query: never more than heads
    experts = integer("expert_count", 0, MAX_EXPERTS)
    integer("expert_used_count", 0, experts if experts is not None else MAX_EXPERTS)
    integer("expert_shared_count", 0, MAX_EXPERTS)
    integer("leading_dense_block_count", 0, n_blocks)

    tensors = []
    for t in h.tensors:
        layer = layer_of(t.name)
        if layer is not None and layer >= n_blocks:
            raise GGUFMetadataError(f"tensor {t.name!r} is in layer {layer}, but {arch}.block_count is {n_blocks}", source=h.source, offset=t.at)
        tensors.append(Tensor(t.name, layer, classify(t.name), t.type.name, t.shape, t.n_bytes, t.offset, t.part))
    kept = {k: v for k, v in h.metadata.items() if not isinstance(v, _Skipped)}
    return ModelLayout(
        source=h.source,
        architecture=arch,
        version=h.version,
        file_size=h.file_size,
        alignment=h.alignment,
        data_offset=h.data_offset,
        block_count=n_blocks,
        tensors=tuple(tensors),
        metadata=kept,
        header_bytes_read=h.bytes_read,
        parts=parts,
    )


# -- split models ---------------------------------------------------------------------
# Hubs ship big models in parts (llama.cpp's gguf-split): every part carries split.no (u16,
# 0-based), split.count (u16) and split.tensors.count (i32); the first part holds the
# metadata; each part's tensor offsets are relative to its own data section; the files are
# PREFIX-%05d-of-%05d.gguf, numbered from 1. llama.cpp loads the set from the first part.

SPLIT_NO, SPLIT_COUNT, SPLIT_TENSORS = "split.no", "split.count", "split.tensors.count"
_SPLIT_NAME = re.compile(r"(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf\Z")
MAX_SPLIT = 9999  # far past any model; the name keeps five digits
HeaderOf = Callable[[str], GGUFHeader]


@dataclass(frozen=True)
class Split:
    no: int  # 0-based
    count: int
    tensors: int  # in the whole set


def split_of(h: GGUFHeader) -> Split | None:
    """The split keys of one file (None: not a part), each checked for its type and range."""
    if SPLIT_COUNT not in h.metadata and SPLIT_NO not in h.metadata:
        return None

    def integer(key: str, lo: int, hi: int) -> int:
        v = h.metadata.get(key)
        if not _is_int(v) or not lo <= v <= hi:
            where = h.key_offsets.get(key)
            raise GGUFMetadataError(f"{key} is {_describe(v)}; expected an integer in {lo}..{hi}", source=h.source, offset=where)
        return v

    count = integer(SPLIT_COUNT, 1, MAX_SPLIT)
    return Split(integer(SPLIT_NO, 0, count - 1), count, integer(SPLIT_TENSORS, 0, (1 << 31) - 1))


def part_name(prefix: str, no: int, count: int) -> str:
    """The file name of part `no` (0-based) of `count`, as gguf-split writes it."""
    return f"{prefix}-{no + 1:05d}-of-{count:05d}.gguf"


def part_paths(path: str, count: int) -> list[str]:
    """Every part's path, from the path of any one part of a `count`-part model."""
    m = _SPLIT_NAME.match(path)
    if not m:
        raise GGUFError(f"split.count is {count}, but the name is not PREFIX-NNNNN-of-{count:05d}.gguf, so the other parts cannot be found", source=path)
    return [part_name(m["prefix"], i, count) for i in range(count)]


def read_parts(path: str, header_of: HeaderOf, source: Callable[[str], str] = str) -> ModelLayout:
    """The layout of the model at `path`: one file, or the union of every part of a split
    model found from any one of them. The set must be whole and consistent (docs/models.md)."""
    h = header_of(path)
    split = split_of(h)
    if split is None or split.count == 1:
        return check_layout(h, ())
    paths = part_paths(path, split.count)
    if paths[split.no] != path:
        raise GGUFError(f"{SPLIT_NO} {split.no} and {SPLIT_COUNT} {split.count} make it {part_name('PREFIX', split.no, split.count)}, "
                        "but the name says another part: a misnamed part", source=path)
    headers = []
    for i, p in enumerate(paths):
        if p == path:
            headers.append(h)
            continue
        try:
            headers.append(header_of(p))
        except GGUFError as e:
            raise GGUFError(f"part {i + 1} of {split.count} of {source(path)}: {e.message}", source=e.source, offset=e.offset) from None
    return check_layout(*merge_parts(headers))


def merge_parts(headers: list[GGUFHeader]) -> tuple[GGUFHeader, tuple[Part, ...]]:
    """One header for the set (the first part's metadata, every part's tensors, each tagged
    with its part), after checking that the parts belong together."""
    first = split_of(headers[0])
    assert first is not None
    owner: dict[str, int] = {}
    tensors: list[TensorInfo] = []
    for i, h in enumerate(headers):
        s = split_of(h)
        if s is None:
            raise GGUFError(f"not a part of a split model (no {SPLIT_COUNT}), but named as part {i + 1} of {first.count}", source=h.source)
        if s.count != first.count or s.tensors != first.tensors:
            raise GGUFError(f"a part of another model: {SPLIT_COUNT} {s.count} and {SPLIT_TENSORS} {s.tensors}, "
                            f"where part 1 says {first.count} and {first.tensors}", source=h.source)
        if s.no != i:
            raise GGUFError(f"{SPLIT_NO} is {s.no} (part {s.no + 1}), but the file is named as part {i + 1}: "
                            "a duplicated or misnamed part", source=h.source)
        for t in h.tensors:
            if t.name in owner:
                raise GGUFError(f"tensor {t.name!r} is in part {owner[t.name] + 1} and again in part {i + 1}", source=h.source, offset=t.at)
            owner[t.name] = i
            tensors.append(replace(t, part=i))
    if len(tensors) != first.tensors:
        raise GGUFError(f"the {first.count} parts hold {len(tensors)} tensors, {SPLIT_TENSORS} says {first.tensors}", source=headers[0].source)
    merged = replace(headers[0], file_size=sum(h.file_size for h in headers), tensors=tuple(tensors),
                     bytes_read=sum(h.bytes_read for h in headers))
    return merged, tuple(Part(h.source, h.file_size, len(h.tensors)) for h in headers)


# -- readers ----------------------------------------------------------------------------


def parse_layout(read_at: ReadAt, size: int, source: str, *, first_read: int = FIRST_READ) -> ModelLayout:
    """Parse and check the header and tensor table of one GGUF file of `size` bytes read through `read_at`."""
    return check_layout(read_header(read_at, size, source, first_read=first_read))


def local_header(path: str, *, first_read: int = FIRST_READ) -> GGUFHeader:
    """The header of a local GGUF file; only its header and tensor table are read."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size

            def read_at(offset: int, length: int) -> bytes:
                f.seek(offset)
                return f.read(length)

            return read_header(read_at, size, path, first_read=first_read)
    except IsADirectoryError:
        raise GGUFError("is a directory, not a GGUF file", source=path) from None
    except OSError as e:
        raise GGUFError(f"cannot read: {e.strerror}", source=path) from None


def read_layout(path: str | os.PathLike[str], *, first_read: int = FIRST_READ) -> ModelLayout:
    """The layout of a local model (every part of a split one), reading only headers."""
    return read_parts(os.fspath(path), lambda p: local_header(p, first_read=first_read))


def remote_header(conn: Any, path: str, *, first_read: int = FIRST_READ) -> GGUFHeader:
    """The header of a GGUF file on a host, read through `conn` (a Connector)."""
    source = f"{conn.host}:{path}"
    st = conn.stat(path)
    if st is None:
        raise GGUFError("no such file", source=source)
    if st.is_dir:
        raise GGUFError("is a directory, not a GGUF file", source=source)
    return read_header(lambda off, n: conn.read(path, off, n), st.size, source, first_read=first_read)


def read_remote_layout(conn: Any, path: str, *, first_read: int = FIRST_READ) -> ModelLayout:
    """The layout of a model on a host (every part of a split one), reading only headers."""
    return read_parts(path, lambda p: remote_header(conn, p, first_read=first_read), lambda p: f"{conn.host}:{p}")
