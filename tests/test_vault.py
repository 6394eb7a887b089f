"""Vault: envelopes as ansible-vault writes them, inline `!vault` values and encrypted vars files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from coffers_provision.inventory import InventoryError, load_inventory, secrets_of
from coffers_provision.vault import VaultError, VaultSecret, decrypt, encrypt, read_password_file

CASE = Path(__file__).resolve().parent / "fixtures" / "inventories" / "probes" / "vault"
SECRET = read_password_file(CASE / "vault-password")


def test_round_trip_and_a_wrong_password():
    text = encrypt("s3cret\n", SECRET)
    assert text.startswith("$ANSIBLE_VAULT;1.1;AES256\n") and decrypt(text, SECRET, what="x") == "s3cret\n"
    with pytest.raises(VaultError, match="does not decrypt it"):
        decrypt(text, VaultSecret(b"wrong", "test"), what="x")


def test_values_and_files_made_by_ansible_vault_decrypt():
    inv = load_inventory(CASE / "inventory.yml", vault_secret=SECRET)
    v1 = inv.hosts["v1"]
    assert v1.vars["db_password"] == "file-secret" and v1.vars["nested"] == {"token": "abc123"}
    become = v1.vars["ansible_become_password"]
    assert isinstance(become, str) and become
    assert become in secrets_of(v1) and v1.become.password == become
    assert become not in repr(v1.vars) and become not in repr(v1.settings)


def test_no_password_names_the_file_and_the_flag(tmp_path):
    with pytest.raises(InventoryError) as e:
        load_inventory(CASE / "inventory.yml")
    (line,) = e.value.lines()
    assert line.startswith(f"{CASE / 'group_vars' / 'all.yml'}:1:1:") and "--vault-password-file" in line


def test_inline_value_without_password_names_the_var(tmp_path):
    (tmp_path / "inventory.yml").write_text((CASE / "inventory.yml").read_text())
    inv = load_inventory(tmp_path / "inventory.yml", check_connections=False)
    assert inv.hosts["v1"].vars["plain"] == "visible"
    with pytest.raises(InventoryError) as e:
        inv.hosts["v1"].vars["ansible_become_password"]
    (line,) = e.value.lines()
    assert line.startswith(f"{tmp_path / 'inventory.yml'}:7:7: $.all.hosts.v1.ansible_become_password: host v1: var ansible_become_password:")
    assert "--vault-password-file" in line


def test_wrong_password_is_one_clear_line_without_traceback(tmp_path):
    wrong = tmp_path / "pw"
    wrong.write_text("not-it\n")
    proc = subprocess.run([sys.executable, "-m", "coffers_provision", "validate", str(CASE / "inventory.yml"), "--vault-password-file", str(wrong)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{CASE / 'group_vars' / 'all.yml'}:1:1: $: the vault password from {wrong} does not decrypt it (wrong password?)" in proc.stderr


def test_password_file_from_the_environment(monkeypatch):
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(CASE / "vault-password"))
    from coffers_provision.vault import default_secret

    assert load_inventory(CASE / "inventory.yml", vault_secret=default_secret()).hosts["v1"].vars["db_password"] == "file-secret"
