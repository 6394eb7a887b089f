"""The SSH connector against real sshd hosts (tests/fleet): commands, files, host keys,
ssh_config, ProxyJump, agent, failures. Nothing here is mocked."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import paramiko
import pytest

from coffers_provision.connect import (
    CommandTimeout,
    ConnectError,
    ConnectionPool,
    ConnectOptions,
    HostKeyError,
    open_connector,
)
from coffers_provision.connect.hostkeys import fingerprint
from coffers_provision.connect.ssh import parse_jump
from coffers_provision.inventory import Host, load_inventory
from tests.fleet.fleet import _namespace_pids


def options(fleet, **kw) -> ConnectOptions:
    base = {"known_hosts": fleet.known_hosts, "user_known_hosts": None, "ssh_config": None, "connect_timeout": 5.0}
    return ConnectOptions(**(base | kw))


def host_of(fh, **extra) -> Host:
    vars = {"ansible_host": fh.address, "ansible_port": fh.port, "ansible_user": "root", "ansible_ssh_private_key_file": str(fh.key)}
    return Host(fh.name, {k: v for k, v in (vars | extra).items() if v is not None}, ("all",))


def logins(fh) -> int:
    return fh.log.read_text().count("Accepted publickey")


def ssh_keygen_fingerprint(pub: Path) -> str:
    """OpenSSH's own fingerprint of a key: an independent check of ours."""
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


# -- commands and files ----------------------------------------------------------------


def test_commands_report_status_output_and_stdin(fleet):
    with open_connector(host_of(fleet.hosts[0]), options(fleet)) as c:
        r = c.run("echo out; echo err >&2; exit 3")
        assert (r.rc, r.stdout, r.stderr, r.ok) == (3, "out\n", "err\n", False)
        assert c.run("cat", stdin=b"fed through stdin").stdout == "fed through stdin"
        assert c.run("numactl --hardware | head -n 1").stdout == "available: 6 nodes (0,8,252-255)\n"
        big = c.run("head -c 3000000 /dev/zero | tr '\\0' x")
        assert len(big.stdout) == 3_000_000


def test_a_sequence_is_quoted_word_by_word(fleet, tmp_path):
    marker = tmp_path / "injected"
    words = ["printf", "%s|", "a b", "$(touch " + str(marker) + ")", "`id`", "'; touch " + str(marker) + "; '"]
    with open_connector(host_of(fleet.hosts[0]), options(fleet)) as c:
        r = c.run(words)
    assert r.stdout == "a b|$(touch " + str(marker) + ")|`id`|'; touch " + str(marker) + "; '|"
    assert not marker.exists()


def test_one_login_serves_every_command_and_transfer(fleet):
    fh = fleet.hosts[1]
    before = logins(fh)
    with open_connector(host_of(fh), options(fleet)) as c:
        for i in range(5):
            assert c.run(f"echo {i}").stdout == f"{i}\n"
        c.put(b"x", "/opt/one-login")
        assert c.read("/opt/one-login") == b"x"
    time.sleep(0.1)
    assert logins(fh) == before + 1


def test_put_is_atomic_with_mode_and_leaves_no_temp_files(fleet):
    fh = fleet.hosts[2]
    with open_connector(host_of(fh), options(fleet)) as c:
        c.put(b"first\n", "/etc/systemd/system/coffers-test.service", mode=0o640)
        c.put(b"second\n", "/etc/systemd/system/coffers-test.service", mode=0o600)
        st = c.stat("/etc/systemd/system/coffers-test.service")
        assert (st.size, st.mode, st.uid, st.is_dir) == (7, 0o600, 0, False)
        assert c.read("/etc/systemd/system/coffers-test.service", 1, 4) == b"econ"
        assert c.stat("/etc/systemd/system").is_dir
        assert c.stat("/etc/systemd/system/nope") is None
        with pytest.raises(FileNotFoundError):
            c.read("/etc/systemd/system/nope")
        with pytest.raises(OSError):
            c.put(b"x", "/no/such/dir/file")
    written = fh.upper("/etc/systemd/system/coffers-test.service")
    assert written.read_bytes() == b"second\n" and (written.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in written.parent.iterdir() if ".coffers-" in p.name] == []
    assert not Path("/etc/systemd/system/coffers-test.service").exists()  # the host's own overlay


