"""No command shows a traceback on a mutated input: GGUF models, inventories, numactl text,
shard maps, bench results, cached facts and sibling lists. Each run exits 1 or 2 (or 0 when
the mutant is still valid) and a failure says where, in one line.

Most runs call `cli.main` in this process (the code `python -m coffers_provision` runs, minus
the interpreter start); a few go through a real process to prove the same there.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coffers_provision.cli import main
from coffers_provision.facts.numa import parse_numactl
from tests import ggufmutate as gm
from tests.c.nativebuild import PLACE, sanitized
from tests.test_bench import crafted, store_run

ROOT = Path(__file__).resolve().parents[1]
NUMACTL = ROOT / "tests" / "fixtures" / "numactl" / "aws-c5n-18xlarge-xeon-2s-2node.txt"
SEED = 7
# Where a one-line failure points: FILE: offset N, FILE:LINE[:COL], or the file or key named.
WHERE = re.compile(r"(offset \d+|:\d+(:\d+)?\b|line \d+|position \d+|coffers\.|\.json|\.ya?ml|\.txt|\.gguf|GGML_NUMA_SHARD_MAP|--)")


def run(argv: list[str]) -> tuple[int, str, str]:
    """`coffers-provision ARGV` in this process: status, stdout, stderr. Any exception other
    than the exit argparse raises escapes, which is the traceback this file is about."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as e:
            status = int(e.code or 0)
    return status, out.getvalue(), err.getvalue()


def check(argv: list[str], what: str) -> int:
    status, _, err = run(argv)
    assert status in (0, 1, 2), f"{what}: exit {status}\n{err}"
    if status:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert lines, f"{what}: exit {status} with nothing said"
        said = [ln for ln in lines if not re.fullmatch(r"\d+ error\(s\)", ln)]
        assert all(WHERE.search(ln) for ln in said), f"{what}: an error that says not where:\n{err}"
    return status


# -- text mutations -------------------------------------------------------------------------

TOKENS = ["[", "]", "{", "}", ":", ": ", "- ", "\t", "'", '"', "&a", "*a", "!!python/object:os.system", "|", ">",
          "%", "@", "`", "#", "\n", "  ", "---\n", "...\n", "\0", "\ufeff", "-1", "1e400", "0x10", "null", "~", "true",
          "[/]", "[bold]", "<<: *a", "? ", "é", "\x85", "99999999999999999999999", "node", "-", ",", "0-", "cpus:"]


def mutate_text(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(text) + 1)
        op = rng.randrange(6)
        if op == 0:
            text = text[:at] + rng.choice(TOKENS) + text[at:]
        elif op == 1:
            text = text[:at] + text[at + rng.randint(1, 20):]
        elif op == 2:
            text = text[:at]
        elif op == 3:
            lines = text.splitlines(keepends=True)
            if lines:
                i = rng.randrange(len(lines))
                lines.insert(i, lines[rng.randrange(len(lines))])
                text = "".join(lines)
        elif op == 4 and text:
            text = text[:at] + chr(rng.randrange(1, 0x300)) + text[at + 1:]
        else:
            text = text[:at] + rng.choice(TOKENS) * rng.randint(1, 300) + text[at:]
    return text


JUNK = [None, True, -1, 0, 2**70, 1e308, float("nan"), "", "x", "0-3", [], {}, [1, "a"], {"a": 1}, [[0, 1]], -0.5]


def mutate_json(doc, rng: random.Random):
    """One leaf, list or mapping of `doc` replaced by junk, or removed."""
    doc = json.loads(json.dumps(doc))
    path, node = [], doc
    while isinstance(node, (dict, list)) and node and rng.random() < 0.8:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append((node, key))
        node = node[key]
    if not path:
        return rng.choice(JUNK)
    parent, key = path[-1]
    if rng.random() < 0.2:
        del parent[key]
    else:
        parent[key] = rng.choice(JUNK)
    return doc


def dump_json(doc, rng: random.Random) -> str:
    text = json.dumps(doc, allow_nan=True)
    return mutate_text(text, rng) if rng.random() < 0.3 else text


# -- the inputs ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A good model, numactl text, inventory and facts to mutate one at a time."""
    root = tmp_path_factory.mktemp("world")
    model = root / "model.gguf"
    model.write_bytes(gm.seeds()[0].to_bytes())
    facts = {"topology": parse_numactl(NUMACTL.read_text()).to_json(),
             "cpu": {"thread_siblings": [[c, c + 36] for c in range(36)]},
             "system": {"weighted_interleave": False}, "probed_at_epoch": time.time()}
    return {"root": root, "model": model, "facts": facts, "bench": crafted("h", {0: 40.0, 1: 41.0})}


def inventory_text(model: Path) -> str:
    return (
        "# a small fleet\nall:\n  vars:\n    coffers:\n      strategy: shard\n      context_length: 4096\n"
        f"      model_local: {model.name}\n  children:\n    epyc:\n      hosts:\n        h[1:2]:\n"
        "          ansible_connection: local\n          coffers: {headroom_percent: 10, service: {port: 9000}}\n"
        "        h3:\n          ansible_host: 10.0.0.3\n          coffers:\n            nodes: [0, 1]\n"
        "            reserve_cpus: \"0-1\"\n"
    )


def test_mutated_models(world, tmp_path):
    statuses = []
    for i in range(60):
        data, how = gm.mutant(SEED, i)
        path = tmp_path / "m.gguf"
        path.write_bytes(data)
        for argv in (["model", "inspect", str(path)], ["model", "inspect", str(path), "--json"],
                     ["plan", "--topology", str(NUMACTL), "--model", str(path), "--json"]):
            statuses.append(check(argv, f"gguf mutant {i} ({how}): {argv[:2]}"))
    assert statuses.count(1) > 60 and statuses.count(0) > 10  # both verdicts were exercised


