"""The layout of a GGUF model: every tensor's name, layer, kind, type and exact size.

Only the header and the tensor-info table are read, through a byte-range callback
`read_at(offset, length)`, so a remote model costs a few megabytes of transfer, not
its weights. The format constants (value types, quantization block sizes) come from
the `gguf` package; the parser is ours because the package's reader wants the whole
file mapped.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Mapping

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from .errors import CoffersError
from .shardmap import layer_of

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
FIRST_READ = 1 << 20  # most headers fit in one read; a 128k-token vocabulary needs a few more
KEEP_ARRAY_MAX = 1024  # numeric arrays up to this length are kept (per-layer head counts, ...)

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
    offset: int  # absolute offset of the data in the file


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

    def key(self, name: str, default: Any = None) -> Any:
        """An architecture key without the prefix: `key("embedding_length")`."""
        return self.metadata.get(f"{self.architecture}.{name}", default)

    # -- the dims the KV-cache estimate needs -------------------------------
    def kv_bytes_per_token(self, cache_type: str = "f16") -> int:
        """Bytes of K and V cache one token of context costs, summed over all blocks.

        Standard attention stores head_count_kv x (key_length + value_length) per layer.
        MLA (deepseek2) stores the compressed latent: kv_lora_rank + rope dims for K, and
        we also count kv_lora_rank for V, an upper bound for builds that keep V apart.
        Sliding-window layers are counted at full context (an upper bound too).
        """
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
            "total_bytes": self.total_bytes,
            "kinds": dict(self.kind_bytes),
            "layers": [
                {"layer": layer, "bytes": sum(kinds.values()), "kinds": kinds}
                for layer, kinds in self.bytes_by_layer_kind.items()
            ],
            "tensors": [
                {"name": t.name, "layer": t.layer, "kind": t.kind, "type": t.type, "shape": list(t.shape), "bytes": t.n_bytes}
                for t in self.tensors
            ],
        }


def _per_layer(value: Any, n_layers: int) -> list[int]:
    """A per-layer list from a scalar or a per-layer array key (some models vary head counts)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value][:n_layers]
    return [int(value)] * n_layers


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


class _Cursor:
    """Sequential reads over `read_at`, fetching more of the file only when the parse needs it."""

    def __init__(self, read_at: ReadAt, size: int, source: str, first_read: int):
        self.read_at, self.size, self.source = read_at, size, source
        self.first_read = max(first_read, 64)
        self.buf = bytearray()
        self.pos = 0

    def fail(self, message: str, offset: int | None = None) -> GGUFError:
        return GGUFError(message, source=self.source, offset=self.pos if offset is None else offset)

    def need(self, n: int, what: str) -> None:
        end = self.pos + n
        if end > self.size:
            raise self.fail(f"truncated: {what} needs {n} bytes, the file ends at byte {self.size}")
        if end > len(self.buf):
            # Grow geometrically so a long table costs a few round trips, never one per field.
            want = min(self.size, max(end, 2 * len(self.buf), self.first_read)) - len(self.buf)
            data = self.read_at(len(self.buf), want)
            if len(data) != want:
                raise self.fail(f"short read: asked {want} bytes at {len(self.buf)}, got {len(data)}", len(self.buf))
            self.buf += data

    def unpack(self, st: struct.Struct, what: str) -> Any:
        self.need(st.size, what)
        (value,) = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return value

    def string(self, what: str) -> str:
        start = self.pos
        n = self.unpack(_U64, what)
        if n > self.size - self.pos:
            raise self.fail(f"corrupt: {what} claims {n} bytes, past the end of the file", start)
        self.need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"corrupt: {what} is not UTF-8", start) from None

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.pos += n

    def value(self, vtype: int, key: str) -> Any:
        """One value of type `vtype`; long arrays are skipped and summarised by their length."""
        start = self.pos
        try:
            vt = GGUFValueType(vtype)
        except ValueError:
            raise self.fail(f"corrupt: unknown value type {vtype} for key {key!r}", start - 4) from None
        if vt == GGUFValueType.STRING:
            return self.string(f"value of {key!r}")
        if vt != GGUFValueType.ARRAY:
            return self.unpack(_SCALARS[vt], f"value of {key!r}")
        item_type = self.unpack(_U32, f"array type of {key!r}")
        count = self.unpack(_U64, f"array length of {key!r}")
        if count > self.size - self.pos:  # every element takes at least one byte
            raise self.fail(f"corrupt: array {key!r} claims {count} elements, more than the file holds", start)
        try:
            it = GGUFValueType(item_type)
        except ValueError:
            raise self.fail(f"corrupt: unknown array element type {item_type} for key {key!r}", start) from None
        if it in _SCALARS:
            st = _SCALARS[it]
            if count > KEEP_ARRAY_MAX:
                self.skip(count * st.size, f"array {key!r}")
                return _Skipped(count)
            self.need(count * st.size, f"array {key!r}")
            values = [v for (v,) in st.iter_unpack(self.buf[self.pos : self.pos + count * st.size])]
            self.pos += count * st.size
            return values
        # strings or nested arrays: walk them, keep nothing
        for _ in range(count):
            if it == GGUFValueType.STRING:
                n = self.unpack(_U64, f"array {key!r}")
                if n > self.size - self.pos:
                    raise self.fail(f"corrupt: a string in array {key!r} claims {n} bytes", self.pos - 8)
                self.skip(n, f"array {key!r}")
            else:
                self.value(it, key)
        return _Skipped(count)


