"""One controller at a time per host (hostlock.py): a second apply, tune or bench is
refused at once naming the holder; a dead controller's lock is taken over, a live or
foreign one never. Real hosts: this machine (local connection) and the sshd fleet."""

from __future__ import annotations

import json
import socket
import subprocess
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from coffers_provision.connect.local import LocalConnector
from coffers_provision.hostlock import LOCK, Holder, HostLocked, _proc_start, acquire, held, parse_holder, release
from coffers_provision.resources import schema_path

from .test_apply_fleet import apply, prepare


def dead_holder(command: str = "apply") -> Holder:
    """The holder a controller killed on this machine leaves behind: its pid and start
    time read while it ran, then the process ended."""
    proc = subprocess.Popen(["sleep", "60"])
    me = Holder.me(command)
    holder = Holder(me.controller, proc.pid, "2026-12-06T01:00:00Z", command, me.boot_id, me.pid_ns, _proc_start(proc.pid))
    assert not holder.dead()
    proc.kill()
    proc.wait()
    assert holder.dead()
    return holder


def test_second_taker_is_refused_naming_the_holder_and_release_frees(tmp_path):
    conn, state = LocalConnector(), str(tmp_path / "state")
    first = acquire(conn, state, "apply")
    with pytest.raises(HostLocked) as e:
        acquire(conn, state, "tune")  # a live holder (this very process) is never taken over
    msg = str(e.value)
    assert f"{state}/{LOCK}" in msg and f"pid {first.pid} on {socket.gethostname()}" in msg and first.started in msg and "`apply`" in msg
    release(conn, state, first)
    assert not (tmp_path / "state" / LOCK).exists()
    with held(conn, state, "bench"):
        assert parse_holder((tmp_path / "state" / LOCK).read_text()).command == "bench"
    assert not (tmp_path / "state" / LOCK).exists()


def test_a_dead_controllers_lock_is_taken_over_a_foreign_one_is_not(tmp_path):
    conn, state = LocalConnector(), tmp_path / "state"
    state.mkdir()
    stale = dead_holder()
    (state / LOCK).write_text(stale.text())
    mine = acquire(conn, str(state), "apply")
    assert parse_holder((state / LOCK).read_text()) == mine
    release(conn, str(state), mine)
    # the same dead pid, but recorded by another controller: its liveness cannot be known here
    foreign = Holder("controller-elsewhere", stale.pid, stale.started, "apply", stale.boot_id, stale.pid_ns, stale.proc_start)
    (state / LOCK).write_text(foreign.text())
    with pytest.raises(HostLocked, match="pid .* on controller-elsewhere"):
        acquire(conn, str(state), "apply")
    assert parse_holder((state / LOCK).read_text()) == foreign
    # ours by name, but from another boot or pid namespace (a container): not provably dead either
    for other in (replace(stale, boot_id="another-boot"), replace(stale, pid_ns="pid:[1]"), replace(stale, proc_start=None)):
        assert not other.dead()


def test_release_never_removes_someone_elses_lock(tmp_path):
    conn, state = LocalConnector(), tmp_path / "state"
    mine = acquire(conn, str(state), "apply")
    other = Holder("controller-elsewhere", 1, "2026-12-06T00:00:00Z", "apply")
    (state / LOCK).write_text(other.text())  # taken over meanwhile (by hand)
    release(conn, str(state), mine)
    assert parse_holder((state / LOCK).read_text()) == other


@pytest.mark.fleet
def test_a_second_apply_is_refused_while_a_run_holds_the_host_then_a_stale_lock_is_taken_over(make_fleet, tmp_path):
    from coffers_provision.connect import ConnectionPool, ConnectOptions
    from coffers_provision.inventory import load_inventory

    f = make_fleet(2)
    held_host, free_host = f.hosts
    inv = prepare(f, tmp_path)
    pool = ConnectionPool(ConnectOptions(known_hosts=f.known_hosts))
    try:
        conn = pool.get(load_inventory(inv).hosts[held_host.name])
        holder = acquire(conn, "/var/lib/coffers", "tune")  # a run of ours, live, changing the host
        rc, doc = apply(f, tmp_path, inv)
        assert rc == 3, json.dumps(doc)[:2000]
        error = doc["hosts"][held_host.name]["error"]
        assert f"pid {holder.pid} on {socket.gethostname()}, since {holder.started}" in error and "`tune`" in error
        assert doc["hosts"][held_host.name]["tasks"] == []
        assert not held_host.upper("/var/lib/coffers/deployment.json").exists()  # nothing was changed there
        assert doc["hosts"][free_host.name]["failed"] == 0 and doc["hosts"][free_host.name]["changed"] > 0
        assert not free_host.upper(f"/var/lib/coffers/{LOCK}").exists()  # given back after the run
        release(conn, "/var/lib/coffers", holder)
    finally:
        pool.close()
    # a controller killed while it held the lock: the next run takes it over
    lock = held_host.upper(f"/var/lib/coffers/{LOCK}")
    lock.write_text(dead_holder().text())
    rc, doc = apply(f, tmp_path, inv, "--limit", held_host.name)
    assert rc == 0, json.dumps(doc)[:2000]
    assert doc["hosts"][held_host.name]["changed"] > 0 and not lock.exists()
    assert Path(held_host.upper("/var/lib/coffers/deployment.json")).exists()


def test_an_unreadable_lock_is_never_taken_over_and_is_quoted(tmp_path):
    conn, state = LocalConnector(), tmp_path / "state"
    state.mkdir()
    (state / LOCK).write_text('{"pid": "x"}')
    with pytest.raises(HostLocked, match=r"an unreadable holder \('\{\"pid\": \"x\"\}'\)"):
        acquire(conn, str(state), "apply")
    assert parse_holder(Holder.me("apply").text()) is not None
    jsonschema.Draft202012Validator(json.loads(schema_path("host-lock").read_text())).validate(json.loads(Holder.me("bench").text()))
