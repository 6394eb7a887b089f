"""Every plan, byte for byte, as the planner made it when tests/fixtures/plan-golden.json was
written: a few thousand hosts drawn from the numactl fixtures with varied free memory,
strategies, slots, SMT sibling facts, reservations and measurements, including hosts too
small for the model (their error text is the output then). A speed-up of the planner must
leave every case's sha256 as it was.

Regenerate (only for an intended change of a plan): python -m tests.test_plan_golden --write
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any

from coffers_provision.errors import CoffersError
from coffers_provision.facts.numa import parse_numactl
from coffers_provision.model import ModelLayout, Tensor, classify
from coffers_provision.planner import Bench, Policy, plan, plan_for_host
from coffers_provision.topology import Node, Topology, format_cpulist

HERE = Path(__file__).parent
GOLDEN = HERE / "fixtures" / "plan-golden.json"
CASES = 2400
GiB = 1 << 30
# shard (the default) most often; each other strategy often enough to be covered
STRATEGY_DRAW = ("shard",) * 4 + ("auto",) * 2 + ("interleave", "weighted-interleave", "replicate", "replicate")


def _layout(name: str, n_layers: int, layer_gib: float, layerless: tuple[str, ...], *, uneven: bool, gap: int = 0) -> ModelLayout:
    """A llama-like tensor table; `uneven` makes every fifth layer twice as large; `gap`
    leaves that many layer ids out in the middle (a pruned model)."""
    stems = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")
    tensors = []
    for i in (*range(n_layers // 2), *range(n_layers // 2 + gap, n_layers + gap)):
        scale = 2 if uneven and i % 5 == 4 else 1
        for j, stem in enumerate(stems):
            tname = f"blk.{i}.{stem}.weight"
            tensors.append(Tensor(tname, i, classify(tname), "Q4_K", (1,), int(layer_gib * GiB * scale * (j + 1) / 45), 0))
    for j, stem in enumerate(layerless):
        tname = f"{stem}.weight"
        tensors.append(Tensor(tname, None, classify(tname), "Q6_K", (1,), int(layer_gib * GiB * (3 + j)), 0))
    meta = {"general.architecture": "llama", "llama.embedding_length": 8192, "llama.attention.head_count": 64,
            "llama.attention.head_count_kv": 8}
    return ModelLayout(name, "llama", 3, 0, 32, 0, n_layers, tuple(tensors), meta)


LAYOUTS = (
    _layout("small.gguf", 24, 0.15, ("token_embd", "output_norm", "output"), uneven=False),
    _layout("mid.gguf", 48, 0.8, ("token_embd", "output_norm"), uneven=True),  # tied embeddings: no output
    _layout("large.gguf", 40, 1.2, ("output", "rope_freqs"), uneven=False),  # no embedding
    _layout("huge.gguf", 32, 4.0, ("token_embd", "output"), uneven=True),
    _layout("pruned.gguf", 30, 1.0, ("token_embd", "output_norm", "output"), uneven=True, gap=3),
)


def _fixtures() -> list[dict[str, Any]]:
    return [parse_numactl(p.read_text(), str(p)).to_json() for p in sorted((HERE / "fixtures" / "numactl").glob("*.txt"))]


def _siblings(cpus: list[int], form: int) -> Any:
    """SMT sibling facts in each form `cores_from_facts` reads, or none."""
    half = len(cpus) // 2
    pairs = [[cpus[j], cpus[j + half]] for j in range(half)] if len(cpus) % 2 == 0 else [[c] for c in cpus]
    if form == 0:
        return None
    if form == 1:
        return pairs
    if form == 2:
        return [[c] for c in cpus]  # SMT off
    if form == 3:
        return {str(c): format_cpulist(g) for g in pairs for c in g}
    return [",".join(map(str, g)) for g in pairs]


def _case(rng: random.Random, base: dict[str, Any]) -> tuple[dict[str, Any], ModelLayout, Bench | None, Policy]:
    """One host: the fixture's shape, its free memory, facts, policy and measurements drawn."""
    nodes = [dict(n, free_mb=None if n["free_mb"] is None else int((n["size_mb"] or 0) * (0.05 + 1.05 * rng.random())))
             for n in base["nodes"]]
    if rng.random() < 0.1:  # the same CPUs and distances with other DIMMs: a different shape
        nodes = [dict(n, size_mb=n["size_mb"] and n["size_mb"] * 2) for n in nodes]
    topo = dict(base, nodes=nodes)
    if rng.random() < 0.15:
        topo["distances"] = None
    cpus = sorted(c for n in nodes for c in n["cpus"] or ())
    facts = {"numa" if rng.random() < 0.5 else "topology": topo, "cpu": {"thread_siblings": _siblings(cpus, int(rng.random() * 5))}}
    ids = [n["id"] for n in nodes]
    coffers: dict[str, Any] = {
        "strategy": STRATEGY_DRAW[int(rng.random() * len(STRATEGY_DRAW))],
        "parallel": (1, 2, 4, 8)[int(rng.random() * 4)],
        "context_length": (2048, 4096, 32768)[int(rng.random() * 3)],
        "kv_cache_type": ("f16", "q8_0")[int(rng.random() * 2)],
    }
    if rng.random() < 0.15 and cpus:
        coffers["reserve_cpus"] = f"{cpus[0]}-{cpus[min(1, len(cpus) - 1)]}"
    if rng.random() < 0.1 and ids:
        coffers["nodes"] = ids[: 1 + int(rng.random() * len(ids))]
    if rng.random() < 0.2:
        coffers["reserve_memory_mb"] = 1024
        coffers["headroom_percent"] = 5.0
    bench = None
    roll = rng.random()
    if roll < 0.15 or (coffers["strategy"] == "weighted-interleave" and roll < 0.8):
        bench = Bench({i: 20.0 + int(rng.random() * 100) for i in ids})
    elif roll < 0.25 or (coffers["strategy"] == "auto" and roll < 0.4):
        bench = Bench({}, {s: 1.0 + int(rng.random() * 20) for s in ("shard", "replicate", "interleave", "distribute")})
    layout = LAYOUTS[int(rng.random() * len(LAYOUTS))]
    return facts, layout, bench, Policy.from_vars(coffers)


