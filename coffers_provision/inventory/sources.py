"""Which reader a source needs, tried in ansible-core's order, and directories of sources.

A directory is read entry by entry in name order (sub-directories too), skipping hidden
entries, `group_vars`, `host_vars`, `vars_plugins` and files ending in `~`, `.orig`,
`.cfg`, `.retry`, `.pyc`, `.pyo`, `.swp`, `.bak`, `.rpm`, `.md`, `.txt`, `.rst`. A file
is then: an executable script (run with `--list`); a `plugin:` configuration or TOML,
which the tool does not run (one error saying how to export it); YAML or JSON by its
extension; and a file without one is YAML when it parses as a YAML mapping, else INI.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..schema import Diagnostic, Located
from ..vault import VaultSecret
from . import ini_source, script_source, yaml_source
from .data import Builder
from .files import decrypted, load, read_text
from .model import InventoryError

IGNORED = re.compile(r"^\.|^host_vars$|^group_vars$|^vars_plugins$|(~|\.orig|\.cfg|\.retry|\.pyc|\.pyo|\.swp|\.bak|\.rpm|\.md|\.txt|\.rst)$")
YAML_EXTENSIONS = (".yml", ".yaml", ".json")


def export_hint(path: Path) -> str:
    return f"export it with `ansible-inventory -i {path} --list > inventory.json` and pass that file"


def files_of(source: Path) -> list[Path]:
    """The files a source stands for: itself, or a directory's entries in ansible-core's order."""
    if not source.is_dir():
        return [source]
    out: list[Path] = []
    for entry in sorted(source.iterdir(), key=lambda p: os.fsencode(p.name)):
        if not IGNORED.search(entry.name):
            out += files_of(entry)
    return out


def read_file(path: Path, builder: Builder, secret: VaultSecret | None) -> None:
    """Add one inventory file to `builder`; raises InventoryError when it cannot be read at all."""
    builder.source = path
    if not path.exists():
        raise InventoryError([Diagnostic(str(path), 1, 1, "$", "no such inventory file or directory")])
    if os.access(path, os.X_OK):
        _script(path, builder)
        return
    if path.suffix == ".toml":
        raise InventoryError([Diagnostic(str(path), 1, 1, "$", f"TOML inventories are not read here: {export_hint(path)}")])
    text = decrypted(path, read_text(path), secret)
    if path.suffix in YAML_EXTENSIONS or not path.suffix:
        try:
            located = load(path, secret, text)
        except InventoryError:
            if path.suffix:
                raise
            located = None  # no extension and not YAML: INI
        if located is not None and (path.suffix or isinstance(located.data, dict)):
            _structured(path, located, builder)
            return
    ini_source.read(Located(file=str(path), data=None), text, builder)


def _structured(path: Path, located: Located, builder: Builder) -> None:
    data = located.data
    if data is None:
        raise InventoryError([located.diag((), "the inventory is empty")])
    if isinstance(data, dict) and "plugin" in data:
        where = located.diag(("plugin",), "", key=True)
        raise InventoryError([Diagnostic(where.file, where.line, where.col, "$.plugin",
                                         f"inventory plugin {data['plugin']!r} is not run by this tool: {export_hint(path)}")])
    if script_source.looks_listed(data):
        script_source.read(located, builder)
    else:
        yaml_source.read(located, builder)


def _script(path: Path, builder: Builder) -> None:
    name = f"{path} --list"
    located = script_source.parse_json(name, script_source.run_script(path, "--list"))

    def host_vars_of(host: str) -> object:
        return script_source.parse_json(f"{path} --host {host}", script_source.run_script(path, "--host", host)).data

    script_source.read(located, builder, host_vars_of)
