"""Fact parsers against captured texts (tests/spec/facts/), and the probe script run locally."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
from pathlib import Path

import pytest

from coffers_provision.connect.local import LocalConnector
from coffers_provision.facts.cache import load_or_probe, read_fresh, save
from coffers_provision.facts.cpu import FactError
from coffers_provision.facts.probe import FACTS, TOPOLOGY_FACTS, ProbeError, assemble, probe, probe_script, split_sections, validate
from coffers_provision.inventory import Host
from coffers_provision.topology import TopologyError, parse_cpulist

SPEC = Path(__file__).parent / "spec" / "facts"
PARSERS = {f.name: f.parse for f in FACTS} | {"sysfs_node": lambda t: TOPOLOGY_FACTS["sysfs_node"](t).to_json()}
CASES = [
    pytest.param(doc["fact"], case, id=f"{doc['fact']}: {case['name']}")
    for path in sorted(SPEC.glob("*.json"))
    for doc in [json.loads(path.read_text())]
    for case in doc["cases"]
]


def test_every_fact_has_spec_cases():
    assert {p.stem for p in SPEC.glob("*.json")} == set(PARSERS)


@pytest.mark.parametrize("fact,case", CASES)
def test_spec(fact, case):
    parse = PARSERS[fact]
    if "error" in case:
        with pytest.raises((FactError, TopologyError, ValueError)) as e:
            parse(case["input"])
        assert case["error"] in str(e.value)
    else:
        assert parse(case["input"]) == case["expected"]


def _sections_from_spec() -> dict[str, str]:
    """One valid text per fact (the first non-error spec case) plus a numactl topology."""
    sections = {}
    for path in SPEC.glob("*.json"):
        doc = json.loads(path.read_text())
        sections[doc["fact"]] = next(c["input"] for c in doc["cases"] if "error" not in c)
    sections.pop("sysfs_node")
    fixture = Path(__file__).parent / "fixtures" / "numactl" / "power9-ac922-6node-gpu-memory-nodes.txt"
    sections["numactl"] = fixture.read_text()
    return sections


def test_assemble_builds_a_schema_valid_document():
    facts = assemble(_sections_from_spec(), host="h1", prefix="/opt/coffers", now=1_700_000_000)
    assert validate(facts) == []
    assert facts["probed_at"] == "2023-11-14T22:13:20+00:00"
    assert [n["id"] for n in facts["topology"]["nodes"]] == [0, 8, 252, 253, 254, 255]
    assert facts["topology"]["source"] == "numactl"
    assert facts["hardware"]["topology_hash"] != facts["hardware"]["fingerprint"]


def test_fingerprint_changes_with_the_hardware_not_with_free_memory():
    base = _sections_from_spec()
    a = assemble(base, host="h", prefix="/p", now=1)["hardware"]["fingerprint"]
    freer = dict(base, numactl=base["numactl"].replace("free: 239932 MB", "free: 100 MB"))
    assert assemble(freer, host="h", prefix="/p", now=2)["hardware"]["fingerprint"] == a
    other_serial = dict(base, dmi="sys_vendor=X\nproduct_name=Y\nproduct_serial=Z\n")
    assert assemble(other_serial, host="h", prefix="/p", now=1)["hardware"]["fingerprint"] != a


def test_a_missing_section_and_a_bad_fact_are_named():
    sections = _sections_from_spec()
    with pytest.raises(ProbeError, match="no 'gcc' section"):
        assemble({k: v for k, v in sections.items() if k != "gcc"}, host="h1", prefix="/p")
    with pytest.raises(ProbeError, match="h1: fact thp: no \\[selected\\] mode"):
        assemble(dict(sections, thp="/sys/kernel/mm/transparent_hugepage/enabled:always never\n"), host="h1", prefix="/p")
    with pytest.raises(ProbeError, match="h1: numactl: numactl --hardware:1: expected 'available"):
        assemble(dict(sections, numactl="garbage\n"), host="h1", prefix="/p")


def test_split_sections_keeps_text_between_markers():
    out = "noise\n@@coffers-fact a\nx\ny\n\n@@coffers-fact b\n\n@@coffers-fact c\nz"
    assert split_sections(out) == {"a": "x\ny\n", "b": "", "c": "z\n"}


def test_the_prefix_is_quoted_in_the_script():
    evil = "/opt/x'; touch /tmp/pwned; echo '"
    script = probe_script(evil)
    assert f"COFFERS_PREFIX={shlex.quote(evil)}" in script


def test_probe_this_machine_matches_what_it_presents(tmp_path):
    """The whole script through the local connector, each fact checked against an independent read."""
    facts = probe(LocalConnector(), "local", prefix=str(tmp_path / "not" / "yet"))
    assert validate(facts) == []
    assert facts["cpu"]["architecture"] == platform.machine()
    assert facts["system"]["kernel_release"] == platform.release()
    assert facts["cpu"]["online"] == parse_cpulist(Path("/sys/devices/system/cpu/online").read_text())
    gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip() or None
    assert facts["toolchain"]["gcc"] == gcc
    assert facts["toolchain"]["libnuma_headers"] == Path("/usr/include/numa.h").exists()
    assert facts["disk"]["path"] == str(tmp_path)
    st = os.statvfs(tmp_path)
    assert abs(facts["disk"]["free_bytes"] - st.f_bavail * st.f_frsize) < 256 * 2**20
    nb = Path("/proc/sys/kernel/numa_balancing")
    assert facts["system"]["numa_balancing"] == (int(nb.read_text()) if nb.exists() else None)
    assert facts["systemd"]["pid1"] == Path("/proc/1/comm").read_text().strip()


def _host(tmp_path, **coffers) -> Host:
    return Host("local", {"ansible_connection": "local", "coffers": coffers}, ("all",), tmp_path)


class _Counting(LocalConnector):
    def __init__(self):
        super().__init__("local")
        self.runs = 0

    def run(self, command, **kw):
        self.runs += 1
        return super().run(command, **kw)


def test_cache_is_reused_while_fresh_and_refresh_forces_a_probe(tmp_path):
    host = _host(tmp_path / "inv")
    conn = _Counting()
    facts, cached = load_or_probe(host, conn, facts_dir=tmp_path)
    assert (cached, conn.runs) == (False, 1)
    assert json.loads((tmp_path / "local.json").read_text())["connection"] == {"address": "local", "port": None, "connection": "local"}
    again, cached = load_or_probe(host, conn, facts_dir=tmp_path)
    assert (cached, conn.runs, again) == (True, 1, facts)
    _, cached = load_or_probe(host, conn, facts_dir=tmp_path, refresh=True)
    assert (cached, conn.runs) == (False, 2)


def test_cache_goes_stale_with_age_address_prefix_or_corruption(tmp_path):
    host = _host(tmp_path, facts_max_age_s=60)
    facts, _ = load_or_probe(host, LocalConnector(), facts_dir=tmp_path)
    now = facts["probed_at_epoch"]
    assert read_fresh(tmp_path, host, now=now + 59) is not None
    assert read_fresh(tmp_path, host, now=now + 61) is None
    moved = Host("local", {"ansible_connection": "local", "ansible_host": "10.0.0.9", "coffers": {"facts_max_age_s": 60}}, ("all",))
    assert read_fresh(tmp_path, moved, now=now) is None
    assert read_fresh(tmp_path, _host(tmp_path, facts_max_age_s=60, prefix="/srv/c"), now=now) is None
    save(tmp_path, dict(facts, cpu="broken"))
    assert read_fresh(tmp_path, host, now=now) is None
    (tmp_path / "local.json").write_text("{not json")
    assert read_fresh(tmp_path, host, now=now) is None


def test_topology_fingerprint_survives_a_reboot_that_moves_node_sizes():
    """Seen in the 4-node lab guest: one reboot moved node 0 from 458 to 502 MB and node 1
    from 377 to 333 MB. That must not change the fingerprint the units carry."""
    from coffers_provision.facts.numa import parse_numactl

    def text(sizes: list[int]) -> str:
        lines = [f"available: {len(sizes)} nodes (0-{len(sizes) - 1})"]
        for i, mb in enumerate(sizes):
            lines += [f"node {i} cpus: {i}", f"node {i} size: {mb} MB", f"node {i} free: {mb // 2} MB"]
        lines += ["node distances:", "node " + " ".join(f"{i:3}" for i in range(len(sizes)))]
        lines += [f"  {i}: " + " ".join(f"{10 if i == j else 20:3}" for j in range(len(sizes))) for i in range(len(sizes))]
        return "\n".join(lines) + "\n"

    before = parse_numactl(text([458, 377, 256, 256])).fingerprint()
    assert parse_numactl(text([502, 333, 250, 251])).fingerprint() == before
    assert parse_numactl(text([502, 333, 250, 2048])).fingerprint() != before  # a GiB more is other hardware
