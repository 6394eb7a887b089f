"""`validate`: every error reported, each as the exact FILE:LINE:COL: json.path: message."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coffers_provision.inventory import InventoryError, load_inventory

from .conftest import SPEC

CASES = json.loads((SPEC / "invalid_inventories.json").read_text())


def materialise(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "inventory.yml"


def test_at_least_fifteen_kinds():
    assert len(CASES) >= 15


@pytest.mark.parametrize("name", sorted(CASES))
def test_invalid_inventory_exact_messages(name, tmp_path):
    case = CASES[name]
    path = materialise(tmp_path, case["files"])
    with pytest.raises(InventoryError) as e:
        load_inventory(path)
    got = [str(d).replace(f"{tmp_path}/", "") for d in e.value.diagnostics]
    assert got == case["errors"]


def run_validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coffers_provision", "validate", str(path)], capture_output=True, text=True)


def test_cli_prints_every_error_and_exits_1(tmp_path):
    path = materialise(tmp_path, CASES["every-error"]["files"])
    proc = run_validate(path)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[:-1] == [e.replace("inventory.yml", str(path)) for e in CASES["every-error"]["errors"]]
    assert lines[-1] == "3 error(s)"


def test_cli_clean_inventory_exits_0(repo_root):
    proc = run_validate(repo_root / "inventories" / "example.yml")
    assert proc.returncode == 0, proc.stderr
    assert "valid, 14 host(s)" in proc.stdout


def test_cli_missing_file(tmp_path):
    proc = run_validate(tmp_path / "nope.yml")
    assert proc.returncode == 1
    assert f"{tmp_path}/nope.yml:1:1: $: cannot read: No such file or directory" in proc.stderr


def test_orphan_vars_file_is_a_warning(tmp_path):
    path = materialise(tmp_path, {"inventory.yml": "all:\n  hosts: {a: }\n", "group_vars/webz.yml": "x: 1\n"})
    proc = run_validate(path)
    assert proc.returncode == 0
    assert "group_vars/webz.yml:1:1: $: not used: no group named 'webz' in this inventory (warning)" in proc.stderr


def test_cli_usage_error_exits_2():
    proc = subprocess.run([sys.executable, "-m", "coffers_provision", "validate"], capture_output=True, text=True)
    assert proc.returncode == 2 and "required" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "coffers_provision", "frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2


def test_missing_key_file_is_a_warning_naming_the_var(tmp_path):
    path = materialise(tmp_path, {"inventory.yml": "all:\n  hosts:\n    a:\n      ansible_ssh_private_key_file: keys/missing\n"})
    inv = load_inventory(path)
    assert [str(w).replace(f"{tmp_path}/", "") for w in inv.warnings] == [
        f"inventory.yml:4:37: $.all.hosts.a.ansible_ssh_private_key_file: host a: ansible_ssh_private_key_file: key file 'keys/missing' does not exist (resolved to keys/missing)"
    ]
    proc = run_validate(path)
    assert proc.returncode == 0 and "does not exist" in proc.stderr and "(warning)" in proc.stderr


def _validate_in(cache: Path, inventory: Path) -> tuple[subprocess.CompletedProcess, bool]:
    """Run validate with its own cache; also say whether it imported jsonschema."""
    code = ("import sys, runpy; sys.argv = ['coffers-provision', 'validate', sys.argv[1]]\n"
            "try:\n    runpy.run_module('coffers_provision', run_name='__main__')\n"
            "finally:\n    print('jsonschema' in sys.modules, file=sys.stderr)")
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(cache)}
    r = subprocess.run([sys.executable, "-c", code, str(inventory)], capture_output=True, text=True, env=env)
    return r, r.stderr.strip().splitlines()[-1] == "True"


def test_a_valid_inventory_is_checked_once_then_known_valid(tmp_path):
    """schema.py remembers passes by the hash of schema and document: the second validate of
    an unchanged inventory never imports jsonschema; a changed one is checked again."""
    inv = tmp_path / "inventory.yml"
    inv.write_text("all:\n  hosts:\n    a:\n      coffers: {strategy: shard}\n")
    first, imported = _validate_in(tmp_path / "cache", inv)
    assert first.returncode == 0 and imported
    second, imported = _validate_in(tmp_path / "cache", inv)
    assert second.returncode == 0 and not imported and second.stdout == first.stdout
    inv.write_text(inv.read_text().replace("shard", "replicate"))
    third, imported = _validate_in(tmp_path / "cache", inv)
    assert third.returncode == 0 and imported


def test_a_failing_inventory_is_never_remembered(tmp_path):
    inv = tmp_path / "inventory.yml"
    inv.write_text("all:\n  hosts:\n    a:\n      coffers: {strategy: fastest}\n")
    for _ in range(2):
        r, imported = _validate_in(tmp_path / "cache", inv)
        assert r.returncode == 1 and imported
        assert "inventory.yml:4:" in r.stderr and "fastest" in r.stderr