def test_command_timeout_stops_the_remote_command(fleet):
    fh = fleet.hosts[0]
    with open_connector(host_of(fh), options(fleet)) as c:
        start = time.monotonic()
        with pytest.raises(CommandTimeout, match="timed out after 0.5s"):
            c.run("sleep 31.5", timeout=0.5)
        assert time.monotonic() - start < 3
        assert c.run("echo still usable").stdout == "still usable\n"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "sleep 31.5" in fh.run_inside("ps -eo args").stdout:
        time.sleep(0.2)
    assert "sleep 31.5" not in fh.run_inside("ps -eo args").stdout


# -- host keys -------------------------------------------------------------------------


def test_unknown_host_key_is_refused_naming_host_and_fingerprint(fleet, tmp_path):
    fh = fleet.hosts[0]
    with pytest.raises(HostKeyError) as e:
        open_connector(host_of(fh), options(fleet, known_hosts=tmp_path / "empty"))
    msg = str(e.value)
    assert f"[{fh.address}]:{fh.port}" in msg and fh.name in msg
    assert ssh_keygen_fingerprint(fh.host_key.with_suffix(".pub")) in msg
    assert "unknown host key" in msg and not (tmp_path / "empty").exists()


def test_a_wrong_key_on_record_is_refused_as_changed(fleet, tmp_path):
    fh = fleet.hosts[0]
    other = paramiko.Ed25519Key.from_private_key_file(str(fleet.client_key))
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[{fh.address}]:{fh.port} ssh-ed25519 {other.get_base64()}\n")
    with pytest.raises(HostKeyError) as e:
        open_connector(host_of(fh), options(fleet, known_hosts=kh, accept_new_host_keys=True))
    assert "HOST KEY CHANGED" in str(e.value) and fingerprint(other) in str(e.value)
    assert kh.read_text().count("\n") == 1  # not overwritten, even with TOFU on


def test_tofu_records_the_key_then_a_changed_key_is_refused(make_fleet, tmp_path):
    f = make_fleet(1)
    fh = f.hosts[0]
    kh = tmp_path / "tool" / "known_hosts"
    with open_connector(host_of(fh), options(f, known_hosts=kh, accept_new_host_keys=True)) as c:
        assert c.run("true").ok
    assert kh.read_text() == fh.known_hosts_line()
    with open_connector(host_of(fh), options(f, known_hosts=kh)) as c:  # strict again: now known
        assert c.run("true").ok
    f.rekey(fh)
    with pytest.raises(HostKeyError) as e:
        open_connector(host_of(fh), options(f, known_hosts=kh, accept_new_host_keys=True))
    assert "HOST KEY CHANGED" in str(e.value)
    assert ssh_keygen_fingerprint(fh.host_key.with_suffix(".pub")) in str(e.value)
    assert kh.read_text().count("\n") == 1


def test_openssh_known_hosts_with_hashed_entries_is_honoured(fleet, tmp_path):
    fh = fleet.hosts[3]
    user_kh = tmp_path / "known_hosts"
    user_kh.write_text(fh.known_hosts_line())
    subprocess.run(["ssh-keygen", "-H", "-f", str(user_kh)], check=True, capture_output=True)
    assert "|1|" in user_kh.read_text() and fh.address not in user_kh.read_text()
    opts = options(fleet, known_hosts=tmp_path / "tool-empty", user_known_hosts=user_kh)
    with open_connector(host_of(fh), opts) as c:
        assert c.run("true").ok
    assert not (tmp_path / "tool-empty").exists()


# -- where to connect: ssh_config, ProxyJump, agent -----------------------------------


def test_ssh_config_supplies_hostname_port_user_and_key(fleet, tmp_path):
    fh = fleet.hosts[0]
    cfg = tmp_path / "config"
    cfg.write_text(f"Host rack7-*\n  HostName {fh.address}\n  Port {fh.port}\n  User root\n  IdentityFile {fh.key}\n")
    with open_connector(Host("rack7-p9", {}, ("all",)), options(fleet, ssh_config=cfg)) as c:
        assert c.run("numactl --hardware | head -n 1").stdout.startswith("available: 6 nodes")


def test_proxyjump_through_one_fleet_host_to_another(fleet):
    jump, target = fleet.hosts[0], fleet.hosts[1]
    inv = load_inventory(fleet.inventory)
    via_jump = Host(target.name, {**inv.hosts[target.name].vars, "ansible_ssh_common_args": f"-o ProxyJump={jump.name}"}, ("all",))
    before = logins(jump)
    with open_connector(via_jump, options(fleet, inventory=inv.hosts)) as c:
        assert c.run("numactl --hardware | head -n 1").stdout == "available: 8 nodes (0-7)\n"
        # The TCP connection to the target belongs to an sshd in the jump host's namespace.
        ss = subprocess.run(["ss", "-tnpH", "state", "established", "dst", f"{target.address}:{target.port}"], capture_output=True, text=True).stdout
        owners = {int(p) for p in re.findall(r"pid=(\d+)", ss)}
        assert owners and owners <= set(_namespace_pids(jump.pid))
    assert logins(jump) == before + 1


