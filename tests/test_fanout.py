"""run_hosts on the sshd fleet: bounded parallelism, isolation of failures, statuses, output."""

from __future__ import annotations

import io
import threading
import time

import pytest
from rich.console import Console

from coffers_provision.connect import ConnectOptions
from coffers_provision.fanout import FAILED, OK, UNREACHABLE, HostFailed, exit_status, run_hosts
from coffers_provision.inventory import load_inventory
from coffers_provision.status import ExitStatus


def opts(fleet) -> ConnectOptions:
    return ConnectOptions(known_hosts=fleet.known_hosts, user_known_hosts=None, ssh_config=None, connect_timeout=5)


def quiet() -> Console:
    return Console(file=io.StringIO())


def test_forks_bound_the_parallelism_and_order_is_kept(fleet):
    hosts = load_inventory(fleet.inventory).select(None)
    lock = threading.Lock()
    live = peak = 0

    def work(host, conn):
        nonlocal live, peak
        with lock:
            live += 1
            peak = max(peak, live)
        try:
            time.sleep(0.2)
            return conn.run("cat /sys/devices/system/node/online").stdout.strip()
        finally:
            with lock:
                live -= 1

    outcomes = run_hosts(hosts, work, forks=2, options=opts(fleet), console=quiet())
    assert [o.host for o in outcomes] == [h.name for h in hosts]  # inventory order (children before hosts, as Ansible reads it)
    online = {"p9": "0,8,252-255", "epyc": "0-7", "cxl": "0-3", "single": "0", "kunpeng": "0-3"}
    assert [o.value for o in outcomes] == [online[o.host] for o in outcomes]
    assert peak == 2
    assert exit_status(outcomes) == ExitStatus.SUCCESS


def test_failed_and_unreachable_are_kept_apart_and_never_stop_the_others(make_fleet):
    f = make_fleet(4)
    f.stop_host(f.hosts[3])
    hosts = load_inventory(f.inventory).select(None)

    def work(host, conn):
        if host.name == f.hosts[0].name:
            raise HostFailed("this host's task failed")
        if host.name == f.hosts[1].name:
            conn.run("exit 0")
            raise RuntimeError("boom")
        time.sleep(0.3)  # still running when the others have failed
        return conn.run("echo fine").stdout

    outcomes = {o.host: o for o in run_hosts(hosts, work, forks=4, options=opts(f), console=quiet())}
    a, b, c, d = (outcomes[h.name] for h in f.hosts)
    assert (a.status, a.error) == (FAILED, "this host's task failed")
    assert (b.status, b.error) == (FAILED, "RuntimeError: boom")
    assert (c.status, c.value) == (OK, "fine\n")
    assert d.status == UNREACHABLE and "connection refused" in d.error
    assert exit_status(list(outcomes.values())) == ExitStatus.HOSTS_UNREACHABLE
    assert exit_status([a, b, c]) == ExitStatus.HOSTS_FAILED


def test_no_login_when_the_work_never_touches_the_host(fleet):
    fh = fleet.hosts[0]
    before = fh.log.read_text().count("Accepted publickey")
    hosts = load_inventory(fleet.inventory).select(fh.name)
    outcomes = run_hosts(hosts, lambda h, c: "from cache", options=opts(fleet), console=quiet())
    assert outcomes[0].value == "from cache"
    assert fh.log.read_text().count("Accepted publickey") == before


def test_plain_lines_when_not_on_a_terminal(make_fleet):
    f = make_fleet(2)
    f.stop_host(f.hosts[1])
    buf = io.StringIO()
    run_hosts(load_inventory(f.inventory).select(None), lambda h, c: c.run("true").rc, options=opts(f), console=Console(file=buf), label="probe")
    lines = sorted(buf.getvalue().splitlines())
    assert len(lines) == 2
    assert any(f"probe {f.hosts[0].name}: ok (" in ln for ln in lines)
    assert any(f"probe {f.hosts[1].name}: unreachable (" in ln and "connection refused" in ln for ln in lines)


def test_bad_forks_is_refused():
    with pytest.raises(ValueError, match="forks"):
        run_hosts([], lambda h, c: None, forks=0)


def test_a_progress_bar_on_a_terminal_and_failures_printed_above_it(make_fleet):
    f = make_fleet(2)
    f.stop_host(f.hosts[1])
    buf = io.StringIO()
    term = Console(file=buf, force_terminal=True, width=120)
    outcomes = run_hosts(load_inventory(f.inventory).select(None), lambda h, c: c.run("true").rc, options=opts(f), console=term, label="probe")
    assert [o.status for o in outcomes] == [OK, UNREACHABLE]
    screen = buf.getvalue()
    assert "\x1b[" in screen  # drawn with terminal control sequences, not plain lines
    assert f"{f.hosts[1].name}: UNREACHABLE:" in screen and "connection refused" in screen
    assert "[1/2] probe" not in screen


def test_a_returned_failure_is_reported_failed_and_keeps_its_value(fleet):
    """Work that returns a failed result (a play with a failed task) is shown and counted as failed."""
    hosts = load_inventory(fleet.inventory).select(None)[:2]
    buf = io.StringIO()
    outcomes = run_hosts(hosts, lambda h, c: c.run("test $(hostname) = nope").rc, options=opts(fleet),
                         console=Console(file=buf), label="apply", failed=lambda rc: rc != 0)
    assert [o.status for o in outcomes] == [FAILED, FAILED]
    assert [o.value for o in outcomes] == [1, 1]
    assert all(f"apply {h.name}: failed (" in buf.getvalue() for h in hosts)
    assert exit_status(outcomes) is ExitStatus.HOSTS_FAILED
