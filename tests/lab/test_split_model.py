"""A real llama model in 3 parts on the 4-node guest: planned from one part, every part placed
on plan by numa-shard-place, llama-server loading the set from the first part.

Nodes of pages are read in the guest with move_pages(2) (pagenodes.py), never taken from the
tool under test."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from coffers_provision import modelgen
from coffers_provision.model import read_layout

from . import guestops
from .lab import LAB_DIR, REPO
from .test_placement import MIN_PLACED, REMOTE_SRC, compile_native

REMOTE_DIR = "/var/lib/coffers/models/split"
PAGE = 4096


@pytest.fixture(scope="module")
def split(lab4_llama: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The model in 3 parts (about 25 MiB), installed on lab4, and the shard plan made from part 2."""
    conn = lab4_llama["conn"]
    d = tmp_path_factory.mktemp("split")
    modelgen.write_model(d / "m.gguf", modelgen.llama_spec(n_layers=4, dim=512, ffn=1408), seed=7, parts=3)
    local = modelgen.split_paths(d / "m.gguf", 3)
    remote = [f"{REMOTE_DIR}/{p.name}" for p in local]
    assert conn.run(["mkdir", "-p", REMOTE_DIR]).ok
    for p, r in zip(local, remote):
        guestops.install(conn, p, r)
    topo = d / "lab4.numactl"
    topo.write_text(conn.run("numactl --hardware").stdout)
    r = subprocess.run([sys.executable, "-m", "coffers_provision", "plan", "--topology", str(topo), "--model", str(local[1]),
                        "--strategy", "shard", "--json"], capture_output=True, text=True, cwd=REPO, check=False)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["model"]["parts"] == [str(p) for p in local]
    lay = read_layout(local[0])
    nodes = {t["name"]: t["node"] for t in plan["tensors"]}
    assert sorted(nodes) == sorted(t.name for t in lay.tensors) and len(set(nodes.values())) == 4
    ranges: list[list[list[int]]] = [[] for _ in local]  # per part: whole pages of each tensor [first, end, node]
    for t in lay.tensors:
        first, end = -(-t.offset // PAGE), (t.offset + t.n_bytes) // PAGE
        if end > first:
            ranges[t.part].append([first, end, nodes[t.name]])
    return {"conn": conn, "remote": remote, "plan": plan, "ranges": ranges}


def pages(conn, path: str, ranges: list, pid: int | None) -> dict:  # type: ignore[no-untyped-def]
    r = conn.run(["python3", "-c", (LAB_DIR / "pagenodes.py").read_text()], stdin=json.dumps({"path": path, "pid": pid, "ranges": ranges}).encode())
    assert r.ok, r.stderr
    rep = json.loads(r.stdout)
    return {k: sum(x[k] for x in rep["ranges"]) for k in ("placed", "wrong", "absent")}


def test_every_part_is_placed_on_plan_and_llama_server_loads_the_set(split: dict) -> None:
    conn, plan = split["conn"], split["plan"]
    compile_native(conn)
    guestops.stop_llama(conn)
    assert conn.run("sync && echo 3 > /proc/sys/vm/drop_caches").ok
    place = ["env", f"GGML_NUMA_SHARD_MAP={plan['shard_map']}", f"{REMOTE_SRC}/numa-shard-place"]
    for path in split["remote"]:  # as the unit's ExecStartPre lines do: one run per part
        r = conn.run([*place, path])
        assert r.ok, f"numa-shard-place {path}:\n{r.stdout}{r.stderr}"
        r = conn.run([*place, "--verify", "--min-percent", str(100 * MIN_PLACED), path])
        assert r.ok, f"numa-shard-place --verify {path}:\n{r.stdout}{r.stderr}"
    whole = sum(e - f for part in split["ranges"] for f, e, _ in part)
    cached = [pages(conn, p, rs, None) for p, rs in zip(split["remote"], split["ranges"])]
    assert sum(c["absent"] for c in cached) == 0, cached
    assert sum(c["placed"] for c in cached) >= MIN_PLACED * whole, cached

    pid = guestops.start_llama(conn, model=split["remote"][0])  # llama.cpp opens the first part, finds the rest
    try:
        status, body = guestops.http(conn, "/completion", {"prompt": "Hi", "n_predict": 2, "ignore_eos": True})
        assert status == 200, body
        mapped = [pages(conn, p, rs, pid) for p, rs in zip(split["remote"], split["ranges"])]
        maps = conn.run(["cat", f"/proc/{pid}/numa_maps"]).stdout
    finally:
        guestops.stop_llama(conn)
    for path in split["remote"]:
        assert f"file={path}" in maps, f"llama-server did not map {path}"
    placed, present = sum(m["placed"] for m in mapped), sum(m["placed"] + m["wrong"] for m in mapped)
    assert present >= 0.5 * whole, f"llama-server mapped too few weight pages to judge: {mapped}"
    assert placed >= MIN_PLACED * present, mapped
