"""Pages land where the plan says, on a real 4-node kernel.

The plan comes from `coffers-provision plan` on the guest's own `numactl --hardware` and the
model's header; the nodes of pages are read in the guest with move_pages(2) (pagenodes.py)
and /proc/PID/numa_maps, never taken from the tools under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from coffers_provision.model import read_layout

from . import guestops
from .lab import GUESTS, LAB_DIR, REPO

FILES = REPO / "roles" / "native_tools" / "files"
PLACE_CHECK = REPO / "tests" / "c" / "place_check.c"
REMOTE_SRC = "/root/coffers-native"
CFLAGS = "-O2 -std=gnu11 -Wall -Wextra -Werror"
LIBS = "-lnuma -lpthread -lm"
MIN_PLACED = 0.999


def native_sources() -> list[Path]:
    return [*sorted(FILES.glob("*.c")), PLACE_CHECK]


def compile_native(conn) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Copy the header and every C source to the guest and build each with gcc -Werror."""
    assert conn.run(["mkdir", "-p", REMOTE_SRC]).ok
    for f in [*FILES.glob("*.h"), *native_sources()]:
        guestops.install(conn, f, f"{REMOTE_SRC}/{f.name}")
    built = {}
    for src in native_sources():
        out = f"{REMOTE_SRC}/{src.stem.replace('_', '-')}"
        r = conn.run(f"cd {REMOTE_SRC} && gcc {CFLAGS} -I. {src.name} -o {out} {LIBS}")
        assert r.ok, f"{src.name} does not compile on the guest:\n{r.stdout}{r.stderr}"
        built[src.stem] = out
    return built


@pytest.mark.parametrize("name", [g.name for g in GUESTS])
def test_native_tools_compile_on_the_guest(guests: dict, name: str) -> None:
    built = compile_native(guests[name])
    r = guests[name].run(["ls", *built.values()])
    assert r.ok, r.stderr


# -- the plan ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plan4(lab4_llama: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The shard plan for the 4-node guest and the model, with each tensor's whole pages."""
    text = lab4_llama["conn"].run("numactl --hardware").stdout
    topo = tmp_path_factory.mktemp("plan") / "lab4.numactl"
    topo.write_text(text)
    r = subprocess.run([sys.executable, "-m", "coffers_provision", "plan", "--topology", str(topo),
                        "--model", str(lab4_llama["model"]), "--strategy", "shard", "--json"],
                       capture_output=True, text=True, cwd=REPO, check=False)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert len({t["node"] for t in plan["tensors"]}) == 4, "the plan should use all four nodes"
    layout = {t.name: t for t in read_layout(lab4_llama["model"]).tensors}
    page = 4096
    ranges = []  # whole pages of each tensor: [first, end, node]
    for t in plan["tensors"]:
        lt = layout[t["name"]]
        first, end = -(-lt.offset // page), (lt.offset + lt.n_bytes) // page
        if end > first:
            ranges.append([first, end, t["node"]])
    plan["page_ranges"] = ranges
    return plan


def page_report(conn, plan: dict, pid: int | None) -> dict:  # type: ignore[no-untyped-def]
    req = json.dumps({"path": guestops.MODEL, "pid": pid, "ranges": plan["page_ranges"]})
    r = conn.run(["python3", "-c", (LAB_DIR / "pagenodes.py").read_text()], stdin=req.encode())
    assert r.ok, r.stderr
    rep = json.loads(r.stdout)
    assert rep["page_size"] == 4096
    tot = {k: sum(x[k] for x in rep["ranges"]) for k in ("placed", "wrong", "absent")}
    rep["totals"] = tot
    rep["whole_pages"] = sum(e - f for f, e, _ in plan["page_ranges"])
    return rep


def numa_shard_place(conn, plan: dict, *args: str):  # type: ignore[no-untyped-def]
    return conn.run(["env", f"GGML_NUMA_SHARD_MAP={plan['shard_map']}",
                     f"{REMOTE_SRC}/numa-shard-place", *args, guestops.MODEL])


@pytest.fixture(scope="module")
def placed_model(lab4_llama: dict, plan4: dict) -> dict:
    """The model's page cache, dropped and then placed by numa-shard-place per the plan."""
    conn = lab4_llama["conn"]
    compile_native(conn)
    guestops.stop_llama(conn)
    assert conn.run("sync && echo 3 > /proc/sys/vm/drop_caches").ok
    r = numa_shard_place(conn, plan4)
    assert r.ok, f"numa-shard-place failed:\n{r.stdout}{r.stderr}"
    return {"stdout": r.stdout}


# -- checks ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [["--mode", "anon"], ["--mode", "file", "--dir", "/var/tmp"], [guestops.MODEL]],
                         ids=["anonymous", "file", "model"])
