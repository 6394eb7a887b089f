"""The exported Ansible project on this machine (ansible_connection: local) with a real
llama-server: it converges the host and the server answers (the same health wait and
completion as `apply`; systemd is not PID 1 here, so the unit's exact command runs
transiently), a second playbook changes nothing and starts nothing, and `apply` afterwards
changes nothing. The managed trees live under a temp root, as in tests/test_apply.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .test_ansible import export
from .test_ansible_fleet import RECAP
from .test_apply import apply, apply_cmd, env, inventory
from .test_serving import free_port, serving


def local_inventory(tmp: Path, server: Path) -> Path:
    inv = inventory(tmp, llama_server=str(server), service={"verify": True, "host": "127.0.0.1", "port": free_port()})
    doc = yaml.safe_load(inv.read_text())
    doc["all"]["hosts"]["localhost"]["ansible_python_interpreter"] = "/usr/bin/python3"
    inv.write_text(yaml.safe_dump(doc))
    return inv


def playbook(tmp: Path, inv: Path) -> tuple[int, dict[str, int], str]:
    project = tmp / "project"
    if not project.exists():
        proc = export(inv, project)
        assert proc.returncode == 0, proc.stderr
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run([str(bin_dir / "ansible-playbook"), "-i", str(inv), "site.yml", "-v"], cwd=project,
                          env={**env(tmp), "ANSIBLE_NOCOLOR": "1", "PATH": f"{bin_dir}:{env(tmp)['PATH']}"},
                          capture_output=True, text=True, timeout=900)
    recap = {m[0]: int(m[2]) for m in RECAP.findall(proc.stdout)}
    return proc.returncode, recap, proc.stdout + proc.stderr


@pytest.mark.slow
def test_ansible_converges_this_machine_the_server_answers_and_apply_agrees(tmp_path, llama_server):
    inv = local_inventory(tmp_path, llama_server)
    rc, recap, log = playbook(tmp_path, inv)
    assert rc == 0, log[-5000:]
    assert recap["localhost"] > 0
    assert "answered: prompt" in log and "tokens/s (transient run: systemd is not PID 1)" in log, log[-5000:]
    assert (tmp_path / "root/var/lib/coffers/verified.json").is_file()

    rc, recap, log = playbook(tmp_path, inv)
    assert rc == 0 and recap == {"localhost": 0}, log[-5000:]
    assert "answered: prompt" not in log  # nothing changed: the server is not started again

    rc, doc = apply(tmp_path, inv)
    assert rc == 0 and doc["hosts"]["localhost"]["changed"] == 0, doc
    assert serving(doc) == []  # apply sees the description Ansible verified as verified


@pytest.mark.slow
def test_a_server_that_does_not_come_up_fails_the_host_with_its_log(tmp_path):
    fake = tmp_path / "dies"
    fake.write_text("#!/bin/sh\necho 'cannot load the model: out of memory' >&2\nexit 1\n")
    fake.chmod(0o755)
    inv = local_inventory(tmp_path, fake)
    rc, recap, log = playbook(tmp_path, inv)
    assert rc != 0, log[-3000:]
    assert "the server exited" in log and "cannot load the model: out of memory" in log, log[-3000:]
    rc, doc = apply(tmp_path, inv)  # not recorded as verified: apply asks again, and fails as well
    assert rc == 3 and [c["status"] for c in serving(doc)] == ["failed"]


def test_a_bad_inventory_value_fails_under_ansible_with_the_tools_message(tmp_path):
    inv = local_inventory(tmp_path, Path("/bin/true"))
    assert export(inv, tmp_path / "project").returncode == 0
    doc = yaml.safe_load(inv.read_text())
    doc["all"]["hosts"]["localhost"]["coffers"]["strategy"] = "nonsense"
    inv.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(apply_cmd(tmp_path, inv), capture_output=True, text=True, env=env(tmp_path), timeout=300)
    message = proc.stderr.strip().splitlines()[0]
    assert proc.returncode == 1 and f"{inv}:" in message and "nonsense" in message, proc.stderr
    rc, recap, log = playbook(tmp_path, inv)
    assert rc != 0 and message in log, log[-3000:]
    assert not (tmp_path / "root/var/lib/coffers").exists()  # nothing was written
