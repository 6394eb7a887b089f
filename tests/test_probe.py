"""`coffers-provision probe` on the sshd fleet: every fact against what each host presents."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from coffers_provision.inventory import load_inventory

from coffers_provision.cli import main
from coffers_provision.facts.probe import validate
from coffers_provision.status import ExitStatus
from coffers_provision.topology import parse_cpulist


def probe(capsys, fleet, tmp_path, *extra: str, inventory: Path | None = None) -> tuple[int, dict | str, str]:
    argv = ["probe", str(inventory or fleet.inventory), "--known-hosts", str(fleet.known_hosts), "--facts-dir", str(tmp_path / "facts"), *extra]
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if "--json" in extra else out), err


def by_host(doc: dict) -> dict[str, dict]:
    return {h["host"]: h for h in doc["hosts"]}


def test_every_fact_of_every_host_is_what_the_host_presents(fleet, tmp_path, capsys):
    rc, doc, _ = probe(capsys, fleet, tmp_path, "--json")
    assert rc == ExitStatus.SUCCESS
    hosts = by_host(doc)
    assert list(hosts) == list(load_inventory(fleet.inventory).hosts) and doc["summary"] == {"ok": 5, "failed": 0, "unreachable": 0}
    fingerprints = set()
    for fh in fleet.hosts:
        entry = hosts[fh.name]
        facts = entry["facts"]
        assert (entry["status"], entry["cached"]) == ("ok", False)
        assert validate(facts) == []
        # topology: the fixture, read through numactl, or through sysfs where numactl is absent
        topo = facts["topology"]
        assert {k: topo[k] for k in ("numa_available", "nodes", "distances")} == fh.topology.to_json()
        assert topo["source"] == ("numactl" if fh.spec.numactl else "sysfs")
        # CPU: the host's sysfs CPU tree and /proc/cpuinfo
        cpu = facts["cpu"]
        assert cpu["model"] == fh.spec.model
        assert cpu["online"] == fh.layout.cpus == parse_cpulist(fh.run_inside("cat /sys/devices/system/cpu/online").stdout)
        assert (cpu["sockets"], cpu["threads_per_core"]) == (fh.spec.sockets, fh.spec.threads_per_core)
        assert cpu["cores"] == len(fh.layout.cpus) // fh.spec.threads_per_core
        assert cpu["thread_siblings"] == [list(s) for s in fh.layout.sibling_sets]
        assert cpu["llc"]["size_kb"] == fh.spec.llc_kb and cpu["llc"]["level"] == 3
        assert cpu["architecture"] == fh.run_inside("uname -m").stdout.strip()
        # kernel, systemd, toolchain, disk: the machine's own, read inside the host's namespace
        system = facts["system"]
        assert system["kernel_release"] == fh.run_inside("uname -r").stdout.strip()
        nb = fh.run_inside("cat /proc/sys/kernel/numa_balancing 2>/dev/null").stdout.strip()
        assert system["numa_balancing"] == (int(nb) if nb else None)
        thp = fh.run_inside("cat /sys/kernel/mm/transparent_hugepage/enabled").stdout
        assert f"[{system['thp']['enabled']}]" in thp
        hp = fh.run_inside("grep HugePages_Total /proc/meminfo").stdout.split()
        assert system["hugepages"]["total"] == int(hp[1])
        pid1 = fh.run_inside("cat /proc/1/comm").stdout.strip()
        assert facts["systemd"]["pid1"] == pid1 and facts["systemd"]["is_pid1"] == (pid1 == "systemd")
        version = re.match(r"systemd (\d+)", fh.run_inside("systemctl --version").stdout)
        assert facts["systemd"]["version"] == (int(version.group(1)) if version else None)
        assert facts["toolchain"]["gcc"] == (fh.run_inside("gcc -dumpfullversion").stdout.strip() or None)
        assert facts["toolchain"]["libnuma_headers"] == fh.inside("/usr/include/numa.h").exists()
        assert (facts["disk"]["prefix"], facts["disk"]["path"]) == ("/usr/local", "/usr/local")
        assert facts["hardware"]["cpu_model"] == fh.spec.model
        fingerprints.add(facts["hardware"]["fingerprint"])
        # the cache file is the same document
        assert json.loads((tmp_path / "facts" / f"{fh.name}.json").read_text()) == facts
    assert len(fingerprints) == len(fleet.hosts)


def test_a_fresh_cache_is_reused_without_logging_in_and_refresh_probes(fleet, tmp_path, capsys):
    assert probe(capsys, fleet, tmp_path, "--json", "--limit", "p9")[0] == 0
    p9 = fleet.host("p9")
    logins = p9.log.read_text().count("Accepted publickey")
    rc, doc, _ = probe(capsys, fleet, tmp_path, "--json", "--limit", "p9")
    assert rc == 0 and doc["hosts"][0]["cached"] is True
    assert p9.log.read_text().count("Accepted publickey") == logins
    rc, doc, _ = probe(capsys, fleet, tmp_path, "--json", "--limit", "p9", "--refresh")
    assert rc == 0 and doc["hosts"][0]["cached"] is False
    assert p9.log.read_text().count("Accepted publickey") == logins + 1


def test_a_stopped_host_is_unreachable_while_the_others_succeed(make_fleet, tmp_path, capsys):
    f = make_fleet(3)
    f.stop_host(f.hosts[1])
    rc, doc, err = probe(capsys, f, tmp_path, "--json")
    assert rc == ExitStatus.HOSTS_UNREACHABLE
    hosts = by_host(doc)
    assert [hosts[h.name]["status"] for h in f.hosts] == ["ok", "unreachable", "ok"]
    assert "connection refused" in hosts[f.hosts[1].name]["error"]
    assert hosts[f.hosts[2].name]["facts"]["topology"]["nodes"][0]["id"] == f.hosts[2].topology.nodes[0].id
    assert doc["summary"] == {"ok": 2, "failed": 0, "unreachable": 1}
    assert f"{f.hosts[1].name}: unreachable" in err


def test_terminal_table_names_nodes_memory_cpus_arch(fleet, tmp_path, capsys):
    rc, out, _ = probe(capsys, fleet, tmp_path, "--limit", "p9,single")
    assert rc == 0
    for word in ("host", "nodes", "memory per node", "CPUs", "arch", "252:32G", "0:16G", "x86_64"):
        assert word in out
    assert "2 ok, 0 failed, 0 unreachable" in out


@pytest.mark.parametrize("pattern,expected", [
    ("multinode:!arm", ["p9", "epyc", "cxl"]),
    ("single,kunpeng", ["kunpeng", "single"]),  # inventory order, whatever the pattern's
    ("x86:&multinode", ["epyc", "cxl"]),
    ("~^(p9|cx.)$", ["p9", "cxl"]),
    ("e*", ["epyc"]),
])
def test_limit_patterns(fleet, tmp_path, capsys, pattern, expected):
    rc, doc, _ = probe(capsys, fleet, tmp_path, "--json", "--limit", pattern)
    assert rc == 0 and [h["host"] for h in doc["hosts"]] == expected


def test_a_limit_matching_nothing_is_a_usage_error(fleet, tmp_path, capsys):
    rc, out, err = probe(capsys, fleet, tmp_path, "--limit", "nosuchhost")
    assert rc == ExitStatus.USAGE and "nosuchhost" in err
    assert not (tmp_path / "facts").exists()


def test_a_bad_inventory_names_file_line_and_field(fleet, tmp_path, capsys):
    bad = tmp_path / "bad.yml"
    bad.write_text("all:\n  hosts:\n    h1:\n      ansible_port: not-a-port\n")
    rc, _, err = probe(capsys, fleet, tmp_path, inventory=bad)
    assert rc == ExitStatus.ERROR
    assert re.search(rf"{re.escape(str(bad))}:4:\d+: .*ansible_port", err)


def test_shell_metacharacters_in_a_var_reach_the_host_quoted(fleet, tmp_path, capsys):
    marker = Path(f"/tmp/coffers-injected-{uuid.uuid4().hex}")
    evil = f"/opt/it's $(touch {marker}) `touch {marker}`; touch {marker} #"
    inv = fleet.write_inventory(tmp_path / "inventory.yml", hosts=[fleet.host("single")], coffers={"prefix": evil})
    rc, doc, _ = probe(capsys, fleet, tmp_path, "--json", inventory=inv)
    assert rc == 0, doc
    disk = doc["hosts"][0]["facts"]["disk"]
    assert disk["prefix"] == evil and disk["path"] == "/opt"
    assert not marker.exists()


def test_tofu_on_the_command_line_then_strict_then_a_changed_key(make_fleet, tmp_path, capsys):
    f = make_fleet(2)
    kh = tmp_path / "tool_known_hosts"
    base = ["probe", str(f.inventory), "--known-hosts", str(kh), "--facts-dir", str(tmp_path / "facts"), "--json", "--refresh"]
    assert main(base) == ExitStatus.HOSTS_UNREACHABLE  # strict: unknown keys refused
    doc = json.loads(capsys.readouterr().out)
    assert all("unknown host key" in h["error"] and "SHA256:" in h["error"] for h in doc["hosts"])
    assert main(base + ["--accept-new-host-keys"]) == ExitStatus.SUCCESS
    capsys.readouterr()
    assert sorted(kh.read_text().splitlines()) == sorted(h.known_hosts_line().strip() for h in f.hosts)
    assert main(base) == ExitStatus.SUCCESS
    capsys.readouterr()
    f.rekey(f.hosts[0])
    assert main(base + ["--accept-new-host-keys"]) == ExitStatus.HOSTS_UNREACHABLE
    hosts = by_host(json.loads(capsys.readouterr().out))
    assert "HOST KEY CHANGED" in hosts[f.hosts[0].name]["error"]
    assert hosts[f.hosts[1].name]["status"] == "ok"


def test_bad_forks_is_a_usage_error(fleet, tmp_path, capsys):
    assert probe(capsys, fleet, tmp_path, "--forks", "0")[0] == ExitStatus.USAGE