def test_header_places_whole_pages_on_the_planned_node(lab4_llama: dict, plan4: dict, mode: list[str]) -> None:
    """place_check first-touches every page on the wrong node, assigns, and checks each page."""
    conn = lab4_llama["conn"]
    built = compile_native(conn)
    r = conn.run(["env", f"GGML_NUMA_SHARD_MAP={plan4['shard_map']}", built["place_check"],
                  "--min-percent", str(100 * MIN_PLACED), *mode])
    assert r.ok, f"place_check failed:\n{r.stdout}{r.stderr}"


def test_numa_shard_place_leaves_the_page_cache_on_plan(lab4_llama: dict, plan4: dict, placed_model: dict) -> None:
    conn = lab4_llama["conn"]
    r = numa_shard_place(conn, plan4, "--verify", "--min-percent", str(100 * MIN_PLACED))
    assert r.ok, f"numa-shard-place --verify:\n{r.stdout}{r.stderr}"
    rep = page_report(conn, plan4, None)  # our own reading of the page cache
    tot = rep["totals"]
    assert tot["absent"] == 0, f"whole pages not in the page cache: {tot}"
    assert tot["placed"] >= MIN_PLACED * rep["whole_pages"], tot


def test_llama_server_maps_the_weights_on_the_planned_nodes(lab4_llama: dict, plan4: dict, placed_model: dict) -> None:
    conn = lab4_llama["conn"]
    pid = guestops.start_llama(conn)
    try:
        status, _ = guestops.http(conn, "/completion", {"prompt": "Hi", "n_predict": 2, "ignore_eos": True})
        assert status == 200
        rep = page_report(conn, plan4, pid)
        maps = conn.run(["cat", f"/proc/{pid}/numa_maps"]).stdout
    finally:
        guestops.stop_llama(conn)
    tot = rep["totals"]
    present = tot["placed"] + tot["wrong"]
    assert present >= 0.5 * rep["whole_pages"], f"llama-server mapped too few weight pages to judge: {tot}"
    assert tot["placed"] >= MIN_PLACED * present, tot
    # numa_maps tells the same story per node for the model's mapping.
    counts: dict[int, int] = {}
    for line in (ln for ln in maps.splitlines() if f"file={guestops.MODEL}" in ln):
        for w in line.split():
            if w[:1] == "N" and w[1:2].isdigit():
                node, n = w[1:].split("=")
                counts[int(node)] = counts.get(int(node), 0) + int(n)
    assert counts, f"no mapping of {guestops.MODEL} in numa_maps:\n{maps}"
    for node, n in rep["by_node"].items():
        if node != "absent":
            assert abs(counts.get(int(node), 0) - n) <= max(8, n // 1000), (node, counts, rep["by_node"])
    planned = {}
    for first, end, node in plan4["page_ranges"]:
        planned[node] = planned.get(node, 0) + end - first
    for node, pages in planned.items():
        assert counts.get(node, 0) >= 0.5 * pages, f"node {node}: numa_maps {counts}, planned pages {planned}"
