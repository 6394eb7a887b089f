"""One result, either engine: the exported Ansible project (ansible-playbook, ansible-core
from PyPI) and `coffers-provision apply` on the sshd fleet (tests/fleet), hosts of
different topologies. After either engine converged a host the other changes nothing:
every byte and mode of the managed trees (files, units, build stamps, deployment.json).

As in tests/test_apply_fleet.py, llama-server is /bin/true and the server is not asked
(service.verify false): the fleet's topologies are simulated (the lab serves for real).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from coffers_provision.hostlock import LOCK
from tests.fleet.fleet import DEFAULT_SPECS

from .test_ansible import export
from .test_apply_fleet import apply, changed, prepare, trees

SPECS = tuple(s for s in DEFAULT_SPECS if s.short in ("p9", "epyc", "kunpeng"))  # shard, 8 nodes, no numactl
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def ansible_inventory(fleet, tmp: Path, **coffers) -> Path:
    """The inventory both engines read; the host's python for Ansible's modules."""
    inv = prepare(fleet, tmp, **coffers)
    doc = yaml.safe_load(inv.read_text())
    doc["all"]["vars"]["ansible_python_interpreter"] = "/usr/bin/python3"
    inv.write_text(yaml.safe_dump(doc, sort_keys=False))
    return inv


# apply's own run-time files in the state dir, not part of the deployment: its lock's guard
# file (the lock itself is gone after the run) and its model hash cache (docs/models.md)
RUNTIME = ("/coffers/lock.guard", "/coffers/model-sha256.json")  # as the overlay upper dirs name them


def deployed(hosts) -> dict[str, str]:
    """Every byte and mode of the managed trees, less apply's run-time files."""
    return {path: v for path, v in trees(hosts).items() if not path.endswith(RUNTIME)}


def ssh_args(fleet) -> str:
    """Strict host keys against the fleet's known_hosts; one SSH connection per host, reused."""
    return (f"-o UserKnownHostsFile={fleet.known_hosts} -o StrictHostKeyChecking=yes "
            f"-o ControlMaster=auto -o ControlPersist=60s -o ControlPath={fleet.state}/cp-%C")


def exported(tmp: Path, inv: Path) -> Path:
    """The project `export ansible` writes, once per test."""
    project = tmp / "project"
    if not project.exists():
        proc = export(inv, project)
        assert proc.returncode == 0, proc.stderr
    return project


