"""ARCHITECTURE.md's one-way arrows, checked on every import in the package (function-level
imports included): a part imports only parts on its own floor or below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "coffers_provision"

# The floors, bottom up (ARCHITECTURE.md). A name is the first part of a module path below
# the package: `engine` for coffers_provision/engine/runner.py.
FLOORS = [
    {"__init__", "errors", "status", "resources", "output", "schema", "topology", "shardmap", "model", "modelgen", "planner", "inventory", "vault", "units", "rollout",
     "metrics"},
    {"facts", "connect", "fanout", "hostlock"},
    {"engine"},
    {"bench", "serving", "deployment", "tune", "fleetops", "observe"},
    {"commands", "cli", "__main__"},
]
# On the floor of the parts that use the engine, only these arrows run sideways (never
# back); the floors below may import each other freely.
GUARDED = 3
SIDEWAYS = {("deployment", "bench"), ("deployment", "serving"), ("tune", "deployment"), ("tune", "bench"), ("tune", "serving"),
            ("fleetops", "deployment"), ("fleetops", "serving"), ("fleetops", "bench"), ("fleetops", "tune"),
            ("observe", "deployment"), ("observe", "serving"), ("observe", "bench"), ("cli", "commands")}


def floor(part: str) -> int:
    for i, names in enumerate(FLOORS):
        if part in names:
            return i
    raise AssertionError(f"coffers_provision/{part}: not on any floor of tests/test_architecture.py (add it, and to ARCHITECTURE.md)")


def part_of(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported part) for every import of another part of the package."""
    tree = ast.parse(path.read_text(), str(path))
    module = ".".join(("coffers_provision", *path.relative_to(PKG).with_suffix("").parts))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "coffers_provision" and len(parts) > 1:
                known = (PKG / parts[1]).is_dir() or (PKG / f"{parts[1]}.py").is_file()
                found.append((node.lineno, parts[1] if known else "__init__"))
    return found


def test_every_part_is_on_a_floor():
    for path in PKG.rglob("*.py"):
        floor(part_of(path))


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_run_one_way(path):
    src = part_of(path)
    bad = []
    for line, dst in imports(path):
        if dst == src:
            continue
        if floor(dst) > floor(src) or (floor(dst) == floor(src) == GUARDED and (src, dst) not in SIDEWAYS):
            bad.append(f"{path.relative_to(PKG.parent)}:{line}: {src} imports {dst}")
    assert not bad, "imports against the arrows (ARCHITECTURE.md):\n" + "\n".join(bad)
