"""Planner behaviour on the real numactl fixtures with a 70B-class tensor table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from coffers_provision import modelgen, shardmap
from coffers_provision.deployment.describe import llama_args
from coffers_provision.deployment.inputs import checked_coffers
from coffers_provision.facts.numa import parse_numactl
from coffers_provision.model import read_layout
from coffers_provision.planner import MiB, Bench, PlanError, Policy, PolicyError, cores_from_facts, plan, plan_for_host

FIXTURES = Path(__file__).parent / "fixtures" / "numactl"


def topo(name: str):
    path = next(FIXTURES.glob(f"{name}*.txt"))
    return parse_numactl(path.read_text(), str(path))


@pytest.fixture(scope="module")
def l70(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "llama-70b.gguf"
    modelgen.write_header_only(path, modelgen.llama70b_spec())
    return read_layout(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tiny.gguf"
    modelgen.write_arch(path, "llama")
    return read_layout(path)


def evaluates_to_assignment(p, memory_nodes):
    names = [t.name for t in p.layout.tensors]
    return shardmap.assign(shardmap.parse(p.shard_map), names, memory_nodes) == dict(p.tensor_nodes())


def test_two_sockets_equal_shares_seed_syntax(l70):
    p = plan(topo("aws-c5n"), l70)
    assert p.strategy == "shard"
    assert p.shard_map == "0-38:node0,39-79:node1"  # seed-only syntax: output sits on node 0
    assert evaluates_to_assignment(p, [0, 1])
    assert set(p.layer_nodes) == set(range(80))
    assert p.other_node == p.embed_node == 0
    total = l70.total_bytes
    assert abs(p.node_bytes[0] - p.node_bytes[1]) < 2 * max(l70.layer_bytes.values())
    assert sum(p.node_bytes.values()) == total
    (inst,) = p.instances
    assert inst.cpus == tuple(range(72)) and inst.numa == "distribute" and inst.cpu_affinity == "0-71"
    assert inst.numa_policy == "preferred" and inst.numa_mask == (0,)
    assert any("SMT sibling" in w for w in p.warnings)


def test_bandwidth_moves_layers_to_the_faster_node(l70):
    p = plan(topo("aws-c5n"), l70, Bench(node_bandwidth={0: 100.0, 1: 50.0}))
    layers0 = sum(b for layer, b in l70.layer_bytes.items() if p.layer_nodes[layer] == 0)
    layers1 = sum(b for layer, b in l70.layer_bytes.items() if p.layer_nodes[layer] == 1)
    output = sum(t.n_bytes for t in l70.tensors if t.kind in ("output", "norm", "other") and t.layer is None)
    # hot bytes (layers + output) split 2:1 within one layer
    assert abs((layers0 + output) - 2 * layers1) < 3 * max(l70.layer_bytes.values())
    assert any("measured bandwidth" in r for r in p.reasons)


def test_partial_bench_falls_back_to_equal_shares(l70):
    p = plan(topo("aws-c5n"), l70, Bench(node_bandwidth={0: 100.0}))
    assert any("misses node(s) [1]" in w for w in p.warnings)
    assert p.shard_map == "0-38:node0,39-79:node1"


def test_sparse_ids_are_ids(l70):
    p = plan(topo("power9"), l70)
    assert set(p.node_bytes) == {0, 8}
    assert "node8" in p.shard_map and "node1," not in p.shard_map
    assert evaluates_to_assignment(p, [0, 8, 252, 253, 254, 255])
    assert {n.id: n.role for n in p.nodes}[252] == "unused"


def test_cpuless_memory_used_last_with_a_warning(l70):
    # 4 GiB free left on each CPU node after reserving memory: the CXL expanders must take the rest.
    t = topo("xeon-2s-cxl")
    policy = Policy(reserve_memory_mb=50_000, headroom_percent=0)
    p = plan(t, l70, None, policy)
    assert p.node_bytes.get(2, 0) + p.node_bytes.get(3, 0) > 0
    assert any("CPU-less memory node(s)" in w for w in p.warnings)
    # the nearer expander first: distance from the CPU nodes is 14 for both, node 2 is smaller id
    assert p.node_bytes.get(2, 0) > 0
    assert evaluates_to_assignment(p, [0, 1, 2, 3])
    for n in p.nodes:
        if n.id in p.node_bytes:
            assert n.weights + n.kv <= n.limit


def test_cpuless_memory_with_measurements_takes_its_share(l70):
    bench = Bench(node_bandwidth={0: 100.0, 1: 100.0, 2: 25.0, 3: 25.0})
    p = plan(topo("xeon-2s-cxl"), l70, bench)
    assert not any("CPU-less" in w for w in p.warnings)
    assert 0 < p.node_bytes[2] < p.node_bytes[1] / 2


def test_memoryless_cpu_node_runs_threads_only(tiny):
    p = plan(topo("power8"), tiny)
    assert set(p.node_bytes) == {0}
    roles = {n.id: n.role for n in p.nodes}
    assert roles == {0: "weights+threads", 1: "threads"}
    assert set(p.instances[0].cpus) == {0, 8, 16, 24, 32, 40, 48, 56, 64, 72}


def test_does_not_fit_names_every_node(l70):
    with pytest.raises(PlanError) as e:
        plan(topo("power8"), l70)
    msg = str(e.value)
    assert "does not fit" in msg and "41.89 GiB" in msg
    assert "node 0: free 6.87 GiB - headroom 703.10 MiB - reserved 0 B - KV 1.25 GiB = room 4.93 GiB" in msg
    with pytest.raises(PlanError, match=r"(?s)node 2: free .*needs 20.95 GiB: 20.26 GiB short\n  node 3: free "):
        plan(topo("legacy"), l70, None, Policy(strategy="interleave"))


def argv(inst) -> list[str]:
    return llama_args(inst, "/m.gguf", mlock=False, no_mmap=False, extra=())


def test_kv_cache_counts_on_the_home_node(l70):
    policy = Policy(context_length=65536, parallel=2)
    p = plan(topo("epyc-9135"), l70, None, policy)
    assert p.kv_bytes == 327680 * 65536 * 2  # 40 GiB
    home = [n for n in p.nodes if n.kv]
    assert len(home) == 1 and home[0].kv == p.kv_bytes and home[0].id == p.instances[0].numa_mask[0]
    args = argv(p.instances[0])
    assert "-c" in args and args[args.index("-c") + 1] == "131072"
    q = plan(topo("epyc-9135"), l70, None, Policy(context_length=65536, parallel=2, kv_cache_type="q8_0"))
    assert q.kv_bytes == math.ceil(80 * 8 * 256 * 34 / 32) * 65536 * 2
    assert argv(q.instances[0])[-4:] == ["-ctk", "q8_0", "-ctv", "q8_0"]


def test_node_restriction_and_reserved_cpus(l70):
    t = topo("xeon-4node")
    p = plan(t, l70, None, Policy(nodes=(2, 3), reserve_cpus=(56, 57)))
    assert set(p.node_bytes) == {2, 3}
    cpus = set(p.instances[0].cpus)
    assert cpus == (set(t.node(2).cpus) | set(t.node(3).cpus)) - {56, 57}
    assert p.instances[0].numa == "numactl"  # a subset of the host: keep systemd's affinity
    assert evaluates_to_assignment(p, [0, 1, 2, 3])
    with pytest.raises(PlanError, match=r"node\(s\) \[7\] are not on this host"):
        plan(t, l70, None, Policy(nodes=(0, 7)))
    with pytest.raises(PlanError, match="no node with memory"):
        plan(topo("power8"), l70, None, Policy(nodes=(1,)))


def test_threads_are_physical_cores_from_siblings(l70):
    cores = cores_from_facts([[c, c + 36] for c in range(36)])  # aws: CPU c and c+36 share a core
    p = plan(topo("aws-c5n"), l70, None, Policy(strategy="replicate", parallel=1), cores=cores)
    assert not any("SMT" in w for w in p.warnings)
    for inst in p.instances:
        assert (inst.threads, inst.threads_batch) == (18, 36)
        assert argv(inst)[argv(inst).index("-t") + 1] == "18"


def test_replicate_one_instance_per_node_with_ports(l70):
    p = plan(topo("kunpeng"), l70, None, Policy(strategy="replicate", service_port=9000))
    assert [i.name for i in p.instances] == ["llama-node0", "llama-node1", "llama-node2", "llama-node3"]
    assert [i.port for i in p.instances] == [9001, 9002, 9003, 9004]  # 9000: the front-end
    assert [i.numa for i in p.instances] == ["isolate"] * 4
    assert [i.shard_map for i in p.instances] == ["0-79:node0", "0-79:node1,*:node1", "0-79:node2,*:node2", "0-79:node3,*:node3"]
    assert p.shard_map == "" and all(node is None for _, node in p.tensor_nodes())


def test_replicate_skips_nodes_too_small(l70):
    p = plan(topo("aws-c5n"), l70, None, Policy(strategy="replicate"))
    assert [i.memory_nodes for i in p.instances] == [(1,)]
    assert any("cannot hold a copy" in w for w in p.warnings)


def test_interleave_and_weighted(l70):
    t = topo("epyc-7742")
    p = plan(t, l70, None, Policy(strategy="interleave"))
    assert p.shard_map == "" and p.instances[0].numa_policy == "interleave"
    assert max(p.node_bytes.values()) - min(p.node_bytes.values()) <= 1
    assert sum(p.node_bytes.values()) == l70.total_bytes
    bw = Bench(node_bandwidth={n: 40.0 if n < 4 else 20.0 for n in range(8)})
    with pytest.raises(PlanError, match="needs measured bandwidth"):
        plan(t, l70, None, Policy(strategy="weighted-interleave"))
    w = plan(t, l70, bw, Policy(strategy="weighted-interleave"))  # the kernel's support is the deployment's concern
    assert w.interleave_weights == {n: 20 if n < 4 else 10 for n in range(8)}
    assert abs(w.node_bytes[0] - 2 * w.node_bytes[4]) <= 2


def test_auto_picks_the_best_measured_feasible_strategy(l70):
    t = topo("kunpeng")
    bench = Bench(strategy_speed={"shard": 5.0, "replicate": 9.0, "interleave": 4.0})
    p = plan(t, l70, bench, Policy(strategy="auto"))
    assert (p.strategy, p.requested_strategy) == ("replicate", "auto")
    assert any("replicate is fastest" in r for r in p.reasons)
    # replicate cannot fit on the aws host's node 0 but fits node 1: still feasible there, so
    # measure a host where it is not: 8 x 32 GB nodes
    p = plan(topo("epyc-7742"), l70, bench, Policy(strategy="auto"))
    assert p.strategy == "shard"  # replicate is infeasible, shard measured faster than interleave
    # no measurements: the heuristic, said so
    q = plan(t, l70, None, Policy(strategy="auto"))
    assert q.strategy == "shard" and any("without measurements" in r for r in q.reasons)
    r = plan(t, l70, None, Policy(strategy="auto", parallel=4))
    assert r.strategy == "replicate"


def test_flat_host_without_numa(l70):
    p = plan(topo("no-numa"), l70)
    assert p.shard_map == "0-79:node0" and set(p.node_bytes) == {0}
    inst = p.instances[0]
    assert inst.numa is None and inst.numa_policy is None and inst.cpus is None and inst.threads is None
    assert "-t" not in argv(inst)
    assert any("NUMA not available" in w for w in p.warnings)
    with pytest.raises(PlanError, match="flat memory domain"):
        plan(topo("no-numa"), l70, None, Policy(strategy="replicate"))


def test_legacy_format_without_cpus(tiny):
    p = plan(topo("legacy"), tiny)
    assert set(p.node_bytes) <= {2, 3}
    assert p.shard_map.endswith("*:node2") or p.shard_map.endswith("*:node3")  # no-layer tensors off node 0
    assert evaluates_to_assignment(p, [2, 3])
    assert p.instances[0].cpus is None and "-t" not in argv(p.instances[0])
    assert any("lists no CPUs" in w for w in p.warnings)


def test_policy_from_vars():
    p = Policy.from_vars({"strategy": "replicate", "nodes": [0, 8], "reserve_cpus": "0-1,4", "reserve_memory_mb": 1024,
                          "headroom_percent": 5, "context_length": 8192, "parallel": 2, "kv_cache_type": "q8_0",
                          "service": {"host": "0.0.0.0", "port": 9000}, "model": "/m.gguf"})
    assert (p.strategy, p.nodes, p.reserve_cpus, p.reserve_memory_mb) == ("replicate", (0, 8), (0, 1, 4), 1024)
    assert (p.headroom_percent, p.context_length, p.parallel, p.kv_cache_type) == (5.0, 8192, 2, "q8_0")
    assert (p.service_host, p.service_port) == ("0.0.0.0", 9000)
    assert Policy.from_vars(None) == Policy()
    for bad, field in [({"strategy": "fast"}, "coffers.strategy"), ({"nodes": []}, "coffers.nodes"),
                       ({"nodes": [1, 1]}, "coffers.nodes"), ({"reserve_cpus": "3-1"}, "coffers.reserve_cpus"),
                       ({"headroom_percent": 95}, "coffers.headroom_percent"), ({"parallel": 0}, "coffers.parallel"),
                       ({"kv_cache_type": "q2_k"}, "coffers.kv_cache_type"), ({"service": {"port": 70000}}, "coffers.service.port"),
                       ({"context_length": True}, "coffers.context_length")]:
        with pytest.raises(PolicyError, match=field.replace(".", r"\.")):  # the schema, then the policy
            Policy.from_vars(checked_coffers(bad))


def test_plan_for_host_from_facts(l70):
    t = topo("aws-c5n")
    facts = {"numa": t.to_json(), "cpu": {"thread_siblings": [f"{c},{c + 36}" for c in range(36)]},
             "system": {"weighted_interleave": True}}
    p = plan_for_host(facts, l70, Bench(node_bandwidth={0: 50.0, 1: 50.0}), Policy(strategy="weighted-interleave"))
    assert p.instances[0].threads == 36 and p.interleave_weights == {0: 20, 1: 20}
    assert p.topology_fingerprint == t.fingerprint()


def test_capacity_formula(l70):
    t = topo("threadripper")
    p = plan(t, l70, None, Policy(headroom_percent=5, reserve_memory_mb=500))
    for n in p.nodes:
        node = t.node(n.id)
        avail = min(node.size_mb, node.free_mb) * MiB
        assert n.free == avail and n.headroom == math.ceil(avail * 0.05) and n.reserved == 500 * MiB
        assert n.weights + n.kv <= n.limit


def test_bench_from_a_numa_shard_bench_result(l70):
    # the fields the planner reads from schemas/bench-result.schema.json (the rest is ignored)
    result = {
        "tool": {"name": "numa-shard-bench", "version": "1.0.0", "compiler": "gcc"},
        "nodes": [{"id": 0, "read": 90.0}, {"id": 1, "read": 45.0}],
        "strategies": {"shard": {"read": 120.0, "per_node": []}, "interleave": {"read": 100.0, "nodes": [0, 1]},
                       "replicate": {"read": 150.0, "copies": 2}, "best": "replicate"},
    }
    bench = Bench.from_json(result)
    assert bench.node_bandwidth == {0: 90.0, 1: 45.0} and bench.speed_unit == "GB/s read"
    assert bench.strategy_speed == {"shard": 120.0, "interleave": 100.0, "replicate": 150.0}
    p = plan(topo("epyc-9135"), l70, bench, Policy(strategy="auto"))
    assert p.strategy == "replicate"
    assert any("measured GB/s read shard 120, interleave 100, replicate 150: replicate is fastest" in r for r in p.reasons)
    with pytest.raises(ValueError, match="strategy_tokens_per_s.fast: not a strategy"):
        Bench.from_json({"strategy_tokens_per_s": {"fast": 1}})
