from pathlib import Path

import pytest

pytest_plugins = ["tests.fleet.plugin"]  # the sshd test fleet: fixtures `fleet`, `make_fleet` (tests/fleet/README.md)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SPEC = ROOT / "tests" / "spec"


@pytest.fixture
def repo_root() -> Path:
    return ROOT
