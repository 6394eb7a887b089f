"""Where the shipped data (schemas/, roles/, inventories/) lives.

In a checkout they sit at the repo top; after `pip install .` they sit inside the
package. Both layouts resolve here so nothing else needs to care.
"""

from functools import cache
from pathlib import Path

_PKG = Path(__file__).resolve().parent


@cache
def data_dir(name: str) -> Path:
    for candidate in (_PKG / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"shipped data folder {name!r} is missing from the installation")


def schema_path(name: str) -> Path:
    return data_dir("schemas") / f"{name}.schema.json"


def role_dir(name: str) -> Path:
    return data_dir("roles") / name