def test_proxyjump_chain_with_user_and_port(fleet):
    a, b, target = fleet.hosts[2], fleet.hosts[3], fleet.hosts[4]
    spec = f"root@{a.name}:{a.port},{b.name}"
    inv = load_inventory(fleet.inventory)
    h = Host(target.name, {**inv.hosts[target.name].vars, "ansible_ssh_common_args": f"-J {spec}"}, ("all",))
    with open_connector(h, options(fleet, inventory=inv.hosts)) as c:
        assert c.run("cat /sys/devices/system/node/online").stdout == "0-3\n"


def test_pool_shares_one_jump_login_among_hosts_behind_it(fleet):
    jump = fleet.hosts[0]
    inv = load_inventory(fleet.inventory)
    behind = [Host(n, {**inv.hosts[n].vars, "ansible_ssh_common_args": f"-J {jump.name}"}, ("all",)) for n in ("epyc", "cxl", "single")]
    before = logins(jump)
    with ConnectionPool(options(fleet, inventory=inv.hosts)) as pool:
        for h in behind:
            assert pool.get(h).run("true").ok
            assert pool.get(h) is pool.get(h)
    assert logins(jump) == before + 1


def test_ssh_agent_provides_the_key(fleet, tmp_path, monkeypatch):
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.02)
        env = dict(os.environ, SSH_AUTH_SOCK=str(sock))
        subprocess.run(["ssh-add", "-q", str(fleet.client_key)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* to fall back on
        fh = fleet.hosts[0]
        with open_connector(host_of(fh, ansible_ssh_private_key_file=None), options(fleet)) as c:
            assert c.run("true").ok
    finally:
        agent.terminate()
        agent.wait(timeout=5)


# -- failures --------------------------------------------------------------------------


def test_a_stopped_host_is_unreachable(make_fleet):
    f = make_fleet(1)
    fh = f.hosts[0]
    f.stop_host(fh)
    with pytest.raises(ConnectError, match="connection refused"):
        open_connector(host_of(fh), options(f))


def test_a_silent_port_times_out(fleet):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        h = Host("silent", {"ansible_host": "127.0.0.1", "ansible_port": s.getsockname()[1], "ansible_user": "root"}, ("all",))
        start = time.monotonic()
        with pytest.raises(ConnectError, match="timed out|banner|Error reading SSH protocol banner"):
            open_connector(h, options(fleet, connect_timeout=1.0))
        assert time.monotonic() - start < 5


def test_failed_login_never_shows_the_password(fleet, tmp_path, caplog, monkeypatch):
    secret = "hunter2-Secret!"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    wrong_key = tmp_path / "wrong"
    paramiko.Ed25519Key.from_private_key_file(str(fleet.client_key))  # the format we generate
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)], check=True)
    fh = fleet.hosts[0]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConnectError) as e:
        open_connector(host_of(fh, ansible_ssh_private_key_file=str(wrong_key), ansible_password=secret), options(fleet))
    assert "authentication failed" in str(e.value)
    assert secret not in str(e.value) and secret not in repr(e.value)
    assert secret not in caplog.text


def test_proxyjump_from_ssh_config(fleet, tmp_path):
    jump, target = fleet.hosts[3], fleet.hosts[0]
    cfg = tmp_path / "config"
    cfg.write_text(
        f"Host behind\n  HostName {target.address}\n  Port {target.port}\n  ProxyJump root@{jump.address}:{jump.port}\n"
        f"Host *\n  User root\n  IdentityFile {fleet.client_key}\n"
    )
    before = logins(jump)
    with open_connector(Host("behind", {}, ("all",)), options(fleet, ssh_config=cfg)) as c:
        assert c.run("cat /sys/devices/system/node/online").stdout == "0,8,252-255\n"
    assert logins(jump) == before + 1


@pytest.mark.parametrize("spec,hops", [
    ("bastion", [(None, "bastion", None)]),
    ("ops@bastion:2222,inner", [("ops", "bastion", 2222), (None, "inner", None)]),
    ("ssh://a@[::1]:22", [("a", "::1", 22)]),
])
def test_parse_jump(spec, hops):
    assert parse_jump(spec) == hops


@pytest.mark.parametrize("spec", ["host:port", "a,,b"])
def test_parse_jump_refuses_nonsense(spec):
    with pytest.raises(ConnectError):
        parse_jump(spec)
