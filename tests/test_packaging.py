"""pyproject.toml lists every package and data folder, so `pip install .` ships all of them
and prints no warnings (an unlisted folder of data is what setuptools warns about)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_and_data_folder_is_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapped = {v: k for k, v in cfg["package-dir"].items()}
    want = {".".join(p.relative_to(ROOT).parts) for p in (ROOT / "coffers_provision").rglob("*")
            if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py"))}
    want.add("coffers_provision")
    for folder, package in mapped.items():
        want |= {package + "".join(f".{part}" for part in p.relative_to(ROOT / folder).parts)
                 for p in [ROOT / folder, *(ROOT / folder).rglob("*")] if p.is_dir() and p.name != "__pycache__"}
    assert sorted(want - listed) == [], "add these to [tool.setuptools] packages in pyproject.toml"
    data = set(cfg["package-data"])
    assert sorted(p for p in want - data if p.split(".")[1:2] in (["roles"], ["inventories"], ["schemas"])) == []
