"""`inventory list`: the ansible-inventory shapes, through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent
CORPUS = ROOT / "fixtures" / "inventories"
PINNED = ROOT / "spec" / "inventories"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coffers_provision", "inventory", "list", *args], capture_output=True, text=True)


def test_list_with_two_sources_given_as_positional_and_dash_i():
    first, second = CORPUS / "probes/two-sources/first/hosts.ini", CORPUS / "probes/two-sources/second/hosts.yml"
    proc = cli(str(first), "-i", str(second))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads((PINNED / "probes/two-sources.list.json").read_text())


def test_graph_host_and_yaml_of_a_directory():
    src = str(CORPUS / "probes/directory")
    graph = cli(src, "--graph")
    assert graph.stdout == (PINNED / "probes/directory.graph.txt").read_text()
    host = cli(src, "--host", "w1")
    assert json.loads(host.stdout) == {"from": "yaml", "web_file": True}
    shaped = yaml.safe_load(cli(src, "--yaml").stdout)
    assert shaped == yaml.safe_load((PINNED / "probes/directory.list.yaml").read_text())


def test_vault_values_stay_encrypted_in_the_listing(tmp_path):
    case = CORPUS / "probes/vault"
    proc = cli(str(case / "inventory.yml"), "--vault-password-file", str(case / "vault-password"))
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert listed == json.loads((PINNED / "probes/vault.list.json").read_text())
    assert "__ansible_vault" in listed["_meta"]["hostvars"]["v1"]["ansible_become_password"]


def test_errors_are_one_line_each_and_exit_1(tmp_path):
    bad = tmp_path / "hosts"
    bad.write_text("[web]\nw[1:x]\n")
    proc = cli(str(bad))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{bad}:2:1: $: host range [1:x]")
    missing = cli(str(tmp_path / "nope"))
    assert missing.returncode == 1 and missing.stderr.strip().endswith("cannot read: No such file or directory")
    assert cli("--host", "x").returncode == 2
