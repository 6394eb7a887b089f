"""The coffers.numa collection, built by `export ansible`, without a host: its shape, and
numa_facts' parsers being probe's own on every numactl fixture (tests/test_ansible_fleet.py
runs it on hosts)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from coffers_provision import __version__
from coffers_provision.deployment.ansible import UTILS, VENDORED
from coffers_provision.facts.probe import assemble

from .test_facts import _sections_from_spec

REPO = Path(__file__).resolve().parent.parent
FIXTURES = sorted((REPO / "tests" / "fixtures" / "numactl").glob("*.txt"))
COLLECTION = Path("collections/ansible_collections/coffers/numa")


def export(inventory: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coffers_provision", "export", "ansible", str(inventory), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=out.parent)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    inv = tmp / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": {"h1": {"ansible_host": "127.0.0.1"}}}}))
    proc = export(inv, tmp / "project")
    assert proc.returncode == 0, proc.stderr
    return tmp / "project"


def test_the_project_has_everything_ansible_playbook_and_ansible_builder_read(project):
    site = yaml.safe_load((project / "site.yml").read_text())
    assert site[0]["hosts"] == "all" and site[0]["roles"][0]["role"] == "coffers.numa.serve"
    assert "collections_path = ./collections" in (project / "ansible.cfg").read_text()
    manifest = json.loads((project / COLLECTION / "MANIFEST.json").read_text())["collection_info"]
    assert (manifest["namespace"], manifest["name"], manifest["version"]) == ("coffers", "numa", __version__)
    ee = yaml.safe_load((project / "execution-environment.yml").read_text())
    assert ee["version"] == 3 and ee["dependencies"]["python"] == [f"coffers-provision=={__version__}"]
    req = yaml.safe_load((project / "requirements.yml").read_text())["collections"][0]
    assert req["type"] == "file" and (project / req["name"]).is_file()
    with tarfile.open(project / req["name"]) as tar:
        names = set(tar.getnames())
    assert {"plugins/modules/numa_facts.py", "plugins/action/deployment.py", "plugins/action/health.py", "plugins/action/lock.py",
            "roles/serve/tasks/main.yml", f"{UTILS}/facts/gather.py"} <= names


def test_module_utils_are_the_package_files_byte_for_byte(project):
    for rel in VENDORED:
        assert (project / COLLECTION / UTILS / rel).read_bytes() == (REPO / "coffers_provision" / rel).read_bytes(), rel


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_numa_facts_parses_every_numactl_fixture_as_probe_does(project, fixture, monkeypatch):
    monkeypatch.syspath_prepend(str(project / "collections"))
    gather = importlib.import_module("ansible_collections.coffers.numa.plugins.module_utils.coffers_facts.facts.gather")
    errors = importlib.import_module("ansible_collections.coffers.numa.plugins.module_utils.coffers_facts.errors")
    sections = {**_sections_from_spec(), "numactl": fixture.read_text()}
    try:
        want = assemble(sections, host="h1", prefix="/usr/local", now=1_700_000_000)
    except Exception as e:  # a fixture probe rejects: numa_facts rejects it with the same message
        with pytest.raises(errors.CoffersError) as got:
            gather.assemble(sections, host="h1", prefix="/usr/local", now=1_700_000_000)
        assert str(got.value) == str(e)
        return
    assert gather.assemble(sections, host="h1", prefix="/usr/local", now=1_700_000_000) == want


def test_a_bad_inventory_is_refused_before_anything_is_written(tmp_path):
    inv = tmp_path / "inventory.yml"
    inv.write_text("all:\n  hosts:\n    h1: {coffers: {strategy: nonsense}}\n")
    proc = export(inv, tmp_path / "project")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{inv}:3" in proc.stderr and not (tmp_path / "project").exists()


def test_the_lock_action_refuses_a_bad_state_before_touching_the_host(project):
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "coffers.numa.lock", "-a", "state=taken"],
                          cwd=project, capture_output=True, text=True, timeout=300, env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
    assert proc.returncode != 0 and "value of state must be one of: held, released, got: taken" in proc.stdout, proc.stdout + proc.stderr
