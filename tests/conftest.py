from pathlib import Path

import pytest

pytest_plugins = ["tests.fleet.plugin"]  # the sshd test fleet: fixtures `fleet`, `make_fleet` (tests/fleet/README.md)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SPEC = ROOT / "tests" / "spec"


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def llama_server() -> Path:
    """A real llama-server, built once from the pinned archive scripts/bootstrap fetched
    (tests/lab/build-llama-server reuses its build while the archive's hash is unchanged).
    Skipped where it cannot be built, except in CI (CI=true), where that fails."""
    import os
    import shutil
    import subprocess

    def unavailable(why: str) -> None:
        if os.environ.get("CI", "").lower() == "true" or os.environ.get("COFFERS_REQUIRE_LAB") == "1":
            pytest.fail(f"llama-server is required here but cannot be built: {why}")
        pytest.skip(why)

    for tool in ("cmake", "c++"):
        if not shutil.which(tool):
            unavailable(f"building llama-server needs {tool} (scripts/bootstrap installs it)")
    r = subprocess.run([str(ROOT / "tests/lab/build-llama-server")], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        unavailable(f"tests/lab/build-llama-server failed:\n{r.stderr[-3000:]}")
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path.is_file(), path
    return path
