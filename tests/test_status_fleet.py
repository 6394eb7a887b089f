"""`status` over SSH on the sshd test fleet: drift from an edited unit file and from a
changed inventory, provenance from the inventory's git commit, an unreachable host, and
the metrics file checked by promtool.

systemd is not PID 1 on the fleet's hosts, so nothing keeps a server running there:
status must say so (health "not asked", no placement) without calling it a failure.
Live placement is tested in the lab (tests/lab/test_service_apply.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from coffers_provision import __version__
from coffers_provision.schema import problems

from .promtool import check_metrics
from .test_apply_fleet import REPO, apply, prepare


def run_status(fleet, tmp: Path, inv: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "coffers_provision", "status", str(inv), "--known-hosts", str(fleet.known_hosts),
         "--facts-dir", str(tmp / "facts"), "--play", str(tmp / "roles" / "site.yml"), *flags],
        capture_output=True, text=True, timeout=300, cwd=tmp,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "PYTHONPATH": str(REPO), "COLUMNS": "200"},
    )


def status(fleet, tmp: Path, inv: Path, *flags: str) -> tuple[int, dict, str]:
    proc = run_status(fleet, tmp, inv, "--json", *flags)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"rc {proc.returncode}: {proc.stdout}\n{proc.stderr}") from None
    assert problems("status", doc) == [], problems("status", doc)  # schemas/status.schema.json
    return proc.returncode, doc["hosts"], proc.stderr


def git(tmp: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", "-C", str(tmp), *args], capture_output=True, text=True, check=True, env=env).stdout.strip()


@pytest.mark.fleet
def test_status_sees_drift_provenance_and_unreachable_hosts(fleet, tmp_path):
    hosts = fleet.hosts[:2]
    inv = prepare(fleet, tmp_path, hosts=hosts)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", inv.name)
    git(tmp_path, "commit", "-q", "-m", "inventory")
    commit = git(tmp_path, "rev-parse", "HEAD")
    rc, recap = apply(fleet, tmp_path, inv)
    assert rc == 0, json.dumps(recap, indent=1)[:3000]

    rc, docs, err = status(fleet, tmp_path, inv, "--metrics-dir", str(tmp_path / "metrics"))
    assert rc == 0, (docs, err)
    for h in hosts:
        doc = docs[h.name]
        assert doc["ok"] and not doc["drift"]["drifted"] and doc["drift"]["deployed"] == doc["drift"]["planned"], doc
        assert doc["systemd"] is False
        assert [i["health"]["ok"] for i in doc["instances"]] == [None], doc["instances"]  # nothing runs without systemd
        assert all(i["placement"] is None for i in doc["instances"])
        prov = doc["provenance"]
        assert prov["tool"]["version"] == __version__
        assert prov["inventory"]["commit"] == commit and prov["inventory"]["dirty"] is False, prov
        assert [n["node"] for n in doc["kernel"]["nodes"]] == sorted(n.id for n in h.topology.nodes), doc["kernel"]

    text = check_metrics(tmp_path / "metrics" / "coffers_status.prom")
    for h in hosts:
        assert f'coffers_status_drift{{host="{h.name}"}} 0.0' in text, text

    text = run_status(fleet, tmp_path, inv)
    assert text.returncode == 0 and text.stdout.count(": as planned, strategy") == len(hosts), text.stdout + text.stderr
    assert f"deployed by coffers-provision {__version__}; decided by no measurements; inventory commit {commit[:12]}" in text.stdout, text.stdout

    # an edited unit file on one host: that host drifts, the other does not
    unit = hosts[0].upper("/etc/systemd/system/coffers-llama.service")
    original = unit.read_text()
    unit.write_text(original.replace("Restart=on-failure", "Restart=always"))
    rc, docs, _ = status(fleet, tmp_path, inv)
    assert rc == 3, docs
    assert docs[hosts[0].name]["drift"]["unit_files"] == ["/etc/systemd/system/coffers-llama.service"], docs[hosts[0].name]
    assert docs[hosts[0].name]["drift"]["diff"] == [] and not docs[hosts[0].name]["ok"]
    assert docs[hosts[1].name]["ok"], docs[hosts[1].name]
    unit.write_text(original)

    # a changed inventory: every host's description differs from what it runs
    inv = prepare(fleet, tmp_path, hosts=hosts, context_length=1024)
    rc, docs, _ = status(fleet, tmp_path, inv)
    assert rc == 3, docs
    for h in hosts:
        d = docs[h.name]["drift"]
        assert d["drifted"] and d["deployed"] != d["planned"], d
        assert any(".argv" in line and "512" in line and "1024" in line for line in d["diff"]), d["diff"]
        assert d["unit_files"] == ["/etc/systemd/system/coffers-llama.service"], d  # the unit carries -c too

    # a host that does not answer: exit 4, the others still reported
    data = yaml.safe_load(inv.read_text())
    data["all"]["hosts"]["gone"] = {"ansible_host": "127.0.0.1", "ansible_port": 1}
    inv.write_text(yaml.safe_dump(data))
    (tmp_path / "facts" / "gone.json").write_text((tmp_path / "facts" / f"{hosts[0].name}.json").read_text())
    hosts[1].upper("/var/lib/coffers/deployment.json").write_text("{")  # and a damaged record on another
    rc, docs, _ = status(fleet, tmp_path, inv)
    assert rc == 4, docs
    assert "unreachable" in docs["gone"] and docs[hosts[0].name]["drift"]["drifted"]
    assert docs[hosts[1].name]["problems"][0] == "/var/lib/coffers/deployment.json: not a JSON object: apply rewrites it", docs[hosts[1].name]