def playbook_argv(fleet, tmp: Path, inv: Path, playbook_file: str, *flags: str) -> tuple[list[str], dict[str, str]]:
    """ansible-playbook's command line and environment for the fleet."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "ANSIBLE_SSH_ARGS": ssh_args(fleet)}
    return [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv), playbook_file, *flags], env


def playbook(fleet, tmp: Path, inv: Path, *flags: str) -> tuple[int, dict[str, dict[str, int]], str]:
    project = exported(tmp, inv)
    argv, env = playbook_argv(fleet, tmp, inv, "site.yml", *flags)
    proc = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=900)
    recap = {m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]), "failed": int(m[4])}
             for m in RECAP.findall(proc.stdout)}
    return proc.returncode, recap, proc.stdout + proc.stderr


def zero(fleet) -> dict[str, int]:
    return {h.name: 0 for h in fleet.hosts}


@pytest.mark.slow
def test_ansible_then_apply_changes_nothing_and_a_second_playbook_neither(make_fleet, tmp_path):
    fleet = make_fleet(specs=SPECS)
    secret = "tok-5f1d9c0a7e"  # a value the user gives the server: in the unit, never in a diff or log
    inv = ansible_inventory(fleet, tmp_path, service={"port": 18080, "environment": {"LLAMA_API_KEY": secret}})
    rc, recap, log = playbook(fleet, tmp_path, inv, "--diff")
    assert rc == 0, log[-4000:]
    assert all(recap[h.name]["changed"] > 0 and recap[h.name]["failed"] == 0 for h in fleet.hosts), recap
    assert secret not in log and "+ExecStart=" not in log and "/usr/local/include/ggml-numa-shard.h" in log
    assert all(secret in h.upper("/etc/systemd/system/coffers-llama.service").read_text() for h in fleet.hosts)
    assert not any(h.upper(f"/var/lib/coffers/{LOCK}").exists() for h in fleet.hosts)  # the lock given back
    after_ansible = deployed(fleet.hosts)
    rc, doc = apply(fleet, tmp_path, inv)
    assert rc == 0 and {h: d["changed"] for h, d in doc["hosts"].items()} == zero(fleet), json.dumps(doc)[:3000]
    assert deployed(fleet.hosts) == after_ansible
    rc, recap, log = playbook(fleet, tmp_path, inv)
    assert rc == 0 and {h: r["changed"] for h, r in recap.items()} == zero(fleet), log[-4000:]
    assert deployed(fleet.hosts) == after_ansible


@pytest.mark.slow
def test_apply_then_ansible_changes_nothing_and_a_tampered_file_is_restored_by_either(make_fleet, tmp_path):
    fleet = make_fleet(specs=SPECS)
    inv = ansible_inventory(fleet, tmp_path, service={"port": 18080})
    rc, doc = apply(fleet, tmp_path, inv)
    assert rc == 0 and all(d["changed"] > 0 for d in doc["hosts"].values())
    converged = deployed(fleet.hosts)
    rc, recap, log = playbook(fleet, tmp_path, inv)
    assert rc == 0 and {h: r["changed"] for h, r in recap.items()} == zero(fleet), log[-4000:]
    assert deployed(fleet.hosts) == converged

    # a unit edited by hand: Ansible's --check sees it (and changes nothing), apply restores it
    h = fleet.hosts[0]
    unit = h.upper("/etc/systemd/system/coffers-llama.service")
    unit.write_text(unit.read_text().replace("18080", "18081"))
    tampered = deployed(fleet.hosts)
    rc, recap, log = playbook(fleet, tmp_path, inv, "--check", "--diff")
    assert rc == 0 and recap[h.name]["changed"] > 0, log[-4000:]
    assert all(recap[o.name]["changed"] == 0 for o in fleet.hosts[1:]), recap
    assert "-ExecStart=" in log and "18081" in log
    assert deployed(fleet.hosts) == tampered
    rc, doc = apply(fleet, tmp_path, inv)
    assert rc == 0 and changed(doc, h.name) == {"coffers-llama.service"}
    assert deployed(fleet.hosts) == converged

    # the host's record edited: apply's --check sees it, ansible-playbook restores it
    record = h.upper("/var/lib/coffers/deployment.json")
    record.write_text(record.read_text().replace('"strategy"', '"strategy_"'))
    rc, doc = apply(fleet, tmp_path, inv, "--check")
    assert rc == 0 and changed(doc, h.name) == {"record the deployment this host runs"}
    rc, recap, log = playbook(fleet, tmp_path, inv)
    assert rc == 0 and recap[h.name]["changed"] > 0, log[-4000:]
    assert deployed(fleet.hosts) == converged
    rc, doc = apply(fleet, tmp_path, inv)
    assert rc == 0 and {n: d["changed"] for n, d in doc["hosts"].items()} == zero(fleet)


def test_numa_facts_on_each_host_equals_probe(fleet, tmp_path):
    inv = ansible_inventory(fleet, tmp_path)
    project = tmp_path / "project"
    assert export(inv, project).returncode == 0
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "oneline",
           "ANSIBLE_SSH_ARGS": ssh_args(fleet)}
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible"), "-i", str(inv), "all", "-m", "coffers.numa.numa_facts",
                           "-a", "host={{ inventory_hostname }}"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    got = {line.split(" | ")[0]: json.loads(line.split(" => ", 1)[1])["facts"] for line in proc.stdout.splitlines() if " => " in line}
    probe = subprocess.run([sys.executable, "-m", "coffers_provision", "probe", str(inv), "--json", "--refresh",
                            "--known-hosts", str(fleet.known_hosts), "--facts-dir", str(tmp_path / "facts")],
                           capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    want = {h["host"]: h["facts"] for h in json.loads(probe.stdout)["hosts"]}
    assert sorted(got) == sorted(want) == sorted(h.name for h in fleet.hosts)
    for name in want:
        assert stable(got[name]) == stable(want[name]), name


def stable(facts: dict) -> dict:
    """The facts without what moves between two reads (time, free memory and disk) and
    without where probe connected from (`connection`, added by probe's cache)."""
    out = {k: v for k, v in facts.items() if k not in ("probed_at", "probed_at_epoch", "connection")}
    out["topology"] = {**facts["topology"], "nodes": [{k: v for k, v in n.items() if k != "free_mb"} for n in facts["topology"]["nodes"]]}
    out["disk"] = {k: v for k, v in facts["disk"].items() if k != "free_bytes"}
    out["system"] = {**facts["system"], "hugepages": {k: v for k, v in facts["system"]["hugepages"].items() if k != "free"}}
    return out


@pytest.mark.slow
def test_the_tuning_role_under_ansible_then_apply_changes_nothing(make_fleet, tmp_path):
    """coffers.tuning under both engines: the sysctl file and the boot-time THP line byte
    for byte, the live knobs set once. The knobs are files in the host's own tree (a fleet
    host shares this machine's kernel, whose settings are never touched)."""
    fleet = make_fleet(specs=SPECS[:1])
    h = fleet.hosts[0]
    knobs = "/var/lib/coffers-knobs"
    (h.upper(f"{knobs}/proc/sys/kernel")).mkdir(parents=True)
    h.upper(f"{knobs}/proc/sys/kernel/numa_balancing").write_text("1\n")
    h.upper(f"{knobs}/thp").write_text("[always] madvise never\n")
    for d in ("sysctl.d", "tmpfiles.d"):  # as /etc has them
        h.upper(f"{knobs}/{d}").mkdir()
    inv = ansible_inventory(fleet, tmp_path, tuning={"enabled": True, "thp": "madvise"})
    doc = yaml.safe_load(inv.read_text())
    doc["all"]["vars"].update(proc_sys=f"{knobs}/proc/sys", thp_path=f"{knobs}/thp",
                              sysctl_dir=f"{knobs}/sysctl.d", tmpfiles_dir=f"{knobs}/tmpfiles.d")
    inv.write_text(yaml.safe_dump(doc, sort_keys=False))

    rc, recap, log = playbook(fleet, tmp_path, inv)
    assert rc == 0 and recap[h.name]["changed"] > 0, log[-4000:]
    assert h.upper(f"{knobs}/proc/sys/kernel/numa_balancing").read_text() == "0\n"
    assert h.upper(f"{knobs}/thp").read_text() == "madvise\n"
    assert h.upper(f"{knobs}/sysctl.d/90-coffers-numa.conf").read_text().endswith("kernel.numa_balancing = 0\n")
    assert h.upper(f"{knobs}/tmpfiles.d/coffers-thp.conf").read_text() == f"w {knobs}/thp - - - - madvise\n"
    h.upper(f"{knobs}/thp").write_text("always [madvise] never\n")  # what the kernel shows after the write
    tuned = {p: h.upper(f"{knobs}/{p}").read_bytes() for p in ("sysctl.d/90-coffers-numa.conf", "tmpfiles.d/coffers-thp.conf")}
    converged = deployed(fleet.hosts)
    rc, doc = apply(fleet, tmp_path, inv)
    assert rc == 0 and doc["hosts"][h.name]["changed"] == 0, changed(doc, h.name)
    assert deployed(fleet.hosts) == converged
    assert {p: h.upper(f"{knobs}/{p}").read_bytes() for p in tuned} == tuned
    h.upper(f"{knobs}/proc/sys/kernel/numa_balancing").write_text("1\n")  # drift: either engine sets it again
    rc, recap, log = playbook(fleet, tmp_path, inv)
    assert rc == 0 and recap[h.name]["changed"] == 1, log[-4000:]
    assert h.upper(f"{knobs}/proc/sys/kernel/numa_balancing").read_text() == "0\n"
