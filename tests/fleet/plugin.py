"""pytest fixtures for the sshd test fleet (registered in tests/conftest.py).

- `fleet` (session): the default fleet, one host per spec in fleet.DEFAULT_SPECS, started
  once. Treat it as read-only: do not stop or rekey its hosts.
- `make_fleet` (function): a factory for private fleets a test may stop, restart or
  rekey; each is stopped at the end of the test.

Tests that use either are marked `fleet` automatically, and skipped (with the reason)
where the fleet cannot run: not root, or no /usr/sbin/sshd.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest

from .fleet import DEFAULT_SPECS, SSHD, Fleet, HostSpec

FLEET_FIXTURES = {"fleet", "make_fleet"}


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the sshd fleet needs root (mount namespaces, overlays)"
    if not Path(SSHD).exists() or not shutil.which("unshare"):
        return f"the sshd fleet needs {SSHD} and unshare (scripts/bootstrap installs them)"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if FLEET_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.fleet)


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    if reason := _unavailable():
        pytest.skip(reason)
    f = Fleet.start_new()
    try:
        yield f
    finally:
        f.stop()
        shutil.rmtree(f.state, ignore_errors=True)


@pytest.fixture
def make_fleet() -> Iterator[Callable[..., Fleet]]:
    if reason := _unavailable():
        pytest.skip(reason)
    started: list[Fleet] = []

    def make(count: int | None = None, specs: tuple[HostSpec, ...] = DEFAULT_SPECS, **kw: object) -> Fleet:
        f = Fleet.start_new(count, specs=specs, **kw)
        started.append(f)
        return f

    yield make
    for f in started:
        f.stop()
        shutil.rmtree(f.state, ignore_errors=True)
