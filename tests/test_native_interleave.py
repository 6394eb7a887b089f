"""numa-shard-place --interleave and --evict on this machine.

This machine has one NUMA node, so placement proper can only put every page on node 0. The
interleave sequence itself (which node each page is planned for) is checked on a fake
4-node tree (GGML_NUMA_SHARD_SYSFS): the real kernel refuses nodes 1-3 (ENODEV), which is
also how the tool's failure path is exercised. Multi-node placement is in tests/lab.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.c.nativebuild import PLACE, sanitized

PAGE = os.sysconf("SC_PAGESIZE")


def place(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "GGML_NUMA_SHARD_MAP"} | (env or {})
    return subprocess.run([str(sanitized(PLACE)), *args], capture_output=True, text=True, env=full_env, timeout=120)


def data_file(path: Path, pages: int) -> Path:
    """A model-sized stand-in: --interleave places a file's pages without reading its header."""
    path.write_bytes(os.urandom(pages * PAGE - 100))  # a partial last page counts as a page
    return path


@pytest.fixture
def files(tmp_path) -> list[Path]:
    return [data_file(tmp_path / "a.gguf", 300), data_file(tmp_path / "b.gguf", 77)]


def fake_tree(root: Path, nodes: str = "0-3", memory: str = "0-3") -> Path:
    root.mkdir()
    (root / "online").write_text(nodes + "\n")
    (root / "possible").write_text(nodes + "\n")
    (root / "has_memory").write_text(memory + "\n")
    return root


def test_interleave_on_one_node_puts_every_page_on_it(files):
    proc = place("--interleave", "0", "--json", str(files[0]))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["mode"] == "place" and got["policy"] == "interleave" and got["ok"]
    assert got["interleave"] == {"nodes": [0], "weights": [1]} and got["pages"] == 300
    [node] = got["nodes"]
    assert node["node"] == 0 and node["planned_pages"] == node["on_node_pages"] == node["pages"] == 300
    assert node["share"] == node["target_share"] == 1.0 and node["failed_pages"] == 0
    assert got["total"]["percent"] == 100.0


def test_verify_reports_counts_and_shares_for_several_files(files):
    assert place("--interleave", "0", "--weights", "0:3", *map(str, files)).returncode == 0
    proc = place("--interleave", "0", "--weights", "0:3", "--verify", "--json", *map(str, files))
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)  # several files: one document each, in order
    assert [d["model"] for d in docs] == [str(f) for f in files]
    for doc, pages in zip(docs, (300, 77)):
        assert doc["mode"] == "verify" and doc["policy"] == "weighted-interleave" and doc["ok"]
        assert doc["nodes"][0]["pages"] == doc["nodes"][0]["on_node_pages"] == pages
        assert doc["nodes"][0]["share"] == 1.0
    text = place("--interleave", "0", "--verify", str(files[1]))
    assert "verify: 100.000% of the file's pages on their interleave node" in text.stdout


def test_evict_then_interleave_starts_from_an_empty_cache(files):
    proc = place("--interleave", "0", "--evict", "--json", str(files[0]))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["evict"] == {"still_cached_pages": 0}
    assert got["total"]["on_node_pages"] == 300


def test_the_sequence_follows_the_weights(tmp_path):
    """Page i goes to the i-th node of 0,0,0,1,2,2,3,3 repeated: counted exactly, then refused."""
    tree = fake_tree(tmp_path / "nodes")
    path = data_file(tmp_path / "m.gguf", 733)  # 91 whole periods of 8, then 0,0,0,1,2
    proc = place("--interleave", "0-3", "--weights", "0:3,1:1,2:2,3:2", "--json", str(path),
                 env={"GGML_NUMA_SHARD_SYSFS": str(tree)})
    got = json.loads(proc.stdout)
    planned = {n["node"]: n["planned_pages"] for n in got["nodes"]}
    assert planned == {0: 91 * 3 + 3, 1: 91 + 1, 2: 91 * 2 + 1, 3: 91 * 2}
    assert {n["node"]: n["target_share"] for n in got["nodes"]} == {0: 0.375, 1: 0.125, 2: 0.25, 3: 0.25}
    # This kernel has no node 1-3: each refuses its pages, and the run fails naming it.
    assert proc.returncode == 4, proc.stderr
    for node in (1, 2, 3):
        assert f"{path}: node {node} could not take {planned[node]} of its {planned[node]} pages" in proc.stderr
    assert "node 0 could not" not in proc.stderr and not got["ok"]
    assert {n["node"]: n["failed_pages"] for n in got["nodes"]} == {0: 0, 1: 92, 2: 183, 3: 182}
    assert got["nodes"][0]["share"] == 1.0  # every page of the file is still on node 0