def outputs(n: int = CASES, seed: int = 0) -> list[str]:
    """sha256 of each case's plan JSON (with tensors), or of its error's type and text."""
    rng = random.Random(seed)
    bases = _fixtures()
    out = []
    for i in range(n):
        facts, layout, bench, policy = _case(rng, bases[i % len(bases)])
        try:
            text = json.dumps(plan_for_host(facts, layout, bench, policy).to_json(tensors=True), sort_keys=True)
        except CoffersError as e:
            text = f"{type(e).__name__}: {e}"
        out.append(hashlib.sha256(text.encode()).hexdigest())
    return out


def test_every_plan_is_as_golden():
    golden = json.loads(GOLDEN.read_text())["sha256"]
    got = outputs()
    assert len(golden) == CASES
    changed = [i for i, (g, h) in enumerate(zip(golden, got)) if g != h]
    assert not changed, f"{len(changed)} of {CASES} plans changed, first cases: {changed[:10]}"


def test_cases_cover_fits_errors_and_every_strategy():
    """The draw is varied enough to mean something: both outcomes, every strategy chosen."""
    rng, bases = random.Random(0), _fixtures()
    strategies, errors, fits = set(), 0, 0
    for i in range(600):
        facts, layout, bench, policy = _case(rng, bases[i % len(bases)])
        try:
            strategies.add(plan_for_host(facts, layout, bench, policy).strategy)
            fits += 1
        except CoffersError:
            errors += 1
    assert strategies >= {"shard", "interleave", "weighted-interleave", "replicate"}
    assert fits > 100 and errors > 100


def test_memos_keep_equal_numbers_of_other_types_apart():
    """1, 1.0 and True are one key to a dict but print differently: what the planner shares
    between hosts of one shape must not hand one's text to the other, whichever comes first."""
    def variant(num: Any) -> Topology:
        return Topology(True, (Node(0, (num(0), num(1)), 65536, 60000), Node(1, (2, 3), 65536, 60000)),
                        ((10, num(20)), (num(20), 10)))

    variants = {"int": variant(int), "float": variant(float), "bool": variant(lambda v: bool(v) if v < 2 else v)}

    def outputs_in(order: list[str]) -> dict[str, str]:
        return {k: json.dumps(plan(variants[k], LAYOUTS[0], None, Policy()).to_json(), sort_keys=True) for k in order}

    forward, backward = outputs_in(["int", "float", "bool"]), outputs_in(["bool", "float", "int"])
    assert forward == backward
    assert len({json.loads(text)["topology_fingerprint"] for text in forward.values()}) == 3
    for kind, affinity in (("int", "0-3"), ("float", "0.0-3"), ("bool", "False-3")):
        assert f'"cpu_affinity": "{affinity}"' in forward[kind]


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    GOLDEN.write_text(json.dumps({"cases": CASES, "seed": 0, "sha256": outputs()}, separators=(",", ":")) + "\n")
