from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SPEC = ROOT / "tests" / "spec"


@pytest.fixture
def repo_root() -> Path:
    return ROOT
