"""`coffers-provision model inspect`: the table, the JSON, HOST:PATH through an inventory, bad files."""

from __future__ import annotations

import json

import pytest

from coffers_provision import modelgen
from coffers_provision.cli import main
from coffers_provision.model import read_layout


@pytest.fixture(scope="module")
def deepseek(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "deepseek2.gguf"
    modelgen.write_arch(path, "deepseek2")
    return path


def test_inspect_table(deepseek, capsys):
    assert main(["model", "inspect", str(deepseek)]) == 0
    text = capsys.readouterr().out
    lay = read_layout(deepseek)
    assert f"deepseek2, 2 blocks, 2 layers in the table, {len(lay.tensors)} tensors" in text
    assert f"= {lay.total_bytes} bytes" in text
    header = next(line for line in text.splitlines() if line.strip().startswith("layer"))
    assert header.split() == ["layer", "attn", "ffn", "experts", "shexp", "router", "norm", "embed", "output", "total"]
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.strip() and line.split()[0] in ("0", "1", "-", "total")}
    assert set(rows) == {"0", "1", "-", "total"}
    assert rows["0"][-1] == "44.3K" and rows["1"][-1] == "83.6K"  # dense first layer, MoE second


def test_inspect_json(deepseek, capsys):
    assert main(["model", "inspect", str(deepseek), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    lay = read_layout(deepseek)
    assert doc["architecture"] == "deepseek2" and doc["block_count"] == 2 and doc["total_bytes"] == lay.total_bytes
    assert [row["layer"] for row in doc["layers"]] == [0, 1, None]
    assert sum(row["bytes"] for row in doc["layers"]) == lay.total_bytes
    assert doc["layers"][1]["kinds"]["shared_experts"] == sum(t.n_bytes for t in lay.tensors if "_shexp" in t.name)
    assert len(doc["tensors"]) == len(lay.tensors)


def test_inspect_host_path_through_the_inventory(deepseek, tmp_path, capsys):
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    box1:\n      ansible_connection: local\n")
    assert main(["model", "inspect", f"box1:{deepseek}", "--inventory", str(inv), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["source"] == f"box1:{deepseek}" and doc["total_bytes"] == read_layout(deepseek).total_bytes
    assert main(["model", "inspect", f"box2:{deepseek}", "--inventory", str(inv)]) == 1
    assert "host 'box2' is not in the inventory" in capsys.readouterr().err
    assert main(["model", "inspect", "box1:/nonexistent/model.gguf", "--inventory", str(inv)]) == 1
    assert "box1:/nonexistent/model.gguf: no such file" in capsys.readouterr().err.replace("\n", "")
    assert main(["model", "inspect", "box1:/nonexistent/model.gguf"]) == 1
    assert "needs --inventory" in capsys.readouterr().err


def test_inspect_bad_file(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, not a model\n")
    assert main(["model", "inspect", str(bad)]) == 1
    err = capsys.readouterr().err.replace("\n", "")
    assert str(bad) in err and "not a GGUF file" in err


def test_a_remote_model_on_an_unreachable_host_exits_4(tmp_path, capsys):
    """Bug fixed in [8]: a remote header read that cannot connect exited 1 (bad input), not 4."""
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inv = tmp_path / "inv.yml"
    inv.write_text(f"all:\n  hosts:\n    gone:\n      ansible_host: 127.0.0.1\n      ansible_port: {port}\n")
    assert main(["model", "inspect", "gone:/m.gguf", "--inventory", str(inv)]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gone" in err[0] and "Traceback" not in err[0]


def test_inspect_with_a_shard_map_shows_its_bytes_per_node(deepseek, capsys):
    """--map: the bytes a GGML_NUMA_SHARD_MAP puts on each node, by the header's rules."""
    lay = read_layout(deepseek)
    assert main(["model", "inspect", str(deepseek), "--map", "0:node0,1:node1,embed:1,*:0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["map"]
    want = {0: 0, 1: 0}
    for t in lay.tensors:
        on_one = t.layer == 1 or (t.layer is None and t.name.startswith("token_embd"))
        want[1 if on_one else 0] += t.n_bytes
    assert doc["nodes"] == [0, 1] and doc["bytes_per_node"] == {str(n): b for n, b in want.items()}
    assert main(["model", "inspect", str(deepseek), "--map", "0-1:node3", "--nodes", "0-3"]) == 0
    text = capsys.readouterr().out
    assert f"node 3: " in text and f"({lay.total_bytes - sum(t.n_bytes for t in lay.tensors if t.layer is None)} bytes" in text


@pytest.mark.parametrize("argv, status, message", [
    (["--map", "0-1:node0,2:nodeX"], 1, "--map: GGML_NUMA_SHARD_MAP position 11 ('2:nodeX')"),
    (["--map", "0:0", "--nodes", "a-b"], 2, "--nodes: bad CPU list element"),
    (["--nodes", "0,1"], 2, "--nodes needs --map"),
])
def test_inspect_bad_map_or_nodes_is_one_line(deepseek, capsys, argv, status, message):
    assert main(["model", "inspect", str(deepseek), *argv]) == status
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
