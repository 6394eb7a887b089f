"""GGUF files built field by field, for tests that need headers no writer would produce.

A `Header` holds every field as it goes on disk: metadata as (key, value type, encoded
payload) and tensor infos as (name, dims, type, offset), keys and names as raw bytes so a
test can write what is not UTF-8. `from_spec` turns a `modelgen.ModelSpec` into one, with a
zero-filled data region of the right size, so the file is a real model's header and layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Sequence

from gguf import GGMLQuantizationType, GGUFValueType

from coffers_provision.modelgen import ModelSpec, tensor_bytes

V = GGUFValueType
Q = GGMLQuantizationType
SCALAR_FORMATS = {
    V.UINT8: "<B", V.INT8: "<b", V.UINT16: "<H", V.INT16: "<h", V.UINT32: "<I", V.INT32: "<i",
    V.FLOAT32: "<f", V.BOOL: "<?", V.UINT64: "<Q", V.INT64: "<q", V.FLOAT64: "<d",
}


def string(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(raw)) + raw


def scalar(vtype: GGUFValueType, value: Any) -> bytes:
    return struct.pack(SCALAR_FORMATS[vtype], value)


def array(item_type: GGUFValueType, items: Sequence[Any]) -> bytes:
    """An array payload; nested arrays are given as already encoded payloads."""
    out = struct.pack("<IQ", item_type, len(items))
    for item in items:
        if item_type == V.STRING:
            out += string(item)
        elif item_type == V.ARRAY:
            out += item
        else:
            out += scalar(item_type, item)
    return out


def nested(depth: int) -> bytes:
    """An array payload `depth` levels deep: [[[...[]...]]]."""
    payload = struct.pack("<IQ", V.UINT8, 0)
    for _ in range(depth - 1):
        payload = struct.pack("<IQ", V.ARRAY, 1) + payload
    return payload


def encode(vtype: GGUFValueType, value: Any) -> bytes:
    """A value as modelgen specs hold it: scalars, strings and flat lists (typed from their items)."""
    if vtype == V.STRING:
        return string(value)
    if vtype != V.ARRAY:
        return scalar(vtype, value)
    first = value[0] if value else 0
    item = V.STRING if isinstance(first, str) else V.FLOAT32 if isinstance(first, float) else V.INT32
    return array(item, value)


@dataclass
class Header:
    kvs: list[tuple[bytes, int, bytes]] = field(default_factory=list)
    tensors: list[tuple[bytes, list[int], int, int]] = field(default_factory=list)
    version: int = 3
    alignment: int = 32
    data: bytes = b""
    n_tensors: int | None = None  # a count that lies; None: the real one
    n_kv: int | None = None

    def kv(self, key: str | bytes, vtype: int, payload: bytes) -> None:
        raw = key.encode() if isinstance(key, str) else key
        self.kvs = [kv for kv in self.kvs if kv[0] != raw] + [(raw, vtype, payload)]

    def to_bytes(self) -> bytes:
        out = bytearray(b"GGUF" + struct.pack("<IQQ", self.version,
                                              len(self.tensors) if self.n_tensors is None else self.n_tensors,
                                              len(self.kvs) if self.n_kv is None else self.n_kv))
        for key, vtype, payload in self.kvs:
            out += string(key) + struct.pack("<I", vtype) + payload
        for name, dims, ttype, offset in self.tensors:
            out += string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
            out += struct.pack("<IQ", ttype, offset)
        out += bytes(-len(out) % self.alignment)
        return bytes(out + self.data)


def from_spec(spec: ModelSpec, alignment: int = 32) -> Header:
    """The header `spec` describes, tensors packed in order at aligned offsets, data all zero."""
    h = Header(alignment=alignment)
    h.kv("general.architecture", V.STRING, string(spec.arch))
    if alignment != 32:
        h.kv("general.alignment", V.UINT32, scalar(V.UINT32, alignment))
    for key, value, vtype in spec.metadata:
        h.kv(key, vtype, encode(vtype, value))
    offset = 0
    for name, shape, qtype in spec.tensors:
        h.tensors.append((name.encode(), list(shape), int(qtype), offset))
        offset += -(-tensor_bytes(shape, qtype) // alignment) * alignment
    h.data = bytes(offset)
    return h

