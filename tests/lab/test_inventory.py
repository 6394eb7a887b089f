"""inventories/lab.yml agrees with the guests tests/lab/lab.py boots (no guests needed)."""

from __future__ import annotations

from pathlib import Path

from coffers_provision.inventory import load_inventory

from .lab import GUESTS, REPO, run_dir


def test_lab_inventory_matches_the_guests() -> None:
    inv = load_inventory(REPO / "inventories" / "lab.yml")
    assert set(inv.hosts) == {g.name for g in GUESTS}
    for g in GUESTS:
        h = inv.hosts[g.name]
        assert (h.address, h.port, h.user) == ("127.0.0.1", g.port, "root")
        assert Path(h.key_file).resolve() == (REPO / "tests" / "lab" / "run" / "id_ed25519").resolve()


def test_guest_ports_are_distinct_and_memory_is_small() -> None:
    assert len({g.port for g in GUESTS}) == len(GUESTS)
    for g in GUESTS:
        assert 512 <= g.mem_mb <= 2048
        assert len(g.distances) == len(g.nodes) and all(len(r) == len(g.nodes) for r in g.distances)
        assert all(g.distances[i][i] == 10 for i in range(len(g.nodes)))


def test_run_dir_default_is_where_the_inventory_points(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("COFFERS_LAB_RUN", raising=False)
    assert run_dir() == REPO / "tests" / "lab" / "run"
