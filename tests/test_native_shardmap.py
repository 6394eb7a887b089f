"""The C map parser and resolver (ggml-numa-shard.h): unit tests, node trees, and a cross-check
against the Python evaluator (coffers_provision.shardmap) on thousands of generated cases."""

from __future__ import annotations

import os
import random
import re
import subprocess

import pytest
from gguf.constants import TENSOR_NAMES

from coffers_provision import shardmap
from coffers_provision.facts.numa import parse_numactl, parse_sysfs, write_sysfs
from tests.c.nativebuild import C_TESTS, sanitized
from tests.conftest import FIXTURES

TEST_SHARD = C_TESTS / "test_shard.c"


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(sanitized(TEST_SHARD)), *args], input=stdin, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_c_unit_tests_pass_under_sanitizers():
    proc = run("unit")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^\d{3,} checks, 0 failed$", proc.stdout, re.M), proc.stdout


# -- node trees ---------------------------------------------------------------------------

NUMACTL_FIXTURES = sorted(p for p in (FIXTURES / "numactl").glob("*.txt") if "no-numa" not in p.name)


@pytest.mark.parametrize("fixture", NUMACTL_FIXTURES, ids=lambda p: p.stem)
def test_c_reads_the_node_tree_python_reads(fixture, tmp_path):
    """Sparse ids (0, 8, 252-255), CPU-less and memoryless nodes: C and Python agree."""
    write_sysfs(parse_numactl(fixture.read_text()), tmp_path)
    topo = parse_sysfs(tmp_path)
    proc = run("topology", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"numa 1 max_possible {max(topo.node_ids)}"
    assert len(lines) - 1 == len(topo.nodes)
    for line, node in zip(lines[1:], topo.nodes):
        m = re.fullmatch(r"node (\d+) memory ([01]) total_kb (-?\d+) cpus ?([\d,]*) distances((?: -?\d+)*)", line)
        assert m, line
        assert int(m.group(1)) == node.id
        assert bool(int(m.group(2))) == node.has_memory
        assert [int(c) for c in m.group(4).split(",") if c] == list(node.cpus or ())
        assert [int(d) for d in m.group(5).split()] == [topo.distance(node.id, o) for o in topo.node_ids]


def test_no_node_tree_means_no_numa(tmp_path):
    assert run("topology", str(tmp_path)).stdout.splitlines() == ["numa 0 max_possible 0"]


def test_malformed_node_tree_is_an_error(tmp_path):
    (tmp_path / "online").write_text("0-x\n")
    proc = run("topology", str(tmp_path))
    assert proc.returncode == 1 and "online: not a node list" in proc.stdout


def _fake_tree(tmp_path, fixture: str) -> dict[str, str]:
    write_sysfs(parse_numactl((FIXTURES / "numactl" / fixture).read_text()), tmp_path)
    return {"GGML_NUMA_SHARD_SYSFS": str(tmp_path)}


def test_init_rejects_a_node_without_memory(tmp_path):
    # POWER8: node 0 has CPUs and no memory.
    env = _fake_tree(tmp_path, "power8-2node-cpus-on-0mb-node.txt")
    topo = parse_sysfs(tmp_path)
    memoryless = next(n.id for n in topo.nodes if not n.has_memory)
    proc = run("init", env={**env, "GGML_NUMA_SHARD_MAP": f"0-3:node{topo.memory_nodes[0]}, attn:node{memoryless}"})
    assert proc.returncode == 1
    assert f"position 12 ('attn:node{memoryless}'): node {memoryless} has no memory" in proc.stdout


def test_init_rejects_an_offline_node_with_sparse_ids(tmp_path):
    env = _fake_tree(tmp_path, "power9-ac922-6node-gpu-memory-nodes.txt")
    topo = parse_sysfs(tmp_path)
    absent = next(i for i in range(1024) if i not in topo.node_ids)
    proc = run("init", env={**env, "GGML_NUMA_SHARD_MAP": f"*:node{absent}"})
    assert proc.returncode == 1
    assert f"position 1 ('*:node{absent}'): node {absent} is offline or does not exist" in proc.stdout


def test_init_resolves_round_robin_over_sparse_memory_nodes(tmp_path):
    env = _fake_tree(tmp_path, "power9-ac922-6node-gpu-memory-nodes.txt")
    mem = sorted(parse_sysfs(tmp_path).memory_nodes)
    names = [f"blk.{i}.ffn_up.weight" for i in range(2 * len(mem))]
    proc = run("init", *names, env={**env, "GGML_NUMA_SHARD_MAP": ""})
    assert proc.returncode == 0, proc.stdout
    got = [int(line.split()[1]) for line in proc.stdout.splitlines()[1:]]
    assert got == [mem[i % len(mem)] for i in range(len(names))]


def test_init_without_a_map_does_nothing():
    env = {k: v for k, v in os.environ.items() if k != "GGML_NUMA_SHARD_MAP"}
    proc = subprocess.run([str(sanitized(TEST_SHARD)), "init", "blk.0.ffn_up.weight"], capture_output=True,
                          text=True, env=env)
    assert proc.stdout.splitlines() == ["init 0 ggml_numa_shard: GGML_NUMA_SHARD_MAP is not set; nothing is placed",
                                        "blk.0.ffn_up.weight -1"]


# -- this machine: real mbind/move_pages on node 0 ------------------------------------------

def test_assign_binds_to_node_zero_here():
    proc = run("assign", "blk.1.ffn_up.weight", str(3 * 1024 * 1024 + 123), env={"GGML_NUMA_SHARD_MAP": "0-3:node0"})
    assert proc.returncode == 0, proc.stderr
    assert "init 1 " in proc.stdout and "assign 0 " in proc.stdout
    m = re.search(r"counts tensors 1 placed (\d+) failed 0 pending 0", proc.stdout)
    assert m and int(m.group(1)) >= 3 * 1024 * 1024, proc.stdout


def test_a_rule_naming_a_node_this_machine_lacks_is_an_error():
    present = parse_sysfs("/sys/devices/system/node").node_ids
    absent = next(i for i in range(1024) if i not in present)
    proc = run("init", env={"GGML_NUMA_SHARD_MAP": f"0-3:node0,4-7:node{absent}"})
    assert proc.returncode == 1
    assert f"position 11 ('4-7:node{absent}'): node {absent} is offline or does not exist" in proc.stdout


# -- cross-check against the Python evaluator ----------------------------------------------

ARCH_NAMES = sorted({n for n in TENSOR_NAMES.values()})
TYPES = ["attn", "ffn", "norm", "embed"]
BAD_TARGETS = ["", "atn", "ATTN", "-1", "1-", "1-2-3", "a", "1 2", "node1", "0x1", "+1", "1.0", "**", "blk"]
BAD_NODES = ["", "node", "nodeX", "Node1", "node-1", "n1", "node 1", "1.0", "node+1", "x"]


def _layer(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.85:
        return str(rng.randint(0, 40))
    if r < 0.93:
        return "0" * rng.randint(1, 3) + str(rng.randint(0, 40))
    return str(rng.randint(10**18, 10**25))  # past 64 bits; the spec bounds layers nowhere


def _node_text(rng: random.Random, pool: list[int]) -> str:
    r = rng.random()
    if r < 0.06:
        return rng.choice(BAD_NODES)
    if r < 0.09:
        return rng.choice(["node1024", "1024", "node99999999999999999999", "node00001023", "1023"])
    node = rng.choice(pool)
    return rng.choice(["node", ""]) + ("0" if rng.random() < 0.05 else "") + str(node)


def _ws(rng: random.Random) -> str:
    return rng.choice(["", "", "", " ", "\t", "  ", " \t"])


def _rule(rng: random.Random, pool: list[int]) -> str:
    r = rng.random()
    if r < 0.03:
        return _ws(rng)  # empty rule
    if r < 0.05:
        return f"{_layer(rng)}:{_node_text(rng, pool)}:{_node_text(rng, pool)}"
    if r < 0.07:
        return _layer(rng)
    r = rng.random()
    if r < 0.45:
        a, b = sorted((int(_layer(rng)), int(_layer(rng))))
        if rng.random() < 0.05:
            a, b = b + 1, a  # backwards
        target = f"{a}-{b}"
    elif r < 0.65:
        target = _layer(rng)
    elif r < 0.85:
        target = rng.choice(TYPES)
    elif r < 0.93:
        target = "*"
    else:
        target = rng.choice(BAD_TARGETS)
    return f"{_ws(rng)}{target}{_ws(rng)}:{_ws(rng)}{_node_text(rng, pool)}{_ws(rng)}"


def _planner_like(rng: random.Random, pool: list[int]) -> str:
    """Disjoint ranges over the layers, sometimes with a type or `*` rule: mostly valid maps."""
    cuts = sorted(rng.sample(range(1, 60), rng.randint(0, 4)))
    bounds = list(zip([0, *cuts], [c - 1 for c in cuts] + [rng.randint(60, 80)]))
    rules = [f"{a}-{b}:{_node_text(rng, pool)}" if a != b else f"{a}:{_node_text(rng, pool)}" for a, b in bounds]
    if rng.random() < 0.4:
        rules.append(f"{rng.choice(TYPES)}:{_node_text(rng, pool)}")
    if rng.random() < 0.4:
        rules.append(f"*:{_node_text(rng, pool)}")
    rng.shuffle(rules)
    return ",".join(_ws(rng) + r + _ws(rng) for r in rules)


def _map(rng: random.Random, pool: list[int]) -> str:
    r = rng.random()
    if r < 0.04:
        return rng.choice(["", " ", "\t", ","])
    if r < 0.6:
        return _planner_like(rng, pool)
    return ",".join(_rule(rng, pool) for _ in range(rng.randint(1, 6)))


def _name(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.8:
        base = rng.choice(ARCH_NAMES).format(bid=_layer(rng) if rng.random() < 0.2 else rng.randint(0, 60))
        return base + rng.choice([".weight", ".bias", ""])
    return rng.choice(["output.weight", "rope_freqs.weight", "blk.x.ffn_up", "blk.12", "xblk.1.attn_q",
                       "blk..ffn_up", "blk.3.exp_probs_b.bias", "token_embd_norm.weight", "norm", ""])


def _case(rng: random.Random) -> tuple[str, list[int], list[str]]:
    pool = rng.choice([[0], [0, 1], [0, 1, 2, 3], [0, 8], [0, 8, 252, 253, 254, 255], list(range(16)), [3, 1023]])
    text = _map(rng, pool)
    nodes = set(rng.sample(pool, rng.randint(1, len(pool))))
    try:
        named = shardmap.parse(text).nodes()
        if rng.random() < 0.75:
            nodes |= named  # mostly valid node sets, so resolution gets exercised
    except shardmap.ShardMapError:
        pass
    return text, sorted(nodes), [_name(rng) for _ in range(rng.randint(1, 8))]


def _expected(text: str, nodes: list[int], names: list[str]) -> tuple:
    try:
        smap = shardmap.parse(text)
    except shardmap.ShardMapError as e:
        return ("E", e.position)
    missing = smap.nodes() - set(nodes)
    if missing:
        return ("M", missing)
    return ("OK", [smap.node_for(n, nodes) for n in names])


def _hex(s: str) -> str:
    return s.encode().hex() or "-"


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_c_and_python_agree_on_generated_maps(seed):
    rng = random.Random(seed)
    cases = [_case(rng) for _ in range(5000)]
    stdin = "".join(f"{_hex(t)} {','.join(map(str, n))} {' '.join(_hex(x) for x in names)}\n" for t, n, names in cases)
    proc = run("crosscheck", stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(cases)
    kinds = {"E": 0, "M": 0, "OK": 0}
    for (text, nodes, names), line in zip(cases, lines):
        want = _expected(text, nodes, names)
        kinds[want[0]] += 1
        where = f"map={text!r} nodes={nodes} names={names}: C says {line!r}, Python {want!r}"
        if want[0] == "E":
            assert line == f"E {want[1]}", where
        elif want[0] == "M":
            m = re.match(r"M .*: node (\d+) is not an online memory node$", line)
            assert m and int(m.group(1)) in want[1], where
        else:
            assert line == "OK " + " ".join(map(str, want[1])), where
    # The generator must reach every outcome often, or the agreement means little.
    assert min(kinds.values()) > 250, kinds
