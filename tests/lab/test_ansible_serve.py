"""The same deployment from Ansible in a real NUMA guest (docs/ansible.md): the exported
project, run by ansible-playbook (ansible-core from the test extras) against lab4 under its
real systemd, leaves a llama-server that answers, with the model's pages where the plan
puts them; `status` then sees it as deployed, healthy, placed and undrifted, and `apply` afterwards
changes nothing (byte for byte, both orders, on the sshd fleet: tests/test_ansible_fleet.py). It runs first among the lab modules (file order) and leaves
lab4 quiet: units stopped, page cache dropped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import guestops
from .conftest import INVENTORY
from .lab import REPO

RECAP = re.compile(r"^lab4\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def cli(lab: dict, facts: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coffers_provision", *argv, str(INVENTORY), "--limit", "lab4",
                           "--known-hosts", lab["known_hosts"], "--facts-dir", str(facts), "--json"],
                          capture_output=True, text=True, timeout=1800, cwd=REPO, check=False)


@pytest.fixture
def quiet_after(guests: dict) -> Iterator[None]:
    yield
    guests["lab4"].run("systemctl stop 'coffers-llama*'; sync; echo 3 > /proc/sys/vm/drop_caches")


def test_ansible_deploys_a_server_that_answers_placed_as_planned(  # type: ignore[no-untyped-def]
        lab: dict, guests: dict, llama_server_bin, lab_model, tmp_path: Path, quiet_after) -> None:
    conn = guests["lab4"]
    guestops.install(conn, llama_server_bin, guestops.LLAMA_SERVER, mode=0o755)
    guestops.install(conn, lab_model, guestops.MODEL)
    project = tmp_path / "project"
    exported = subprocess.run([sys.executable, "-m", "coffers_provision", "export", "ansible", str(INVENTORY), "--out", str(project)],
                              capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
    assert exported.returncode == 0, exported.stderr
    bindir = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "PATH": f"{bindir}:{os.environ['PATH']}",
           "ANSIBLE_SSH_ARGS": f"-o UserKnownHostsFile={lab['known_hosts']} -o StrictHostKeyChecking=yes"}
    key = REPO / "tests" / "lab" / "run" / "id_ed25519"  # the inventory names it relative to itself; ssh reads it from the cwd
    play = subprocess.run([str(bindir / "ansible-playbook"), "-i", str(INVENTORY), "site.yml", "--limit", "lab4", "-v",
                           "-e", f"ansible_ssh_private_key_file={key}", "-e", "ansible_python_interpreter=/usr/bin/python3"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=3000, check=False)
    log = play.stdout + play.stderr
    recap = RECAP.search(play.stdout)
    assert play.returncode == 0 and recap, log[-5000:]
    assert int(recap[2]) > 0 and int(recap[4]) == 0, recap.group(0)
    assert "answered: prompt" in log, log[-5000:]  # the collection's health action asked it, as apply does

    active = conn.run("systemctl is-active coffers-llama.service").stdout.strip()
    assert active == "active", conn.run("journalctl -u coffers-llama.service -n 30 --no-pager").stdout
    status, body = guestops.http(conn, "/health", port=8080)
    assert status == 200, body

    facts = tmp_path / "facts"
    probe = cli(lab, facts, "probe")
    assert probe.returncode == 0, probe.stdout + probe.stderr
    st = cli(lab, facts, "status")
    doc = json.loads(st.stdout)["hosts"]["lab4"]
    assert st.returncode == 0, doc
    assert not doc["drift"]["drifted"], doc["drift"]
    (inst,) = doc["instances"]
    assert inst["state"] == "active" and inst["health"]["ok"] is True, inst
    ranges = inst["placement"]["ranges"]
    assert ranges and all(r["share"] >= 0.9 for r in ranges if r["share"] is not None), ranges

    # the tool's own engine then finds nothing to do under real systemd either
    again = cli(lab, facts, "apply")
    recap = json.loads(again.stdout)["hosts"]["lab4"]
    changed = [(t["role"], t["task"], t["message"], [s for s in t.get("steps", []) if s["status"] == "changed"])
               for t in recap["tasks"] if t["status"] in ("changed", "failed")]
    assert again.returncode == 0 and recap["changed"] == 0, changed or recap
