"""Fixtures for the QEMU NUMA lab (docs/lab.md).

- `lab` (session): boots the guests once (tests/lab/up), stops the ones it started by pid.
- `guests` (session): name -> SSH connector, made from inventories/lab.yml.
- `llama_server_bin` (session): the llama-server build (tests/lab/build-llama-server, cached).
- `lab_model` (session): a ~98 MiB llama GGUF from coffers_provision.modelgen.

Tests that use them are marked `lab`. Where the lab cannot run they are skipped with the
reason, except when it is required (CI=true or COFFERS_REQUIRE_LAB=1): then they fail, so
CI cannot pass without the lab having run. COFFERS_LAB=0 opts out locally.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import lab as labmod

LAB_FIXTURES = {"lab", "guests", "llama_server_bin", "lab_model", "lab4_llama"}
INVENTORY = labmod.REPO / "inventories" / "lab.yml"
_timings: dict[str, str] = {}  # printed at the end of the run
_lab_seconds = [0.0]


def required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("COFFERS_REQUIRE_LAB") == "1"


def unavailable() -> str | None:
    if os.environ.get("COFFERS_LAB") == "0":
        return "COFFERS_LAB=0: the QEMU lab is switched off"
    if os.geteuid() != 0:
        return "the lab image build needs root (mmdebstrap, mkfs.ext4 -d)"
    for tool in ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.ext4", "ssh", "cmake"):
        if not shutil.which(tool) and not Path("/usr/sbin", tool).exists():
            return f"the lab needs {tool} (scripts/bootstrap installs it)"
    return None


def skip_or_fail(reason: str) -> None:
    if required():
        pytest.fail(f"the QEMU lab is required here (CI=true or COFFERS_REQUIRE_LAB=1) but cannot run: {reason}")
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "lab" in report.keywords:  # setup, call and teardown of every lab test
        _lab_seconds[0] += report.duration
        _timings["lab tests (boot and builds included)"] = f"{_lab_seconds[0]:.0f} s"


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if _timings:
        terminalreporter.write_line("lab timings: " + ", ".join(f"{k} {v}" for k, v in _timings.items()))


def _timed_script(name: str, label: str, *args: str) -> str:
    """Run a build script (it reuses its cache, then takes a second at most); return its stdout."""
    start = time.monotonic()
    r = subprocess.run([str(labmod.LAB_DIR / name), *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.fail(f"{name} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    took = time.monotonic() - start
    _timings[label] = "cached" if "cached" in r.stderr else f"{took:.0f} s"
    return r.stdout


@pytest.fixture(scope="session")
def lab() -> Iterator[dict]:
    if reason := unavailable():
        skip_or_fail(reason)
    run = labmod.run_dir()
    run.mkdir(parents=True, exist_ok=True)
    # One lab session at a time per clone: a second pytest waits rather than sharing guests.
    with open(run / "session.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _timed_script("build-image", "image build")
        running = {g.name for g in labmod.GUESTS if labmod.pid_of(g)}
        start = time.monotonic()
        try:
            state = labmod.up()
        except (RuntimeError, subprocess.CalledProcessError) as e:
            labmod.down([g.name for g in labmod.GUESTS if g.name not in running])
            pytest.fail(f"tests/lab/up failed: {e}")
        boots = ", ".join(f"{k} {v} s" for k, v in state["boot_seconds"].items())
        _timings["boot"] = f"{time.monotonic() - start:.0f} s ({boots}; {state['accel']})" if boots else "reused running guests"
        try:
            yield state
        finally:
            labmod.down([g.name for g in labmod.GUESTS if g.name not in running])


@pytest.fixture(scope="session")
def guests(lab: dict) -> Iterator[dict]:
    """name -> a live SSH connector, as the tool makes them from inventories/lab.yml."""
    from coffers_provision.connect.hostkeys import KnownHosts
    from coffers_provision.connect.ssh import SSHConnector, SSHTarget
    from coffers_provision.inventory import load_inventory

    inventory = load_inventory(INVENTORY)
    known = KnownHosts(Path(lab["known_hosts"]), None)
    conns = {}
    try:
        for name in lab["guests"]:
            h = inventory.hosts[name]
            target = SSHTarget(name, h.address, h.port or 22, h.user or "root", (h.key_file,))
            conns[name] = SSHConnector(target, known, command_timeout=900)
        yield conns
    finally:
        for c in conns.values():
            c.close()


@pytest.fixture(scope="session")
def llama_server_bin(lab: dict) -> Path:
    path = Path(_timed_script("build-llama-server", "llama-server build").strip().splitlines()[-1])
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def lab_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from coffers_provision.modelgen import write_llama

    path = tmp_path_factory.mktemp("lab-model") / "lab-llama.gguf"
    write_llama(path, seed=5)
    return path


@pytest.fixture(scope="session")
def lab4_llama(guests: dict, llama_server_bin: Path, lab_model: Path) -> dict:
    """llama-server and the model installed on the 4-node guest; numa balancing off there.

    Automatic NUMA balancing would migrate the model's pages towards the threads touching
    them and blur what the placement checks measure; the tool's tuning role turns it off too.
    """
    from . import guestops

    conn = guests["lab4"]
    guestops.install(conn, llama_server_bin, guestops.LLAMA_SERVER, mode=0o755)
    guestops.install(conn, lab_model, guestops.MODEL)
    assert conn.run("sysctl -qw kernel.numa_balancing=0").ok
    return {"conn": conn, "model": lab_model}