@dataclass(frozen=True)
class _Skipped:
    """A long array we did not keep, only counted (a vocabulary, merges, scores)."""

    count: int


def parse_layout(read_at: ReadAt, size: int, source: str, *, first_read: int = FIRST_READ) -> ModelLayout:
    """Parse the header and tensor table of a GGUF file of `size` bytes read through `read_at`."""
    cur = _Cursor(read_at, size, source, first_read)
    if size < 4:
        raise GGUFError(f"not a GGUF file: only {size} bytes", source=source)
    cur.need(4, "magic")
    magic = bytes(cur.buf[:4])
    if magic != GGUF_MAGIC:
        raise GGUFError(f"not a GGUF file: magic is {magic!r}, expected {GGUF_MAGIC!r}", source=source, offset=0)
    cur.pos = 4
    version = cur.unpack(_U32, "version")
    if version not in SUPPORTED_VERSIONS:
        if version & 0xFFFF == 0 and (version >> 24) in SUPPORTED_VERSIONS:
            raise cur.fail("big-endian GGUF files are not supported", 4)
        if version == 1:
            raise cur.fail("GGUF version 1 is not supported (versions 2 and 3 are)", 4)
        raise cur.fail(f"unknown GGUF version {version} (versions 2 and 3 are supported)", 4)
    n_tensors = cur.unpack(_U64, "tensor count")
    n_kv = cur.unpack(_U64, "metadata count")
    # A tensor info takes at least 8+1+4+8+4+8 bytes and a key-value pair at least 8+1+4+1.
    if n_tensors * 33 > size or n_kv * 14 > size:
        raise cur.fail(f"truncated or corrupt: {n_tensors} tensors and {n_kv} keys cannot fit in {size} bytes", 8)

    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key_at = cur.pos
        key = cur.string("metadata key")
        vtype = cur.unpack(_U32, f"type of {key!r}")
        if key in metadata:
            raise cur.fail(f"corrupt: key {key!r} appears twice", key_at)
        metadata[key] = cur.value(vtype, key)

    arch = metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise GGUFError("no general.architecture key: not a model file", source=source)
    block_count = metadata.get(f"{arch}.block_count")
    if not isinstance(block_count, int):
        raise GGUFError(f"no {arch}.block_count key", source=source)
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise GGUFError(f"general.alignment {alignment!r} is not a power of two", source=source)

    infos: list[tuple[str, tuple[int, ...], GGMLQuantizationType, int, int]] = []
    seen: set[str] = set()
    for _ in range(n_tensors):
        at = cur.pos
        name = cur.string("tensor name")
        if name in seen:
            raise cur.fail(f"corrupt: tensor {name!r} appears twice", at)
        seen.add(name)
        n_dims = cur.unpack(_U32, f"dims of {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise cur.fail(f"corrupt: tensor {name!r} has {n_dims} dimensions", at)
        shape = tuple(cur.unpack(_U64, f"shape of {name!r}") for _ in range(n_dims))
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
        block, type_size = GGML_QUANT_SIZES[qtype]
        n_elements = 1
        for d in shape:
            n_elements *= d
        if shape[0] % block:
            raise GGUFError(f"corrupt: tensor {name!r} row of {shape[0]} is not a multiple of the {qtype.name} block {block}", source=source, offset=at)
        n_bytes = n_elements // block * type_size
        start = data_offset + offset
        if offset % alignment:
            raise GGUFError(f"corrupt: tensor {name!r} data offset {offset} is not {alignment}-aligned", source=source, offset=at)
        if start + n_bytes > size:
            raise GGUFError(f"truncated: tensor {name!r} ends at byte {start + n_bytes}, the file has {size} bytes", source=source)
        tensors.append(Tensor(name, layer_of(name), classify(name), qtype.name, shape, n_bytes, start))

    kept = {k: v for k, v in metadata.items() if not isinstance(v, _Skipped)}
    return ModelLayout(
        source=source,
        architecture=arch,
        version=version,
        file_size=size,
        alignment=alignment,
        data_offset=data_offset,
        block_count=block_count,
        tensors=tuple(tensors),
        metadata=kept,
        header_bytes_read=len(cur.buf),
    )


def read_layout(path: str | os.PathLike[str], *, first_read: int = FIRST_READ) -> ModelLayout:
    """The layout of a local GGUF file; only its header and tensor table are read."""
    source = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size

            def read_at(offset: int, length: int) -> bytes:
                f.seek(offset)
                return f.read(length)

            return parse_layout(read_at, size, source, first_read=first_read)
    except IsADirectoryError:
        raise GGUFError("is a directory, not a GGUF file", source=source) from None
    except OSError as e:
        raise GGUFError(f"cannot read: {e.strerror}", source=source) from None


def read_remote_layout(conn: Any, path: str, *, first_read: int = FIRST_READ) -> ModelLayout:
    """The layout of a GGUF file on a host, reading only its header through `conn` (a Connector)."""
    source = f"{conn.host}:{path}"
    st = conn.stat(path)
    if st is None:
        raise GGUFError("no such file", source=source)
    if st.is_dir:
        raise GGUFError("is a directory, not a GGUF file", source=source)
    return parse_layout(lambda off, n: conn.read(path, off, n), st.size, source, first_read=first_read)