def test_unweighted_interleave_takes_turns(tmp_path):
    tree = fake_tree(tmp_path / "nodes", nodes="0,2,5", memory="0,2,5")
    path = data_file(tmp_path / "m.gguf", 10)
    proc = place("--interleave", "5,0,2", "--json", str(path), env={"GGML_NUMA_SHARD_SYSFS": str(tree)})
    got = json.loads(proc.stdout)
    assert got["interleave"]["nodes"] == [0, 2, 5]  # node order, as the kernel interleaves
    assert {n["node"]: n["planned_pages"] for n in got["nodes"]} == {0: 4, 2: 3, 5: 3}


# -- --evict alone ------------------------------------------------------------------------------

def test_evict_alone_drops_several_files(files, tmp_path):
    fresh = data_file(tmp_path / "dirty.bin", 40)  # just written: cached and dirty
    proc = place("--evict", "--json", *map(str, files), str(fresh))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["mode"] == "evict"
    assert [(f["path"], f["pages"], f["still_cached_pages"]) for f in got["files"]] == [
        (str(files[0]), 300, 0), (str(files[1]), 77, 0), (str(fresh), 40, 0)]
    # The interleave report now finds nothing cached.
    verify = json.loads(place("--interleave", "0", "--verify", "--json", str(files[0])).stdout)
    assert verify["total"]["resident_pages"] == 0 and verify["nodes"][0]["planned_pages"] == 300
    text = place("--evict", str(files[1]))
    assert text.returncode == 0 and "77 pages dropped from the page cache, 0 stayed cached" in text.stdout


@pytest.mark.parametrize("mode", [["--evict"], ["--interleave", "0", "--evict"]])
def test_a_bad_name_among_the_files_changes_nothing(files, mode):
    """Every file is opened before any is dropped or placed."""
    assert place("--interleave", "0", str(files[0])).returncode == 0  # all of it cached
    proc = place(*mode, str(files[0]), "/nonexistent")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == "numa-shard-place: /nonexistent: No such file or directory\n"
    verify = json.loads(place("--interleave", "0", "--verify", "--json", str(files[0])).stdout)
    assert verify["total"]["resident_pages"] == 300


def test_evict_with_a_map_still_places(tmp_path):
    """With GGML_NUMA_SHARD_MAP set (a unit's Environment=), --evict drops, then places the map."""
    import gguf
    import numpy as np
    w = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    w.add_tensor("blk.0.attn_q.weight", np.ones((64, 1000), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    proc = place("--evict", "--json", str(tmp_path / "m.gguf"), env={"GGML_NUMA_SHARD_MAP": "0:node0"})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["mode"] == "place" and got["evict"] == {"still_cached_pages": 0} and got["ok"]


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "args, status, message",
    [
        (["--interleave", "0"], 2, "no model given"),
        (["--interleave", "x", "F"], 2, "--interleave: expected a node list such as 0,2-3, got 'x'"),
        (["--interleave", "1023", "F"], 1, "--interleave: node 1023 is offline or does not exist"),
        (["--interleave", "0,0", "F"], 2, "--interleave: node 0 given twice"),
        (["--interleave", "0", "--weights", "1:1", "F"], 2, "--weights: node 1 is not in --interleave"),
        (["--interleave", "0", "--weights", "0:256", "F"], 2, "with weights 1..255, got '0:256'"),
        (["--interleave", "0", "--weights", "0:1,0:2", "F"], 2, "--weights: node 0 given twice"),
        (["--interleave", "0", "--weights", "0", "F"], 2, "expected NODE:WEIGHT"),
        (["--interleave", "0", "--map", "", "F"], 2, "--map is for the shard map"),
        (["--interleave", "0", "--evict", "--verify", "F"], 2, "--evict changes the page cache"),
        (["--interleave", "0", "--frob", "F"], 2, "unknown option or missing value: '--frob'"),
        (["--weights", "0:1", "F"], 2, "--weights goes with --interleave or --exec"),
        (["--interleave", "0", "/nonexistent.gguf"], 1, "/nonexistent.gguf: No such file or directory"),
        (["--interleave", "0", "EMPTY"], 1, "the file is empty"),
        (["--interleave", "0", "/"], 1, "/: not a regular file"),
        (["--evict", "F", "/nonexistent"], 1, "/nonexistent: No such file or directory"),
        (["--evict", "--frob", "F"], 2, "unknown option or missing value: '--frob'"),
        (["--evict"], 2, "--evict: no file given"),
    ],
)
def test_bad_usage_fails_clearly(files, tmp_path, args, status, message):
    (tmp_path / "empty").write_bytes(b"")
    subst = {"F": str(files[0]), "EMPTY": str(tmp_path / "empty")}
    proc = place(*[subst.get(a, a) for a in args])
    assert proc.returncode == status, proc.stdout + proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("numa-shard-place: ") and message in line, proc.stderr
    assert proc.stdout == ""


def test_a_memoryless_node_is_refused(tmp_path, files):
    tree = fake_tree(tmp_path / "nodes", nodes="0-1", memory="0")
    proc = place("--interleave", "0-1", str(files[0]), env={"GGML_NUMA_SHARD_SYSFS": str(tree)})
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["numa-shard-place: --interleave: node 1 has no memory"]
