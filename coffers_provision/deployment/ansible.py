"""The `coffers.numa` Ansible collection, built from the shipped `collection/` folder, and
the ready Ansible project `export ansible` writes (docs/ansible.md).

The collection's module_utils are not kept in the source tree: the fact gathering
(facts/gather.py and the standard-library modules it imports) is copied in at build time,
so `numa_facts` and `probe` run one script and one set of parsers. Its version is the
package's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from .. import __version__
from ..errors import CoffersError
from ..resources import data_dir

# facts/gather.py and every module it imports, relative to the package: all standard library
VENDORED = ("status.py", "errors.py", "topology.py", "facts/__init__.py", "facts/cpu.py", "facts/dump.py",
            "facts/numa.py", "facts/system.py", "facts/gather.py")
UTILS = "plugins/module_utils/coffers_facts"
NAMESPACE, NAME = "coffers", "numa"
COLLECTIONS = "collections"


class AnsibleToolError(CoffersError):
    """ansible-galaxy is missing or failed."""


def _galaxy() -> str:
    """ansible-galaxy beside this Python (a virtual environment), else on PATH."""
    beside = Path(sys.executable).parent / "ansible-galaxy"
    found = str(beside) if beside.exists() else shutil.which("ansible-galaxy")
    if not found:
        raise AnsibleToolError("ansible-galaxy not found: install ansible-core (pip install 'coffers-provision[test]')")
    return found


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AnsibleToolError(f"{' '.join(argv[:3])} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-1500:]}")


def collection_source(dest: Path) -> Path:
    """The collection's source tree under `dest`: the shipped folder, its version, the parsers."""
    root = dest / f"{NAMESPACE}.{NAME}"
    shutil.copytree(data_dir("collection"), root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    meta = yaml.safe_load((root / "galaxy.yml").read_text())
    (root / "galaxy.yml").write_text(yaml.safe_dump({**meta, "version": __version__}, sort_keys=False))
    package = Path(__file__).resolve().parent.parent
    utils = root / UTILS
    for rel in VENDORED:
        (utils / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package / rel, utils / rel)
    (utils / "__init__.py").write_text("")
    return root


def build_collection(out: Path) -> Path:
    """`ansible-galaxy collection build`: the collection's tarball in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="coffers-collection-") as tmp:
        root = collection_source(Path(tmp))
        _run([_galaxy(), "collection", "build", "--force", "--output-path", str(out.resolve()), str(root)])
    return out / f"{NAMESPACE}-{NAME}-{__version__}.tar.gz"


def install_collection(tarball: Path, collections: Path) -> None:
    _run([_galaxy(), "collection", "install", "--force", "-p", str(collections), str(tarball)])


def site(role_vars: dict[str, str]) -> list[dict]:
    """The playbook: every host of the inventory, as `apply INVENTORY` (no --limit) takes them."""
    return [{
        "name": "NUMA-placed llama-server, as coffers-provision apply deploys it",
        "hosts": "all",
        "gather_facts": False,
        "roles": [{"role": f"{NAMESPACE}.{NAME}.serve", "vars": role_vars} if role_vars else {"role": f"{NAMESPACE}.{NAME}.serve"}],
    }]

CFG = """\
# Written by `coffers-provision export ansible`; docs/ansible.md.
[defaults]
collections_path = ./{collections}
interpreter_python = auto_silent
host_key_checking = True
retry_files_enabled = False

[ssh_connection]
pipelining = True
"""


def execution_environment() -> dict:
    """ansible-builder's definition: ansible-core and this package (the action plugin imports it)."""
    return {
        "version": 3,
        "dependencies": {
            "ansible_core": {"package_pip": "ansible-core>=2.19,<2.20"},
            "ansible_runner": {"package_pip": "ansible-runner"},
            "python": [f"coffers-provision=={__version__}"],
            "galaxy": "requirements.yml",
        },
    }


def write_project(out: Path, role_vars: dict[str, str]) -> list[Path]:
    """A ready Ansible project in `out`; `cd out && ansible-playbook -i INVENTORY site.yml`.
    `role_vars` are the serve role's inputs that `apply` takes from its flags and working
    directory (tune records, bench results), written as absolute paths."""
    out.mkdir(parents=True, exist_ok=True)
    tarball = build_collection(out / "build")
    install_collection(tarball, out / COLLECTIONS)
    files = {
        "site.yml": yaml.safe_dump(site(role_vars), sort_keys=False),
        "ansible.cfg": CFG.format(collections=COLLECTIONS),
        "requirements.yml": yaml.safe_dump({"collections": [{"name": f"build/{tarball.name}", "type": "file"}]}, sort_keys=False),
        "execution-environment.yml": yaml.safe_dump(execution_environment(), sort_keys=False),
    }
    for name, text in files.items():
        (out / name).write_text(text)
    return [out / name for name in files] + [tarball, out / COLLECTIONS / "ansible_collections" / NAMESPACE / NAME]
