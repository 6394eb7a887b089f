"""Every case of the corpus (tests/fixtures/inventories) against what ansible-core 2.19's
`ansible-inventory` printed for it (tests/spec/inventories, made by its `generate`):
the same hosts, groups and children, and each host's vars compared one by one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from coffers_provision.inventory import InventoryError, load_inventory
from coffers_provision.inventory.listing import as_graph, as_list
from coffers_provision.vault import read_password_file

ROOT = Path(__file__).resolve().parent
CORPUS = ROOT / "fixtures" / "inventories"
PINNED = ROOT / "spec" / "inventories"
CASES = json.loads((CORPUS / "cases.json").read_text())


def sources(name: str) -> list[Path]:
    return [Path(os.path.normpath(CORPUS / name / s)) for s in CASES[name]["sources"]]


def load(name: str):
    case = CASES[name]
    secret = read_password_file(CORPUS / name / case["vault_password_file"]) if "vault_password_file" in case else None
    return load_inventory(sources(name), vault_secret=secret, check_connections=False)


def contains(big: Any, small: Any) -> bool:
    """`small` is `big` with some mapping keys left out (a deep-merged `coffers:` holds Ansible's whole value)."""
    if isinstance(small, dict) and isinstance(big, dict):
        return all(k in big and contains(big[k], v) for k, v in small.items())
    return big == small


def test_corpus_is_large_and_every_case_is_pinned():
    assert len(CASES) >= 60
    for name in CASES:
        assert (PINNED / f"{name}.list.json").is_file() or (PINNED / f"{name}.error.txt").is_file(), name
    assert (PINNED / "VERSION").read_text().startswith("ansible-inventory [core 2.19")


READ = sorted(n for n in CASES if "rejected" not in CASES[n] and (PINNED / f"{n}.list.json").is_file())


@pytest.mark.parametrize("name", READ)
def test_same_hosts_groups_and_vars_as_ansible(name):
    expected = json.loads((PINNED / f"{name}.list.json").read_text())
    got = as_list(load(name))
    want_vars, got_vars = expected.pop("_meta")["hostvars"], got.pop("_meta")["hostvars"]
    assert sorted(got_vars) == sorted(want_vars)
    for host, want in want_vars.items():
        assert sorted(got_vars[host]) == sorted(want), host
        for var, value in want.items():
            if var == "coffers":  # documented: merged key by key, not replaced
                assert contains(got_vars[host][var], value), (host, var)
            else:
                assert got_vars[host][var] == value, (host, var)
    assert got == expected


@pytest.mark.parametrize("name", READ)
def test_same_graph_as_ansible(name):
    assert as_graph(load(name)) == (PINNED / f"{name}.graph.txt").read_text()


REFUSED = sorted(n for n in CASES if (PINNED / f"{n}.error.txt").is_file())


@pytest.mark.parametrize("name", REFUSED)
def test_refused_by_ansible_is_an_error_here(name):
    with pytest.raises(InventoryError) as e:
        load(name)
    assert all(str(d).split(":")[0].endswith(tuple(CASES[name]["sources"])) for d in e.value.diagnostics)


@pytest.mark.parametrize("name", sorted(n for n in CASES if "rejected" in CASES[n]))
def test_unsupported_sources_say_how_to_export(name):
    with pytest.raises(InventoryError) as e:
        load(name)
    (line,) = e.value.lines()
    assert "ansible-inventory -i" in line and "--list > inventory.json" in line
    assert ("plugin" if CASES[name]["rejected"] == "plugin" else "TOML") in line
