"""The live page-cache budget (deployment/budget.py): the arithmetic, and the read on this
machine with the real numa-shard-place and a real process's /proc/PID/numa_maps.
Against hosts (apply refusing, nothing changed): tests/test_budget_fleet.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hypothesis import given, strategies as st

from coffers_provision import modelgen
from coffers_provision.connect.local import LocalConnector
from coffers_provision.deployment.budget import READ, Live, _numa_maps_bytes, needs, parse_live, shortfalls, starts
from coffers_provision.deployment.describe import describe
from coffers_provision.deployment.inputs import ModelSource
from coffers_provision.engine import handlers as pending
from coffers_provision.engine.state import HostState
from coffers_provision.facts.numa import parse_numactl
from coffers_provision.model import read_layout
from coffers_provision.planner import NodeBudget, Policy, plan
from tests.c.nativebuild import PLACE, build

FIXTURES = Path(__file__).parent / "fixtures"

GiB = 1 << 30


def node(id: int, *, weights: int, kv: int = 0, headroom: int = 0, reserved: int = 0, free: int | None = 100 * GiB) -> NodeBudget:
    return NodeBudget(id=id, has_cpus=True, free=free, headroom=headroom, reserved=reserved, kv=kv, weights=weights, speed=1.0, role="weights")


def test_a_short_node_is_named_with_its_arithmetic():
    tenth = GiB // 10
    nodes = [node(0, weights=20 * GiB, headroom=2 * GiB), node(1, weights=211 * tenth, kv=20 * tenth, headroom=20 * tenth)]
    live = Live(free={0: 40 * GiB, 1: 180 * tenth}, cached={1: 24 * tenth})
    assert shortfalls(nodes, live) == [
        "node 1: the plan puts 23.10 GiB there (weights 21.10 GiB + KV 2.00 GiB) but only 20.40 GiB is free "
        "(18.00 GiB free + 2.40 GiB of this model already cached) - headroom 2.00 GiB: 4.70 GiB short; "
        "apply would push node 1 into reclaim"]


def test_what_the_running_servers_free_counts_and_replicate_does_not_count_the_cache():
    nodes = [node(2, weights=10 * GiB, kv=GiB, headroom=GiB, reserved=GiB)]
    live = Live(free={2: 9 * GiB}, cached={2: 10 * GiB}, released={2: 2 * GiB})
    assert shortfalls(nodes, live) == []
    assert shortfalls(nodes, live, cache_counts=False) == [
        "node 2: the plan puts 11.00 GiB there (weights 10.00 GiB + KV 1.00 GiB) but only 11.00 GiB is free "
        "(9.00 GiB free + 2.00 GiB its running servers free on restart) - headroom 1.00 GiB - reserved 1.00 GiB: "
        "2.00 GiB short; apply would push node 2 into reclaim"]


def test_unknown_cache_a_missing_node_and_nodes_without_a_share():
    nodes = [node(0, weights=GiB), node(1, weights=0), node(3, weights=GiB), node(4, weights=GiB, free=None)]
    live = Live(free={0: GiB // 2, 1: 0}, cached=None, uncounted="/usr/local/bin/numa-shard-place is not on the host yet")
    assert shortfalls(nodes, live) == [
        "node 0: the plan puts 1.00 GiB there (weights 1.00 GiB + KV 0 B) but only 512.00 MiB is free "
        "(512.00 MiB free; the model's cached pages not counted: /usr/local/bin/numa-shard-place is not on the host yet)"
        " - headroom 0 B: 512.00 MiB short; apply would push node 0 into reclaim",
        "node 3: the plan puts 1.00 GiB there (weights 1.00 GiB + KV 0 B) but the host has no node3/meminfo now: "
        "its NUMA nodes changed since the facts were gathered (apply --refresh-facts)"]


sizes = st.integers(min_value=0, max_value=1 << 42)


@given(weights=sizes, kv=sizes, headroom=sizes, reserved=sizes, free=sizes, cached=sizes, released=sizes, replicate=st.booleans())
def test_a_node_is_refused_exactly_when_what_it_needs_exceeds_what_is_available(weights, kv, headroom, reserved, free, cached, released, replicate):
    n = node(5, weights=weights, kv=kv, headroom=headroom, reserved=reserved)
    lines = shortfalls([n], Live(free={5: free}, cached={5: cached}, released={5: released}), cache_counts=not replicate)
    short = weights + kv + headroom + reserved - (free + (0 if replicate else cached) + released)
    assert len(lines) == (1 if short > 0 and weights + kv > 0 else 0)
    if lines:
        assert lines[0].startswith("node 5: ") and lines[0].endswith("apply would push node 5 into reclaim")
        assert ("of this model already cached" in lines[0]) != replicate


def test_the_read_on_this_machine_counts_the_files_cached_pages(tmp_path):
    """READ run by sh here: MemFree from the real sysfs, residency from the real tool."""
    files = [tmp_path / "a.gguf", tmp_path / "b.gguf"]
    files[0].write_bytes(os.urandom(3 << 20))
    files[1].write_bytes(os.urandom(1 << 20))
    for f in files:
        f.read_bytes()  # every page cached
    tool = str(build(PLACE))
    out = subprocess.run(["sh", "-c", READ, "sh", tool, "0", "no-such-unit", *map(str, files)],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    live = parse_live(out, tool)
    assert live.cached == {0: 4 << 20} and live.uncounted is None
    real = {int(line.split()[1]): int(line.split()[3]) * 1024 for line in Path("/sys/devices/system/node/node0/meminfo").read_text().splitlines()
            if line.split()[2] == "MemFree:"}
    assert set(live.free) == set(real) and abs(live.free[0] - real[0]) < 256 << 20  # read moments apart
    missing = parse_live(subprocess.run(["sh", "-c", READ, "sh", str(tmp_path / "nothere"), "0", "no-such-unit", str(files[0])],
                                        capture_output=True, text=True, timeout=60, check=True).stdout, "/x/numa-shard-place")
    assert missing.cached is None and missing.uncounted == "/x/numa-shard-place is not on the host yet"


def test_a_running_process_anonymous_memory_is_counted_from_its_numa_maps():
    """A real process holding 64 MiB of touched anonymous memory (the KV cache's kind):
    numa_maps, read as READ reads it, gives at least that on node 0; its file mappings
    (the interpreter, libraries) do not count."""
    code = "import sys; b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096]); print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        text = Path(f"/proc/{proc.pid}/numa_maps").read_text()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    counted = _numa_maps_bytes(text.splitlines())
    files = _numa_maps_bytes([line.replace(" file=", " ") for line in text.splitlines() if " file=" in line])
    assert set(counted) == {0} and counted[0] >= 64 << 20
    assert files.get(0, 0) > 0  # there were file pages, and they were left out


def test_a_start_is_read_from_the_hosts_state(tmp_path):
    """`starts` on this machine (systemd is not PID 1 here), from the batch the play reads:
    the server starts only when its files are there and the unit's command would be run by
    verify for a description not yet answered, or a restart is pending."""
    model, server, state_dir = tmp_path / "m.gguf", tmp_path / "llama-server", tmp_path / "state"
    modelgen.write_model(model, modelgen.llama_spec(n_layers=2, dim=64, ffn=128))
    state_dir.mkdir()
    topo = parse_numactl((FIXTURES / "numactl" / "epyc-7742-2s-nps4-8node-smt-off-expanse.txt").read_text())

    def dep(verify: bool = True):
        coffers = {"model": str(model), "llama_server": str(server), "service": {"verify": verify}}
        return describe("h", plan(topo, read_layout(model), policy=Policy(context_length=512)), ModelSource(str(model), None), coffers,
                        state_dir=str(state_dir))

    def starts_now(d) -> bool:
        variables = {"state_dir": str(state_dir)}
        state = HostState(LocalConnector())
        state.prefetch(needs(d, variables))
        assert state.round_trips == 1
        return starts(state, d, variables)

    assert not starts_now(dep())  # no llama-server yet: the unit is skipped, nothing starts
    shutil.copy("/bin/true", server)
    assert starts_now(dep())
    assert not starts_now(dep(verify=False))  # without systemd only verify runs the command
    answered = json.dumps({"fingerprint": dep().to_json()["fingerprint"]})
    (state_dir / "deployment.json").write_text(answered)
    (state_dir / "verified.json").write_text(answered)
    assert not starts_now(dep())  # the very description answered already: a no-op
    (state_dir / pending.FILE).write_text(json.dumps({"pending": ["restart llama-server"]}))
    assert starts_now(dep())
