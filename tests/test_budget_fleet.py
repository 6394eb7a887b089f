"""apply re-reads each node's free memory right before a server would start, and refuses,
with nothing changed, a plan the live memory cannot take (deployment/budget.py).

Real: sshd, apply over SSH, the host's batch read and the live read, numa-shard-place
built on the host by apply and asking this machine's kernel where the model's cached pages
are (all on its one node, node 0), and the page cache itself (the model is on this
machine's disk, written and read whole before each check).
A fixture: each node's MemFree. A fleet host's /sys/devices/system/node is a tree written
from its captured topology (tests/fleet/README.md); the test rewrites a node's
`meminfo` there after the facts were gathered, as if memory had been taken since.
systemd is not PID 1 on a fleet host, so the start apply checks for is verify's transient
run of the unit's command (coffers.service.verify true); the running servers' memory is
counted from /proc/PID/numa_maps only under systemd (tests/test_budget.py reads a real
process's numa_maps).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil

import yaml
from pathlib import Path

from coffers_provision import modelgen
from coffers_provision.cli import main
from coffers_provision.units import human_bytes
from tests.fleet.fleet import DEFAULT_SPECS
from tests.test_ansible_fleet import playbook
from tests.test_apply_fleet import apply, trees

EPYC = next(s for s in DEFAULT_SPECS if s.short == "epyc")  # 8 nodes: the tiny model is sharded over all of them
IDENTITY = "/var/lib/coffers/model-sha256.json"  # the model's hash cache, written when apply hashes it
LOCK = "/var/lib/coffers/lock.guard"  # one controller at a time per host (hostlock.py)


def host_with_model(make_fleet, tmp: Path):
    """An 8-node host with the model at a path on this machine's disk (the host sees /tmp as
    it is; its overlays live in tmpfs)."""
    f = make_fleet(specs=(EPYC,))
    h = f.hosts[0]
    server = h.upper("/opt/llama-server")
    server.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/true", server)
    model = tmp / "models" / "budget.gguf"
    model.parent.mkdir()
    modelgen.write_model(model, modelgen.llama_spec(n_layers=4, dim=768, ffn=2048)) 
    model.read_bytes()  # every page in the page cache (on this machine's node 0)
    inv = f.write_inventory(tmp / "inventory.yml", coffers={
        "model": str(model), "llama_server": "/opt/llama-server", "context_length": 512,
        "service": {"port": 18080, "verify": True}})
    return f, h, inv, model


def set_free(f, node: int, nbytes: int) -> None:
    """The node's MemFree as the host now shows it (kB, as the kernel writes it)."""
    path = f.spec_dir(EPYC) / "sys" / "node" / f"node{node}" / "meminfo"
    lines = [f"Node {node} MemFree:        {nbytes // 1024} kB" if " MemFree:" in line else line for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")


def planned(f, tmp: Path, inv: Path) -> dict[int, dict]:
    """The plan's nodes, from facts gathered now (cached for the applies that follow)."""
    flags = [str(inv), "--known-hosts", str(f.known_hosts), "--facts-dir", str(tmp / "facts")]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["probe", *flags]) == 0
        out.seek(0)
        out.truncate()
        assert main(["plan", *flags, "--json"]) == 0
    doc = json.loads(out.getvalue())
    host = next(iter(doc["hosts"].values()))
    return {n["id"]: n for n in host["nodes"]}


def line(n: dict, free: int, counted: str, cached: int = 0) -> str:
    put = n["weight_bytes"] + n["kv_bytes"]
    short = put + n["headroom_bytes"] - free - cached
    return (f"node {n['id']}: the plan puts {human_bytes(put)} there (weights {human_bytes(n['weight_bytes'])} + KV "
            f"{human_bytes(n['kv_bytes'])}) but only {human_bytes(free + cached)} is free ({human_bytes(free)} free{counted}) - "
            f"headroom {human_bytes(n['headroom_bytes'])}: {human_bytes(short)} short; apply would push node {n['id']} into reclaim")


def ran(doc: dict, h) -> list[str]:
    """The tasks that ran (roles that are off for the host are listed as skipped)."""
    return [t["task"] for t in doc["hosts"][h.name]["tasks"] if t["module"] != "role"]


def error_of(doc: dict, h) -> str:
    return doc["hosts"][h.name].get("error") or ""


