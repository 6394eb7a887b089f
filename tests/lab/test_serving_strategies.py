"""Each strategy places what it promises, read from the running server's own pages, and
replicate's front-end serves one endpoint; `tune` measures every variant on the 4-node
guest and `auto` then picks the fastest (issue [9]).

Every deployment here is made by `apply` (or `tune`) on the guests' real systemd, which
waits for /health and a completion itself; page nodes come from /proc/PID/numa_maps in
the guest. Absolute tokens/s under TCG mean nothing: the tests check the mechanism.
Runs after test_service_apply.py (file order) and leaves the guests on the lab inventory's
own plan, stopped.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from . import guestops
from .conftest import INVENTORY
from .lab import REPO

UNIT = "coffers-llama"
SHARE_TOLERANCE = 0.05  # each node's part of the pages within 5 points of its share
OWN_NODE = 0.99


def inventory(tmp: Path, **coffers) -> Path:
    """inventories/lab.yml with `coffers` overrides for every guest (the key path made absolute)."""
    doc = yaml.safe_load(INVENTORY.read_text())
    v = doc["all"]["vars"]
    v["ansible_ssh_private_key_file"] = str((INVENTORY.parent / v["ansible_ssh_private_key_file"]).resolve())
    v["coffers"] = {**v["coffers"], **coffers}
    path = tmp / "lab.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cli(lab: dict, tmp: Path, *args: str) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "coffers_provision", *args, "--known-hosts", lab["known_hosts"], "--json"],
                          capture_output=True, text=True, timeout=3600, cwd=tmp, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"rc {proc.returncode}: {proc.stdout}\n{proc.stderr}") from None


def apply(lab: dict, tmp: Path, guest: str, *flags: str, **coffers) -> dict:
    rc, recap = cli(lab, tmp, "apply", str(inventory(tmp, **coffers)), "--limit", guest, "--facts-dir", str(tmp / "facts"), *flags)
    serving = [t for t in recap["hosts"][guest]["tasks"] if t["role"] == "serving"]
    assert rc == 0, [t["message"] for t in recap["hosts"][guest]["tasks"] if t["status"] == "failed"] or recap
    assert serving and all(t["status"] == "ok" for t in serving), serving  # apply asked the server itself
    return recap


def main_pids(conn) -> dict[str, int]:  # type: ignore[no-untyped-def]
    units = conn.run(f"systemctl list-units --no-legend --plain --state=active '{UNIT}@*' '{UNIT}.service' | awk '{{print $1}}'").stdout.split()
    return {u: int(conn.run(["systemctl", "show", "-P", "MainPID", u]).stdout.strip()) for u in units}


def numa_maps(conn, pid: int) -> list[dict]:  # type: ignore[no-untyped-def]
    """Each mapping of `pid`: its policy, file (or None) and pages per node."""
    out = []
    for line in conn.run(["cat", f"/proc/{pid}/numa_maps"]).stdout.splitlines():
        words = line.split()
        if len(words) < 2:
            continue
        nodes = {int(m[1]): int(m[2]) for m in (re.match(r"N(\d+)=(\d+)$", w) for w in words) if m}
        file = next((w[5:] for w in words if w.startswith("file=")), None)
        out.append({"policy": words[1], "file": file, "anon": any(w.startswith("anon=") for w in words), "nodes": nodes})
    return out


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return tmp_path_factory.mktemp("lab-strategies")


@pytest.fixture(scope="module", autouse=True)
def restored(lab: dict, guests: dict, lab4_llama: dict, llama_server_bin: Path, lab_model: Path, tmp: Path) -> Iterator[None]:  # type: ignore[no-untyped-def]
    for conn in guests.values():  # the model and server the inventory names, on every guest
        guestops.install(conn, llama_server_bin, guestops.LLAMA_SERVER, mode=0o755)
        guestops.install(conn, lab_model, guestops.MODEL)
    yield
    cli(lab, tmp, "apply", str(inventory(tmp)), "--facts-dir", str(tmp / "facts"))  # the lab inventory's own plan again
    for conn in guests.values():
        conn.run(f"systemctl stop '{UNIT}*'")


def test_interleave_spreads_the_servers_model_pages_evenly(lab: dict, guests: dict, tmp: Path) -> None:
    apply(lab, tmp, "lab4", strategy="interleave")
    conn = guests["lab4"]
    (pid,) = main_pids(conn).values()
    pages = model_pages(conn, pid)
    total = sum(pages.values())
    assert total > 1000, pages
    memory_nodes = [0, 1, 2, 3]
    for n in memory_nodes:
        assert abs(pages.get(n, 0) / total - 1 / len(memory_nodes)) <= SHARE_TOLERANCE, (n, pages)


def model_pages(conn, pid: int) -> dict[int, int]:  # type: ignore[no-untyped-def]
    pages: dict[int, int] = {}
    for m in numa_maps(conn, pid):
        if m["file"] == guestops.MODEL:
            for n, c in m["nodes"].items():
                pages[n] = pages.get(n, 0) + c
    return pages


def test_weighted_interleave_follows_the_measured_weights(lab: dict, guests: dict, tmp: Path) -> None:
    """Weights come from a bench run of the guest; the server's model pages follow them."""
    conn = guests["lab4"]
    # room for the bench's arrays on the smallest node: the last test's server and its page cache gone
    conn.run(f"systemctl stop '{UNIT}*'")
    assert conn.run(["/usr/local/bin/numa-shard-place", "--evict", guestops.MODEL]).ok
    rc, doc = cli(lab, tmp, "bench", str(inventory(tmp)), "--limit", "lab4", "--results", str(tmp / "bench"),
                  "--size-mb", "8", "--iterations", "2", "--facts-dir", str(tmp / "facts"))  # lab4's smallest node has ~94 MiB free
    assert rc == 0, doc
    apply(lab, tmp, "lab4", "--bench-results", str(tmp / "bench"), strategy="weighted-interleave")
    deployed = json.loads(conn.run(["cat", "/var/lib/coffers/deployment.json"]).stdout)
    pre = deployed["services"][0]["pre"][0]
    weights = {int(n): int(w) for n, w in (p.split(":") for p in pre[pre.index("--weights") + 1].split(","))}
    (pid,) = main_pids(conn).values()
    pages = model_pages(conn, pid)
    total = sum(pages.values())
    assert total > 1000, pages
    for n, w in weights.items():
        assert abs(pages.get(n, 0) / total - w / sum(weights.values())) <= SHARE_TOLERANCE, (n, weights, pages)


