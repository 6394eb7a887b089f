"""`apply inventories/lab.yml` runs the inference service under the guests' real systemd.

The checks of issue [6]: `systemctl is-active` passes, the unit's environment holds the
plan, the server answers, and a second apply changes nothing. They run after the placement
tests (file order), since apply leaves services behind (stopped at the end of the module).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from coffers_provision.inventory import load_inventory

from . import guestops
from .conftest import INVENTORY
from .lab import GUESTS, REPO

UNIT = "coffers-llama"  # the inference_service role names its units coffers-llama*


def apply(lab: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coffers_provision", "apply", str(INVENTORY),
                           "--known-hosts", lab["known_hosts"], "--json"],
                          capture_output=True, text=True, timeout=3600, cwd=REPO, check=False)


@pytest.fixture(scope="module")
def applied(lab: dict, guests: dict, lab4_llama: dict, llama_server_bin, lab_model) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    for g in GUESTS:  # the model and server the inventory names, on every guest
        guestops.install(guests[g.name], llama_server_bin, guestops.LLAMA_SERVER, mode=0o755)
        guestops.install(guests[g.name], lab_model, guestops.MODEL)
    first = apply(lab)
    assert first.returncode == 0, first.stdout + first.stderr
    yield {"first": first}
    for g in GUESTS:  # give the guests back quiet: a serving llama-server costs TCG time
        guests[g.name].run(f"systemctl stop '{UNIT}*'")


@pytest.mark.parametrize("name", [g.name for g in GUESTS])
def test_unit_is_active_with_the_plan_and_serves(applied: dict, guests: dict, name: str) -> None:
    conn = guests[name]
    units = conn.run(f"systemctl list-units --no-legend --plain '{UNIT}*' | awk '{{print $1}}'").stdout.split()
    assert units, f"no {UNIT}* unit on {name}"
    for unit in units:
        assert conn.run(["systemctl", "is-active", unit]).stdout.strip() == "active"
        env = conn.run(["systemctl", "show", "-P", "Environment", unit]).stdout
        assert "GGML_NUMA_SHARD_MAP=" in env, f"{unit} on {name}: {env}"
    port = load_inventory(INVENTORY).hosts[name].vars["coffers"]["service"]["port"]
    status, body = guestops.http(conn, "/health", port=port)
    assert status == 200, body


def test_second_apply_changes_nothing(applied: dict, lab: dict) -> None:
    second = apply(lab)
    assert second.returncode == 0, second.stdout + second.stderr
    recap = json.loads(second.stdout)
    assert set(recap["hosts"]) == {g.name for g in GUESTS}
    for name, host in recap["hosts"].items():
        assert (host["changed"], host["failed"], host["unreachable"]) == (0, 0, 0), (name, host)


def test_a_fresh_probe_of_the_same_hardware_changes_nothing(applied: dict, lab: dict) -> None:
    """Node sizes move by tens of MB across probes and boots; the plan (and so every unit)
    depends only on what does not: a re-probe then apply restarts nothing."""
    probe = subprocess.run([sys.executable, "-m", "coffers_provision", "probe", str(INVENTORY), "--refresh",
                            "--known-hosts", lab["known_hosts"]], capture_output=True, text=True, timeout=600, cwd=REPO, check=False)
    assert probe.returncode == 0, probe.stdout + probe.stderr
    again = apply(lab)
    assert again.returncode == 0, again.stdout + again.stderr
    for name, host in json.loads(again.stdout)["hosts"].items():
        assert (host["changed"], host["failed"]) == (0, 0), (name, [t for t in host["tasks"] if t["status"] != "ok"])


def status(lab: dict) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "coffers_provision", "status", str(INVENTORY), "--limit", "lab4",
                           "--known-hosts", lab["known_hosts"], "--json"], capture_output=True, text=True, timeout=600, cwd=REPO, check=False)
    try:
        return proc.returncode, json.loads(proc.stdout)["hosts"]["lab4"]
    except (ValueError, KeyError):
        raise AssertionError(f"rc {proc.returncode}: {proc.stdout}\n{proc.stderr}") from None


def test_status_sees_the_live_placement_and_pages_migrated_away(applied: dict, lab: dict, guests: dict) -> None:
    """status reads the shard-placed server's numa_maps; `migratepages` moves one layer
    range's pages off its node, and status then exits 3 naming that range (runs last: it
    leaves the server misplaced)."""
    rc, doc = status(lab)
    assert rc == 0, doc
    (inst,) = doc["instances"]
    assert inst["state"] == "active" and inst["health"]["ok"] is True, inst
    ranges = inst["placement"]["ranges"]
    assert ranges and all(r["share"] >= 0.9 for r in ranges if r["share"] is not None), ranges
    biggest = max(ranges, key=lambda r: r["planned_pages"])
    assert biggest["planned_pages"] > 1000, ranges
    target = max((n for n in doc["kernel"]["nodes"] if n["node"] != biggest["node"]), key=lambda n: n["free_bytes"])["node"]
    moved = guests["lab4"].run(["migratepages", str(inst["pid"]), str(biggest["node"]), str(target)])
    assert moved.ok, moved.stderr
    rc, doc = status(lab)
    assert rc == 3, doc
    after = next(r for r in doc["instances"][0]["placement"]["ranges"] if r["range"] == biggest["range"])
    assert after["share"] < 0.5, (biggest, after)
    assert any(biggest["range"] in p for p in doc["problems"]), doc["problems"]