def test_a_node_whose_live_memory_is_short_fails_the_host_with_nothing_changed(make_fleet, tmp_path):
    f, h, inv, model = host_with_model(make_fleet, tmp_path)
    nodes = planned(f, tmp_path, inv)  # facts gathered now: every node as the capture shows it
    assert all(n["left_bytes"] > 0 for n in nodes.values()) and nodes[1]["weight_bytes"] > 0
    need = nodes[1]["weight_bytes"] + nodes[1]["kv_bytes"] + nodes[1]["headroom_bytes"]
    set_free(f, 1, need // 2 // 1024 * 1024)
    expected = ("the live memory of 1 node(s) cannot take this plan (read right before the restart); nothing was changed on the host\n  "
                + line(nodes[1], need // 2 // 1024 * 1024,
                       "; the model's cached pages not counted: /usr/local/bin/numa-shard-place is not on the host yet"))

    before = trees([h])
    rc, check = apply(f, tmp_path, inv, "--check")
    assert rc == 3 and error_of(check, h) == expected, json.dumps(check, indent=1)[:3000]
    assert ran(check, h) == []
    rc, real = apply(f, tmp_path, inv)
    assert rc == 3 and error_of(real, h) == expected and ran(real, h) == []
    # what every apply leaves before it plans (the controller's lock file, the model's hash
    # cache), and nothing else: no record, no unit, no tool built
    after = trees([h])
    assert {k: v for k, v in after.items() if k not in before} == {
        f"{h.name}:{h.upper(p)}": after[f"{h.name}:{h.upper(p)}"] for p in (LOCK, IDENTITY)}
    assert all(after[k] == v for k, v in before.items())
    assert not h.upper("/var/lib/coffers/deployment.json").exists() and not h.upper("/usr/local/bin/numa-shard-place").exists()


def test_the_models_own_cached_pages_count_so_a_reapply_is_not_refused(make_fleet, tmp_path):
    f, h, inv, model = host_with_model(make_fleet, tmp_path)
    nodes = planned(f, tmp_path, inv)
    rc, first = apply(f, tmp_path, inv)  # the memory is there: the play runs (and builds the tool)
    assert error_of(first, h) == "" and os.access(h.upper("/usr/local/bin/numa-shard-place"), os.X_OK), json.dumps(first, indent=1)[:3000]
    # ... and only the transient start fails: a fleet host cannot run a placed server
    assert rc == 3 and [t["task"] for t in first["hosts"][h.name]["tasks"] if t["status"] == "failed"] == ["health"]
    size = model.stat().st_size
    model.read_bytes()
    need = nodes[0]["weight_bytes"] + nodes[0]["kv_bytes"] + nodes[0]["headroom_bytes"]
    free = (need - size // 2) // 1024 * 1024  # short alone, enough with the model's own pages
    set_free(f, 0, free)

    # the same deployment again: not yet answered, so apply would start it (verify's transient run)
    before = trees([h])
    rc, cached = apply(f, tmp_path, inv, "--check")
    assert rc == 0 and error_of(cached, h) == "", json.dumps(cached, indent=1)[:3000]
    assert not [t for t in cached["hosts"][h.name]["tasks"] if t["status"] == "changed"]

    # less free still: short even with every page of the model counted, and the line says so
    page = os.sysconf("SC_PAGESIZE")
    pages = -(-size // page) * page  # every page of the file, in bytes
    set_free(f, 0, free - pages)
    rc, short = apply(f, tmp_path, inv, "--check")
    assert rc == 3 and error_of(short, h) == (
        "the live memory of 1 node(s) cannot take this plan (read right before the restart); nothing was changed on the host\n  "
        + line(nodes[0], free - pages, f" + {human_bytes(pages)} of this model already cached", pages)), json.dumps(short, indent=1)[:3000]
    assert trees([h]) == before


def test_ansible_refuses_the_same_plan_with_the_same_message_and_changes_nothing(make_fleet, tmp_path):
    """The exported project's deployment action runs the same check before any change."""
    f, h, inv, model = host_with_model(make_fleet, tmp_path)
    nodes = planned(f, tmp_path, inv)
    need = nodes[1]["weight_bytes"] + nodes[1]["kv_bytes"] + nodes[1]["headroom_bytes"]
    set_free(f, 1, need // 2 // 1024 * 1024)
    doc = yaml.safe_load(inv.read_text())
    doc["all"]["vars"]["ansible_python_interpreter"] = "/usr/bin/python3"
    inv.write_text(yaml.safe_dump(doc, sort_keys=False))
    before = trees([h])
    rc, recap, log = playbook(f, tmp_path, inv)
    assert rc != 0 and recap[h.name]["failed"] == 1 and recap[h.name]["changed"] == 0, log[-4000:]
    expected = line(nodes[1], need // 2 // 1024 * 1024,
                    "; the model's cached pages not counted: /usr/local/bin/numa-shard-place is not on the host yet")
    assert expected in log, log[-4000:]
    after = trees([h])  # the host's lock was taken and given back: only its guard file is new
    assert {k: v for k, v in after.items() if k not in before} == {f"{h.name}:{h.upper(LOCK)}": after[f"{h.name}:{h.upper(LOCK)}"]}
    assert all(after[k] == v for k, v in before.items())