def test_mutated_numactl_text(world, tmp_path):
    rng = random.Random(SEED)
    text = NUMACTL.read_text()
    statuses = []
    for i in range(150):
        path = tmp_path / "numactl.txt"
        path.write_text(mutate_text(text, rng), errors="surrogateescape")
        for argv in (["topology", "parse", str(path), "--json"], ["plan", "--topology", str(path), "--model", str(world["model"])]):
            statuses.append(check(argv, f"numactl mutant {i}"))
    assert statuses.count(1) > 30


def test_mutated_inventories(world, tmp_path):
    rng = random.Random(SEED)
    (tmp_path / world["model"].name).write_bytes(world["model"].read_bytes())
    facts = tmp_path / "facts"
    facts.mkdir()
    for host in ("h1", "h2", "h3"):
        (facts / f"{host}.json").write_text(json.dumps(world["facts"]))
    good = inventory_text(world["model"])
    statuses = []
    for i in range(150):
        inv = tmp_path / "inv.yml"
        inv.write_text(mutate_text(good, rng))
        statuses.append(check(["validate", str(inv)], f"inventory mutant {i}:\n{inv.read_text()}"))
        statuses.append(check(["plan", str(inv), "--facts-dir", str(facts)], f"inventory mutant {i} (plan):\n{inv.read_text()}"))
    assert statuses.count(1) > 30 and statuses.count(0) > 10


def test_mutated_facts(world, tmp_path):
    rng = random.Random(SEED)
    (tmp_path / world["model"].name).write_bytes(world["model"].read_bytes())
    inv = tmp_path / "inv.yml"
    inv.write_text(inventory_text(world["model"]))
    facts = tmp_path / "facts"
    facts.mkdir()
    statuses = []
    for i in range(150):
        (facts / "h1.json").write_text(dump_json(mutate_json(world["facts"], rng), rng))
        statuses.append(check(["plan", str(inv), "--facts-dir", str(facts), "--limit", "h1"], f"facts mutant {i}: {(facts / 'h1.json').read_text()[:300]}"))
    assert statuses.count(1) > 30


def test_mutated_bench_results(world, tmp_path):
    rng = random.Random(SEED)
    statuses = []
    for i in range(100):
        bench = tmp_path / "bench.json"
        bench.write_text(dump_json(mutate_json(world["bench"], rng), rng))
        statuses.append(check(["plan", "--topology", str(NUMACTL), "--model", str(world["model"]), "--bench", str(bench)], f"bench mutant {i}: {bench.read_text()[:300]}"))
        store = tmp_path / f"results{i}"
        run_dir = store_run(store, {"h1": world["bench"]})
        (run_dir / "h1.json").write_text(bench.read_text())
        statuses.append(check(["bench", "report", "--results", str(store)], f"stored bench mutant {i}"))
        if rng.random() < 0.3:
            run_file = run_dir / "run.json"
            run_file.write_text(dump_json(mutate_json(json.loads(run_file.read_text()), rng), rng))
            statuses.append(check(["bench", "report", "--results", str(store), "--json"], f"run.json mutant {i}"))
    assert statuses.count(1) > 30


def test_mutated_siblings(world, tmp_path):
    rng = random.Random(SEED)
    good = "".join(f"{c},{c + 36}\n" for c in range(36))
    for i in range(60):
        path = tmp_path / "siblings.txt"
        path.write_text(mutate_text(good, rng))
        check(["plan", "--topology", str(NUMACTL), "--model", str(world["model"]), "--siblings", str(path)], f"siblings mutant {i}")


def test_mutated_shard_maps(world):
    """numa-shard-place on mutated maps: exit 0 or a one-line error naming the position (ASan and UBSan on)."""
    rng = random.Random(SEED)
    env = {k: v for k, v in os.environ.items() if k != "GGML_NUMA_SHARD_MAP"}
    exe = str(sanitized(PLACE))
    bad = 0
    for i in range(60):
        smap = mutate_text("0-0:node0,1:0,attn:node0,*:node0", rng).replace("\0", "")
        proc = subprocess.run([exe, "--plan", "--map", smap, str(world["model"])], capture_output=True, text=True,
                              errors="replace", env=env, timeout=60)
        assert proc.returncode in (0, 1), (smap, proc.stderr)
        assert proc.stderr.count("\n") <= 1, (smap, proc.stderr)  # (U+0085 is not a line break on a terminal)
        if proc.returncode:
            bad += 1
            line = proc.stderr
            assert "GGML_NUMA_SHARD_MAP position" in line or "node" in line, line
    assert bad > 10


@pytest.mark.parametrize("kind", ["gguf", "inventory", "numactl"])
def test_a_real_process_shows_no_traceback(world, tmp_path, kind):
    if kind == "gguf":
        path = tmp_path / "m.gguf"
        path.write_bytes(gm.mutant(SEED, 3)[0])
        argv = ["model", "inspect", str(path)]
    elif kind == "inventory":
        path = tmp_path / "inv.yml"
        path.write_text("all:\n  hosts:\n    a: [\n")
        argv = ["validate", str(path)]
    else:
        path = tmp_path / "n.txt"
        path.write_text("available: 2 nodes (0-1)\nnode 0 cpus: 0 x\n")
        argv = ["topology", "parse", str(path)]
    proc = subprocess.run([sys.executable, "-m", "coffers_provision", *argv], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and str(path) in proc.stderr, proc.stderr
