"""Property tests: random topologies (sparse ids, memory-only and memoryless nodes) x random models."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from coffers_provision import shardmap
from coffers_provision.facts.numa import write_sysfs
from coffers_provision.model import GGUFError, ModelLayout, Tensor, classify, parse_layout
from coffers_provision.modelgen import arch_spec
from coffers_provision.planner import MiB, Bench, PlanError, Policy, plan
from coffers_provision.topology import Node, Topology
from tests import ggufbytes as gb
from tests import ggufmutate as gm
from tests.c.nativebuild import PLACE, build


@st.composite
def topologies(draw) -> Topology:
    n = draw(st.integers(1, 6))
    ids = sorted(draw(st.sets(st.integers(0, 300), min_size=n, max_size=n)))
    kinds = draw(st.lists(st.sampled_from(["both", "both", "memory-only", "cpus-only"]), min_size=n, max_size=n))
    if "both" not in kinds and "memory-only" not in kinds:
        kinds[0] = "both"
    nodes, next_cpu = [], 0
    for node_id, kind in zip(ids, kinds):
        cpus: tuple[int, ...] = ()
        if kind != "memory-only":
            count = draw(st.integers(1, 16))
            cpus = tuple(range(next_cpu, next_cpu + count))
            next_cpu += count
        size = 0 if kind == "cpus-only" else draw(st.integers(64, 1024 * 1024))
        free = 0 if size == 0 else draw(st.integers(size // 10, size + size // 20))  # free > size happens
        nodes.append(Node(node_id, cpus, size, free))
    distances = None
    if draw(st.booleans()):
        rows = [[10 if i == j else 0 for j in range(n)] for i in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                rows[i][j] = rows[j][i] = draw(st.integers(11, 80))
        distances = tuple(tuple(r) for r in rows)
    return Topology(True, tuple(nodes), distances)


_LAYER_STEMS = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down",
                "ffn_gate_exps", "ffn_up_shexp", "ffn_gate_inp", "attn_kv_a_mqa"]
_LAYERLESS = ["token_embd", "output", "output_norm", "rope_freqs", "token_embd_norm", "position_embd"]


@st.composite
def layouts(draw) -> ModelLayout:
    n_layers = draw(st.integers(1, 96))
    sizes = st.integers(1, 2**29)
    stems = draw(st.lists(st.sampled_from(_LAYER_STEMS), min_size=1, max_size=5, unique=True))
    tensors = []
    for i in range(n_layers):
        for stem in stems:
            name = f"blk.{i}.{stem}.weight"
            tensors.append(Tensor(name, i, classify(name), "F16", (1,), draw(sizes), 0))
    for stem in draw(st.lists(st.sampled_from(_LAYERLESS), max_size=4, unique=True)):
        name = f"{stem}.weight"
        tensors.append(Tensor(name, None, classify(name), "F16", (1,), draw(sizes), 0))
    heads = draw(st.sampled_from([8, 32, 64]))
    meta = {
        "general.architecture": "llama",
        "llama.embedding_length": heads * 128,
        "llama.attention.head_count": heads,
        "llama.attention.head_count_kv": draw(st.sampled_from([1, 8])),
    }
    return ModelLayout("random.gguf", "llama", 3, 0, 32, 0, n_layers, tuple(tensors), meta)


@st.composite
def policies(draw, topo: Topology) -> Policy:
    ids = topo.node_ids
    nodes = None
    if draw(st.booleans()):
        nodes = tuple(sorted(draw(st.sets(st.sampled_from(ids), min_size=1))))
    all_cpus = sorted(c for n in topo.nodes for c in n.cpus or ())
    reserve = tuple(draw(st.sets(st.sampled_from(all_cpus), max_size=2))) if all_cpus and draw(st.booleans()) else ()
    return Policy(
        strategy=draw(st.sampled_from(["shard", "shard", "replicate", "interleave", "auto"])),
        nodes=nodes,
        reserve_cpus=reserve,
        reserve_memory_mb=draw(st.sampled_from([0, 0, 512, 4096])),
        headroom_percent=draw(st.sampled_from([0, 10, 25.5])),
        context_length=draw(st.sampled_from([1, 4096, 16384])),
        parallel=draw(st.integers(1, 4)),
        kv_cache_type=draw(st.sampled_from(["f16", "q8_0", "q4_0"])),
    )


def node_limit(topo: Topology, node_id: int, policy: Policy) -> int:
    """docs/planning.md: min(size, free) - ceil(headroom% of it) - reserve_memory_mb, in bytes."""
    n = topo.node(node_id)
    avail = min(n.size_mb, n.free_mb) * MiB
    return avail - math.ceil(avail * policy.headroom_percent / 100) - policy.reserve_memory_mb * MiB


def check_plan(topo: Topology, lay: ModelLayout, policy: Policy, p) -> None:
    eligible = set(policy.nodes) if policy.nodes else set(topo.node_ids)
    memory = {n.id for n in topo.nodes if n.size_mb and n.id in eligible}
    kv_total = lay.kv_bytes_per_token(policy.kv_cache_type) * policy.context_length * policy.parallel
    assert p.kv_bytes == kv_total
    assert set(p.node_bytes) <= memory  # only eligible nodes with memory hold weights
    kv_by_node = {b.id: b.kv for b in p.nodes}
    assert sum(kv_by_node.values()) == kv_total * len(p.instances)
    for node_id, weights in p.node_bytes.items():
        assert weights + kv_by_node[node_id] <= node_limit(topo, node_id, policy), f"node {node_id} over capacity"
    names = [name for name, _ in p.tensor_nodes()]
    assert sorted(names) == sorted(t.name for t in lay.tensors) and len(set(names)) == len(names)
    if p.strategy == "shard":
        assignment = dict(p.tensor_nodes())
        assert all(node in memory for node in assignment.values())  # every tensor placed exactly once
        per_node: dict[int, int] = {}
        for t in lay.tensors:
            per_node[assignment[t.name]] = per_node.get(assignment[t.name], 0) + t.n_bytes
        assert per_node == dict(p.node_bytes)
        # The map, evaluated under the spec's rules, reproduces the assignment exactly.
        smap = shardmap.parse(p.shard_map)
        assert shardmap.assign(smap, names, sorted(memory)) == assignment
        assert p.shard_map == p.instances[0].shard_map
    elif p.strategy == "replicate":
        for inst in p.instances:
            (home,) = inst.memory_nodes
            evaluated = set(shardmap.assign(shardmap.parse(inst.shard_map), names, sorted(memory)).values())
            assert evaluated == {home}
            assert p.node_bytes[home] == lay.total_bytes
        cpu_sets = [set(i.cpus) for i in p.instances]
        assert sum(map(len, cpu_sets)) == len(set().union(*cpu_sets))  # replicas share no CPU
    else:
        assert sum(p.node_bytes.values()) == lay.total_bytes
    reserved = set(policy.reserve_cpus)
    for inst in p.instances:
        assert inst.cpus and not reserved & set(inst.cpus)
        allowed = {c for n in topo.nodes if n.id in eligible for c in n.cpus or ()}
        assert set(inst.cpus) <= allowed
        assert inst.threads == inst.threads_batch == len(inst.cpus)  # no sibling facts: every CPU


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_random_plans_are_exact_and_capacity_safe(data):
    topo = data.draw(topologies())
    lay = data.draw(layouts())
    policy = data.draw(policies(topo))
    bench = None
    if data.draw(st.booleans()):
        bw = {n.id: data.draw(st.floats(1, 400)) for n in topo.nodes if n.size_mb and data.draw(st.integers(0, 4))}
        bench = Bench(node_bandwidth=bw)
    try:
        p = plan(topo, lay, bench, policy)
    except PlanError as e:
        # Shard only gives up when no single eligible node could hold everything.
        if policy.strategy == "shard" and "no CPUs left" not in str(e):
            eligible = policy.nodes or topo.node_ids
            kv = lay.kv_bytes_per_token(policy.kv_cache_type) * policy.context_length * policy.parallel
            big = [n for n in eligible if topo.node(n).size_mb and node_limit(topo, n, policy) >= lay.total_bytes + kv]
            assert not big, f"shard failed although node {big[0]} holds everything: {e}"
        return
    check_plan(topo, lay, policy, p)


@settings(max_examples=200, deadline=None)
@given(topologies(), layouts(), st.sampled_from(["shard", "replicate", "interleave"]))
def test_every_strategy_fits_when_memory_is_plenty(topo, lay, strategy):
    """With room for the whole model on every memory node, no strategy fails."""
    assume(any(n.cpus and n.size_mb for n in topo.nodes))
    roomy = Topology(True, tuple(
        Node(n.id, n.cpus, 2**40 // MiB if n.size_mb else 0, 2**40 // MiB if n.size_mb else 0) for n in topo.nodes
    ), topo.distances)
    policy = Policy(strategy=strategy)
    p = plan(roomy, lay, None, policy)
    check_plan(roomy, lay, policy, p)
    assert p.strategy == strategy
    attached = [n.id for n in roomy.nodes if n.size_mb and n.cpus]
    if strategy == "replicate":
        assert sorted(i.memory_nodes[0] for i in p.instances) == attached
        assert [i.port for i in p.instances] == list(range(8081, 8081 + len(attached)))  # the front-end has 8080
    if strategy == "shard":
        # equal shares without measurements: no CPU-attached node gets more than its share plus
        # one layer and the layerless tensors; unmeasured CPU-less memory stays unused
        share = lay.total_bytes / len(attached)
        biggest = max(lay.layer_bytes.values())
        layerless = sum(t.n_bytes for t in lay.tensors if t.layer is None)
        for n in attached:
            assert p.node_bytes.get(n, 0) <= share + biggest + layerless
        assert set(p.node_bytes) <= set(attached)


# -- from real headers: the reader, the planner and the C parser in one chain ---------------


@st.composite
def gguf_files(draw) -> bytes:
    """A real header of some architecture and size, perhaps mutated once (most mutants are refused)."""
    arch = draw(st.sampled_from(gm.SEED_ARCHS))
    dims = replace(gm.SMALL, n_layers=draw(st.integers(1, 12)), dim=draw(st.sampled_from([32, 64])))
    h = gb.from_spec(arch_spec(arch, dims), alignment=draw(st.sampled_from([32, 64, 4096])))
    if draw(st.booleans()):
        draw(st.sampled_from(gm.STRUCTURAL))(h, random.Random(draw(st.integers(0, 2**32))))
    return h.to_bytes()


def c_nodes(model: bytes, smap: str, topo: Topology) -> dict[str, int]:
    """numa-shard-place --plan --json's node for every tensor, on a node tree written for `topo`."""
    with tempfile.TemporaryDirectory() as d:
        write_sysfs(topo, Path(d) / "node")
        (Path(d) / "m.gguf").write_bytes(model)
        env = {k: v for k, v in os.environ.items() if k != "GGML_NUMA_SHARD_MAP"} | {"GGML_NUMA_SHARD_SYSFS": str(Path(d) / "node")}
        proc = subprocess.run([str(build(PLACE)), "--plan", "--json", "--map", smap, str(Path(d) / "m.gguf")],
                              capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, (smap, proc.stderr)
    return {t["name"]: t["node"] for t in json.loads(proc.stdout)["tensors"]}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_accepted_headers_plan_or_refuse_and_c_places_every_tensor_where_the_plan_says(data):
    model = data.draw(gguf_files())
    try:
        lay = parse_layout(lambda off, n: model[off : off + n], len(model), "m.gguf")
    except GGUFError:
        return  # refused, with a message (tests/test_gguf_validity.py checks those)
    topo = data.draw(topologies())
    policy = data.draw(policies(topo))
    try:
        p = plan(topo, lay, None, policy)  # anything but a Plan or a PlanError is a failure here
    except PlanError:
        return
    memory = sorted(n.id for n in topo.nodes if n.size_mb)
    if p.strategy == "shard":
        assert c_nodes(model, p.shard_map, topo) == dict(p.tensor_nodes())
    elif p.strategy == "replicate":
        inst = data.draw(st.sampled_from(p.instances))
        assert set(c_nodes(model, inst.shard_map, topo).values()) == set(inst.memory_nodes)
    assert set(memory) >= set(p.node_bytes)
