"""The host's lock under ansible-playbook (collection/plugins/action/lock.py): the same
`<state_dir>/lock.json` `apply` holds, with the same refusal and the same takeover of a
dead holder, on the sshd fleet (tests/fleet) with ansible-core from PyPI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from coffers_provision.hostlock import LOCK, Holder, _proc_start, parse_holder

from .test_ansible_fleet import SPECS, ansible_inventory, deployed, exported, playbook, playbook_argv
from .test_apply_fleet import apply

STATE = "/var/lib/coffers"
READY_S = 300  # ansible-playbook's start, the export's collection loaded, one SSH connection


def children(pid: int) -> list[int]:
    """The processes `pid` started that still run (/proc/PID/stat field 4, the parent)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def lock_of(host):
    return host.upper(f"{STATE}/{LOCK}")


@pytest.mark.fleet
def test_a_held_host_fails_with_applys_refusal_and_changes_nothing_the_others_deploy(make_fleet, tmp_path):
    fleet = make_fleet(specs=SPECS[:2])
    held, free = fleet.hosts
    inv = ansible_inventory(fleet, tmp_path)
    other = Holder.me("tune")  # a live run of this controller (this very process) changing the host
    lock_of(held).parent.mkdir(parents=True, exist_ok=True)
    lock_of(held).write_text(other.text())
    rc, doc = apply(fleet, tmp_path, inv, "--limit", held.name)
    refusal = doc["hosts"][held.name]["error"]
    assert rc == 3 and refusal == f"{STATE}/{LOCK}: this host is being changed by {other.describe()}; refused", refusal
    before = deployed([held])
    rc, recap, log = playbook(fleet, tmp_path, inv)
    assert rc != 0 and recap[held.name]["failed"] == 1 and recap[held.name]["changed"] == 0, log[-4000:]
    assert json.dumps(refusal) in log, log[-4000:]  # apply's message, word for word
    assert deployed([held]) == before and lock_of(held).read_text() == other.text()
    assert recap[free.name]["failed"] == 0 and recap[free.name]["changed"] > 0, log[-4000:]
    assert free.upper(f"{STATE}/deployment.json").exists() and not lock_of(free).exists()  # given back after the run
    rc, recap, log = playbook(fleet, tmp_path, inv, "--check", "--limit", held.name)  # changes nothing: takes no lock
    assert rc == 0 and recap[held.name]["failed"] == 0, log[-4000:]
    assert deployed([held]) == before


@pytest.mark.fleet
def test_ansible_playbook_holds_the_lock_as_itself_apply_is_refused_and_takes_over_once_it_is_killed(make_fleet, tmp_path):
    """A real run killed while it holds the host: a playbook that takes the lock as the
    serve role does, then pauses, until this test has seen the lock and killed it."""
    fleet = make_fleet(specs=SPECS[:1])
    h = fleet.hosts[0]
    inv = ansible_inventory(fleet, tmp_path)
    project = exported(tmp_path, inv)
    (project / "hold.yml").write_text(yaml.safe_dump([{
        "hosts": "all", "gather_facts": False,
        "tasks": [{"coffers.numa.lock": {"state": "held"}}, {"ansible.builtin.pause": {"seconds": 900}}],
    }]))
    argv, env = playbook_argv(fleet, tmp_path, inv, "hold.yml")
    with open(tmp_path / "hold.log", "w") as out:
        proc = subprocess.Popen(argv, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_S
        while not lock_of(h).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        holder = parse_holder(lock_of(h).read_text()) if lock_of(h).exists() else None
        assert holder is not None, (tmp_path / "hold.log").read_text()[-3000:]
        # the long-lived ansible-playbook process, not the worker that ran the task
        assert (holder.controller, holder.pid, holder.command) == (socket.gethostname(), proc.pid, "ansible-playbook")
        assert holder.proc_start == _proc_start(proc.pid) and not holder.dead()
        rc, doc = apply(fleet, tmp_path, inv)
        assert rc == 3 and doc["hosts"][h.name]["error"] == f"{STATE}/{LOCK}: this host is being changed by {holder.describe()}; refused"
        assert doc["hosts"][h.name]["tasks"] == [] and not h.upper(f"{STATE}/deployment.json").exists()
    finally:
        workers = children(proc.pid)  # each in its own session (Ansible's workers call setsid)
        proc.kill()  # ansible-playbook, as `kill -9` leaves a run
        proc.wait()
        for pid in workers:  # the pausing worker, which would outlive it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert holder.dead() and parse_holder(lock_of(h).read_text()) == holder  # left behind
    rc, doc = apply(fleet, tmp_path, inv)
    assert rc == 0 and doc["hosts"][h.name]["changed"] > 0, json.dumps(doc)[:3000]
    assert not lock_of(h).exists()


@pytest.mark.fleet
def test_a_host_that_fails_mid_play_gives_the_lock_back(make_fleet, tmp_path):
    """Files and builds land, then the unit fails verification (User=nobody, as in
    tests/test_apply_fleet.py): the `always` gives the lock back."""
    fleet = make_fleet(specs=SPECS[:1])
    h = fleet.hosts[0]
    inv = ansible_inventory(fleet, tmp_path, service={"user": "nobody"})
    rc, recap, log = playbook(fleet, tmp_path, inv)
    assert rc != 0 and recap[h.name]["failed"] == 1 and recap[h.name]["changed"] > 0, log[-4000:]
    assert "the host's lock given back" in log and not lock_of(h).exists(), log[-4000:]
    assert h.upper(f"{STATE}/lock.guard").exists()  # the lock was taken, under its guard
