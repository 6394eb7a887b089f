"""Live placement from this machine's real /proc/self/numa_maps and maps: a real model file
mapped and read by this process, its mapping split in several (mprotect), each split part
found at its file offset and its pages counted against the plan.

This machine has one NUMA node, so every resident page is on node 0: the plan (for a
captured 2-node topology) puts some layers on node 1, whose share must come out 0, and
the rest on node 0, whose share must come out 1. The lab checks real placement on a
multi-node kernel (tests/lab/test_service_apply.py).
"""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

from coffers_provision import modelgen
from coffers_provision.facts.numa import parse_numactl
from coffers_provision.model import read_layout
from coffers_provision.observe import placement
from coffers_provision.planner import plan

FIXTURE = Path(__file__).parent / "fixtures" / "numactl" / "aws-c5n-18xlarge-xeon-2s-2node.txt"
PAGE = mmap.PAGESIZE


def test_layer_shares_from_a_real_mapping(tmp_path):
    model = tmp_path / "m.gguf"
    modelgen.write_llama(model, n_layers=8, dim=256, n_head=4, n_head_kv=4, ffn=1024)
    layout = read_layout(str(model))
    p = plan(parse_numactl(FIXTURE.read_text(), source=str(FIXTURE)), layout)
    assert set(p.layer_nodes.values()) == {0, 1}, p.layer_nodes  # both nodes hold layers
    size = model.stat().st_size
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    fd = os.open(model, os.O_RDONLY)
    base = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    os.close(fd)
    assert base not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    try:
        for t in layout.tensors:  # only what the plan puts on node 0 is read: where the rest lies must not count
            node = p.layer_nodes[t.layer] if t.layer is not None else None if t.name.startswith("token_embd") else p.other_node
            if node == 0:
                for off in range(t.offset // PAGE * PAGE, t.offset + t.n_bytes, PAGE):
                    ctypes.string_at(base + off, 1)
        # one page made inaccessible splits the mapping in three, each listed with its own offset
        assert libc.mprotect(base + (size // PAGE // 2) * PAGE, PAGE, 0) == 0
        numa, maps = Path("/proc/self/numa_maps").read_text(), Path("/proc/self/maps").read_text()
    finally:
        libc.munmap(base, size)
    vmas = [v for v in placement.parse(numa, maps) if v.file == str(model)]
    assert len(vmas) == 3, vmas
    shares = placement.layer_shares(p, vmas, str(model))
    assert {r["node"] for r in shares} == {0, 1}
    for r in shares:
        first, last = (int(x) for x in (r["range"].split("-") * 2)[:2])
        planned = sum(t.n_bytes for t in layout.tensors if t.layer is not None and first <= t.layer <= last) // PAGE
        assert abs(r["planned_pages"] - planned) <= 2, (r, planned)  # each split part found at its file offset
        # node 0's layers were read and sit on node 0, the only node here; node 1's have nothing there
        assert r["share"] == (1.0 if r["node"] == 0 else 0.0), r
    assert placement.by_node(vmas, str(model)) == {"0": sum(sum(v.pages.values()) for v in vmas)}
