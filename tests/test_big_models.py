"""The 400B class at full scale, header only: Llama-3.1-405B, DeepSeek-V3 and Qwen3-235B-A22B
written in parts with the exact per-layer bytes of their pure Q8_0 / Q4_0 quantisations, planned
on the real 2-, 4- and 8-node fixtures, every plan's map checked by numa-shard-place itself."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from coffers_provision import modelgen
from coffers_provision.facts.numa import write_sysfs
from coffers_provision.model import read_layout
from coffers_provision.planner import MiB, PlanError, plan
from tests.c.nativebuild import PLACE, build
from tests.test_planner import topo

Q = modelgen.Q
Q8, Q4 = 34 / 32, 18 / 32  # bytes per weight of a Q8_0 / Q4_0 block
MODELS = {  # name: (spec, weight type, parts)
    "llama405b": (modelgen.llama405b_spec, Q.Q8_0, 5),
    "deepseek-v3": (modelgen.deepseek_v3_spec, Q.Q8_0, 4),
    "deepseek-v3-q4_0": (modelgen.deepseek_v3_spec, Q.Q4_0, 3),
    "qwen3-235b": (modelgen.qwen3_235b_spec, Q.Q8_0, 3),
    "qwen3-235b-q4_0": (modelgen.qwen3_235b_spec, Q.Q4_0, 2),
}


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    out = {}
    for name, (spec, w, parts) in MODELS.items():
        modelgen.write_header_only(d / f"{name}.gguf", spec(w), parts=parts)
        out[name] = (read_layout(d / f"{name}-{parts:05d}-of-{parts:05d}.gguf"), modelgen.split_paths(d / f"{name}.gguf", parts))
    return out


def _layer_bytes(q: float, weights: int, f32: int) -> int:
    return int(weights * q) + 4 * f32


# Per-layer bytes from the public config.json of each model, computed here independently of
# modelgen: 2-D weights at the quant's bytes per weight, norms and the router in F32.
def expected_layers(name: str) -> dict[int, int]:
    q = Q4 if name.endswith("q4_0") else Q8
    if name == "llama405b":
        d, kv, ffn = 16384, 8 * 128, 53248
        return dict.fromkeys(range(126), _layer_bytes(q, 2 * d * d + 2 * d * kv + 3 * d * ffn, 2 * d))
    if name.startswith("qwen3"):
        d, attn, kv, experts = 4096, 64 * 128, 4 * 128, 3 * 4096 * 1536 * 128
        return dict.fromkeys(range(94), _layer_bytes(q, 2 * d * attn + 2 * d * kv + experts, 2 * d + 2 * 128 + d * 128))
    d, attn = 7168, 7168 * 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 * 128 * 256 + 128 * 128 * 7168
    norms = 2 * d + 1536 + 512
    dense = _layer_bytes(q, attn + 3 * d * 18432, norms)
    moe = _layer_bytes(q, attn + 3 * d * 2048 * 256 + 3 * d * 2048, norms + d * 256 + 256)
    return {i: dense if i < 3 else moe for i in range(61)}


@pytest.mark.parametrize("name", MODELS)
def test_layers_have_the_public_quantisations_exact_bytes(big, name):
    lay, paths = big[name]
    assert lay.layer_bytes == expected_layers(name)
    assert len(lay.parts) == len(paths) and lay.file_size == sum(os.path.getsize(p) for p in paths)
    assert sum(os.stat(p).st_blocks * 512 for p in paths) < 64 * MiB  # holes: only the headers are on disk


def test_totals_match_the_published_files(big):
    """The hubs list Llama-3.1-405B Q8_0 at 431.2 GB, DeepSeek-V3 Q8_0 at 713.3 GB and
    Qwen3-235B-A22B Q8_0 at 249.9 GB (docs/models.md); the layouts land within 0.1 %."""
    for name, published in (("llama405b", 431.2e9), ("deepseek-v3", 713.3e9), ("qwen3-235b", 249.9e9)):
        assert abs(big[name][0].file_size - published) / published < 0.001, name


def c_nodes(paths: list[Path], smap: str, t) -> dict[str, int]:
    """numa-shard-place --plan --json's node for every tensor of every part, on `t`'s node tree."""
    nodes: dict[str, int] = {}
    tree = paths[0].parent / f"sysfs-{id(t)}"
    write_sysfs(t, tree)
    env = {k: v for k, v in os.environ.items() if k != "GGML_NUMA_SHARD_MAP"} | {"GGML_NUMA_SHARD_SYSFS": str(tree)}
    for p in paths:
        proc = subprocess.run([str(build(PLACE)), "--plan", "--json", "--map", smap, str(p)], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        for tensor in json.loads(proc.stdout)["tensors"]:
            assert tensor["name"] not in nodes, f"{tensor['name']} in two parts"
            nodes[tensor["name"]] = tensor["node"]
    return nodes


FITS = [
    ("llama405b", "epyc-9135"), ("llama405b", "kunpeng920"), ("llama405b", "xeon-4node-224"),
    ("qwen3-235b", "epyc-9135"), ("qwen3-235b", "xeon-4node-224"), ("qwen3-235b-q4_0", "epyc-7742"),
    ("deepseek-v3-q4_0", "epyc-9135"), ("deepseek-v3-q4_0", "kunpeng920"),
]


@pytest.mark.parametrize("name,fixture", FITS)
def test_plans_place_every_tensor_once_within_each_node(big, name, fixture):
    lay, paths = big[name]
    t = topo(fixture)
    p = plan(t, lay)
    assert p.strategy == "shard"
    placed = dict(p.tensor_nodes())
    assert sorted(placed) == sorted(x.name for x in lay.tensors)  # every tensor once, from every part
    assert sum(p.node_bytes.values()) == lay.total_bytes
    for n in t.nodes:
        assert p.node_bytes.get(n.id, 0) <= (n.free_mb or 0) * MiB, f"node {n.id} over its free memory"
    assert len(p.node_bytes) == len([n for n in t.nodes if n.has_cpus and n.size_mb])  # spread over every CPU node
    assert c_nodes(paths, p.shard_map, t) == placed  # the C header reads the map the same way, part by part


NO_FIT = [("llama405b", "epyc-7742"), ("deepseek-v3", "epyc-9135"), ("deepseek-v3", "kunpeng920"), ("qwen3-235b", "epyc-7742"),
          ("deepseek-v3-q4_0", "epyc-7742"), ("llama405b", "aws-c5n")]


@pytest.mark.parametrize("name,fixture", NO_FIT)
def test_a_model_too_big_is_a_clear_error(big, name, fixture):
    lay, paths = big[name]
    with pytest.raises(PlanError) as e:
        plan(topo(fixture), lay)
    text = str(e.value)
    assert f"model {paths[0]} does not fit" in text and "the weights need" in text and "more than the nodes' room" in text
    assert "node 0: free" in text and "= room" in text


def test_the_plan_says_what_each_node_keeps_for_the_kv_cache_and_the_os(big):
    lay, _ = big["llama405b"]
    p = plan(topo("kunpeng920"), lay)
    doc = p.to_json(tensors=False)
    for n in doc["nodes"]:
        assert n["left_bytes"] == n["free_bytes"] - n["reserved_bytes"] - n["weight_bytes"]
        if n["weight_bytes"]:  # a node holding weights keeps its headroom and the KV cache
            assert n["left_bytes"] >= n["headroom_bytes"] + n["kv_bytes"]
    assert sum(n["weight_bytes"] for n in doc["nodes"]) == lay.total_bytes