def test_replicate_gives_each_instance_its_own_copy_on_its_node(lab: dict, guests: dict, tmp: Path) -> None:
    recap = apply(lab, tmp, "lab4", strategy="replicate")
    conn = guests["lab4"]
    pids = {u: p for u, p in main_pids(conn).items() if "@" in u}
    assert len(pids) >= 2, (pids, recap)
    for unit, pid in pids.items():
        node = int(unit.split("@")[1].split(".")[0])
        anon = [m for m in numa_maps(conn, pid) if m["anon"]]
        total = sum(sum(m["nodes"].values()) for m in anon)
        own = sum(m["nodes"].get(node, 0) for m in anon)
        assert total > 20000, (unit, total)  # the ~98 MiB model is in the process's own memory
        assert own / total >= OWN_NODE, (unit, own, total)


def test_replicate_front_end_spreads_requests_and_survives_an_instance(lab: dict, guests: dict, tmp: Path) -> None:
    apply(lab, tmp, "lab2", strategy="replicate")
    conn = guests["lab2"]
    units = sorted(u for u in main_pids(conn) if "@" in u)
    assert len(units) == 2, units
    port = yaml.safe_load(INVENTORY.read_text())["all"]["vars"]["coffers"]["service"]["port"]
    since = conn.run(["date", "+%Y-%m-%d %H:%M:%S"]).stdout.strip()
    body = {"prompt": "one two three", "n_predict": 2, "seed": 1, "temperature": 0}
    for _ in range(4):
        status, text = guestops.http(conn, "/completion", body, port=port)
        assert status == 200, text
    served = {u: conn.run(["journalctl", "-u", u, "--since", since, "--no-pager", "-o", "cat"]).stdout.count("print_timing") for u in units}
    assert all(n > 0 for n in served.values()), served  # both instances answered some
    assert conn.run(["systemctl", "stop", units[0]]).ok
    status, text = guestops.http(conn, "/completion", body, port=port)
    assert status == 200, text  # the front-end sent it to the instance still running


def test_replicate_restarts_its_instances_one_at_a_time(lab: dict, guests: dict, tmp: Path) -> None:
    """A change that restarts replicate's instances restarts one, waits for its answer,
    then the next: read from systemd's own clock, the second instance went active only
    after the first had answered /health."""
    apply(lab, tmp, "lab2", strategy="replicate")  # every instance up on the current files
    service = yaml.safe_load(INVENTORY.read_text())["all"]["vars"]["coffers"]["service"]
    recap = apply(lab, tmp, "lab2", strategy="replicate", service={**service, "extra_args": [*service.get("extra_args", []), "--alias", "rolling"]})
    tasks = recap["hosts"]["lab2"]["tasks"]
    handler = next(t for t in tasks if t["task"] == "restart llama-server")
    assert handler["status"] == "skipped" and "template" in handler["message"]
    healthy = {t["data"]["unit"]: t["data"]["seconds_to_healthy"] for t in tasks if t["role"] == "serving" and t.get("data")}
    conn = guests["lab2"]
    units = [u for u in main_pids(conn) if "@" in u]
    assert len(units) == 2 and set(units) <= set(healthy), (units, healthy)
    entered = {u: int(conn.run(["systemctl", "show", "-P", "ActiveEnterTimestampMonotonic", u]).stdout.strip()) / 1e6 for u in units}
    first, second = sorted(units, key=entered.__getitem__)
    assert entered[second] - entered[first] >= healthy[first], (entered, healthy)


def test_tune_measures_every_variant_and_auto_picks_the_fastest(lab: dict, guests: dict, tmp: Path) -> None:
    inv = inventory(tmp, strategy="auto")
    rc, doc = cli(lab, tmp, "tune", str(inv), "--limit", "lab4", "--facts-dir", str(tmp / "facts"), "--results", str(tmp / "tune"),
                  "--requests", "1", "--n-predict", "4", "--prompt-tokens", "8")
    host = doc["hosts"]["lab4"]
    assert rc == 0, host
    by = {v["variant"]: v for v in host["variants"]}
    assert set(by) == {"shard", "replicate", "interleave", "weighted-interleave", "distribute", "interleave-all", "one-node"}
    measured = {n: v["record"]["generation_tokens_per_s"]["median"] for n, v in by.items() if v["status"] == "measured"}
    assert {"shard", "interleave", "distribute", "interleave-all"} <= set(measured), by
    assert all(v["status"] != "failed" for v in by.values()), {n: v["message"] for n, v in by.items()}
    assert host["winner"] == max(measured, key=measured.get)
    rc, plan = cli(lab, tmp, "plan", str(inv), "--limit", "lab4", "--facts-dir", str(tmp / "facts"), "--tune-results", str(tmp / "tune"))
    p = plan["hosts"]["lab4"] if "hosts" in plan else plan
    assert rc == 0 and p["strategy"] == host["winner"], p
