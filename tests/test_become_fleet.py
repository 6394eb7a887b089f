"""Privilege escalation on the sshd fleet: log in as an ordinary user, run through sudo.

Each fleet here has the login users `llm` (sudo asks its password) and `llmnp` (NOPASSWD)
on every host (tests/fleet/fleet.py SudoUser); `/etc` and `/home` are the host's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from coffers_provision.connect import BecomeError, CommandTimeout, ConnectOptions, open_connector
from coffers_provision.inventory import load_inventory
from tests.fleet.fleet import DEFAULT_SPECS, SudoUser
from tests.test_apply_fleet import MANAGED, REPO, changed, prepare, trees

# A password and a model path no shell string survives unquoted.
PASSWORD = "it's a \"$(touch /tmp/coffers-become-pwned)\" `id` pass;"
HOSTILE = "m $(touch /tmp/coffers-become-pwned) 'q\" x.gguf"
CANARY = "/tmp/coffers-become-pwned"
USERS = (SudoUser("llm", PASSWORD), SudoUser("llmnp", "unused pass", nopasswd=True))
SINGLE = tuple(s for s in DEFAULT_SPECS if s.short == "single")


def as_user(inv: Path, user: str, **become: object) -> Path:
    """The same inventory, logging in as `user` with `ansible_become` vars."""
    data = yaml.safe_load(inv.read_text())
    data["all"]["vars"].update({"ansible_user": user, "ansible_become": True, **become})
    inv.write_text(yaml.safe_dump(data, sort_keys=False))
    return inv


def apply_run(fleet, tmp: Path, inv: Path) -> subprocess.CompletedProcess:
    roles = tmp / "roles"
    if not roles.exists():
        import shutil

        shutil.copytree(REPO / "roles", roles)
    return subprocess.run(
        [sys.executable, "-m", "coffers_provision", "apply", str(inv), "--json", "--diff", "--known-hosts", str(fleet.known_hosts),
         "--facts-dir", str(tmp / "facts"), "--retry-file", str(tmp / "apply.retry"), "--play", str(roles / "site.yml")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def files_under(*roots: Path):
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                yield Path(dirpath) / name


@pytest.mark.fleet
def test_connector_runs_writes_and_reads_through_sudo(make_fleet):
    f = make_fleet(specs=SINGLE, users=USERS)
    h = f.hosts[0]
    inv = as_user(f.write_inventory(f.state / "b.yml"), "llm", ansible_become_password=PASSWORD)
    with open_connector(load_inventory(inv).hosts[h.name], ConnectOptions(known_hosts=f.known_hosts)) as c:
        assert c.inner.run("id -un").stdout == "llm\n"  # the login itself is not root
        assert c.run("id -un").stdout == "root\n"
        assert c.run(["cat"], stdin=b"first line\nsecond\n").stdout == "first line\nsecond\n"  # the password never reaches it
        path = "/etc/systemd/system/a b $(x).conf"
        c.put(b"\x00\xffdata\n", path, mode=0o640)
        st = c.stat(path)
        assert (st.size, st.mode, st.uid, st.gid) == (7, 0o640, 0, 0)
        assert c.read(path) == b"\x00\xffdata\n" and c.read(path, 2, 3) == b"dat"
        assert c.read("/etc/shadow", 0, 5) == b"root:"  # only root may read it
        assert c.stat("/root/.no-such-file") is None
        with pytest.raises(FileNotFoundError):
            c.read("/root/.no-such-file")
        # the host's timeout runs inside sudo, so it can stop a root command
        with pytest.raises(CommandTimeout, match="sleep 37.5$"):
            c.run("sleep 37.5", timeout=1)
        deadline = time.monotonic() + 30
        while h.run_inside("pgrep -f '^sleep 37.5$'").returncode == 0:
            assert time.monotonic() < deadline, "the timed-out command still runs as root"
            time.sleep(0.2)
    out = h.run_inside(f"stat -c '%U %a' {path!r}; ls -a /etc/systemd/system")
    assert out.stdout.startswith("root 640\n") and ".coffers-" not in out.stdout
    assert not Path(CANARY).exists() and not h.inside(CANARY).exists()


@pytest.mark.fleet
def test_wrong_or_missing_become_password_is_one_line(make_fleet):
    f = make_fleet(specs=SINGLE, users=USERS)
    h = f.hosts[0]
    for become, needle in (({"ansible_become_password": "not it"}, "become password rejected"),
                           ({}, "set ansible_become_password")):  # fmt: skip
        inv = as_user(f.write_inventory(f.state / "b.yml"), "llm", **become)
        with pytest.raises(BecomeError, match=needle) as e:
            open_connector(load_inventory(inv).hosts[h.name], ConnectOptions(known_hosts=f.known_hosts))
        assert str(e.value).startswith(f"{h.name}: ") and "\n" not in str(e.value)
    # NOPASSWD: no password needed, none sent
    inv = as_user(f.write_inventory(f.state / "b.yml"), "llmnp")
    with open_connector(load_inventory(inv).hosts[h.name], ConnectOptions(known_hosts=f.known_hosts)) as c:
        assert c.run(["cat"], stdin=b"x\n").stdout == "x\n" and c.run("id -u").stdout == "0\n"


@pytest.mark.fleet
def test_apply_as_ordinary_user_through_sudo(make_fleet, tmp_path):
    f = make_fleet(specs=SINGLE, users=USERS)
    h = f.hosts[0]
    inv = as_user(prepare(f, tmp_path, hosts=[h], model=f"/var/lib/coffers/models/{HOSTILE}", service={"port": 18080}),
                  "llm", ansible_become_password=PASSWORD)  # fmt: skip
    first = apply_run(f, tmp_path, inv)
    doc = json.loads(first.stdout)
    assert first.returncode == 0, first.stdout[:3000] + first.stderr
    assert doc["hosts"][h.name]["changed"] > 0 and doc["hosts"][h.name]["failed"] == 0
    # written as root: owned by root, and the login user could not have written there
    for top in MANAGED:
        for p in files_under(h.upper(top)):
            assert p.stat().st_uid == 0 and p.stat().st_gid == 0, p
    assert os.access(h.upper("/usr/local/bin/numa-shard-place"), os.X_OK)
    assert h.upper(f"/var/lib/coffers/models/{HOSTILE}").read_bytes()[:4] == b"GGUF"
    unit = h.upper("/etc/systemd/system/coffers-llama.service").read_text()
    assert '"--port" "18080"' in unit and HOSTILE.replace("$", "$$") in unit.replace("\\", "")
    assert not Path(CANARY).exists() and not h.inside(CANARY).exists()
    # the password is in no output and no file the run wrote, here or on the host
    before = trees([h])
    second = apply_run(f, tmp_path, inv)
    assert second.returncode == 0 and json.loads(second.stdout)["hosts"][h.name]["changed"] == 0
    assert changed(json.loads(second.stdout), h.name) == set() and trees([h]) == before
    for run in (first, second):
        assert PASSWORD not in run.stdout and PASSWORD not in run.stderr
    for p in files_under(tmp_path / "facts", *(h.upper(t) for t in MANAGED), h.state / "overlay" / "home", h.state / "overlay" / "etc"):
        assert PASSWORD.encode() not in p.read_bytes(), p


@pytest.mark.fleet
def test_apply_with_a_wrong_become_password_fails_the_host_and_changes_nothing(make_fleet, tmp_path):
    f = make_fleet(specs=SINGLE, users=USERS)
    h = f.hosts[0]
    inv = as_user(prepare(f, tmp_path, hosts=[h]), "llm", ansible_become_password="wrong $(pass)")
    before = trees([h])
    run = apply_run(f, tmp_path, inv)
    doc = json.loads(run.stdout)
    assert run.returncode == 3 and doc["hosts"][h.name]["failed"] == 1, run.stdout
    error = doc["hosts"][h.name]["error"]
    assert "become password" in error and h.name in error and "\n" not in error
    assert "wrong $(pass)" not in run.stdout + run.stderr
    assert trees([h]) == before
    assert (tmp_path / "apply.retry").read_text() == f"{h.name}\n"
