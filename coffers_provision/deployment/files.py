"""Every file a host's deployment installs, with the sha256 of its bytes, as `apply` would
write it now: `plan INVENTORY --files`.

The list comes from the play compiled into steps (engine/manifest.py, the same modules and
templates the runner uses), so it names exactly what the engine writes: role files and
templates, unit files and drop-ins, the recorded description, the model when it is
uploaded, and each native build's output with the hash of its build stamp (sources,
flags and compiler: what decides a rebuild). Reading the host (compiler version, unit
instances) goes through one batched state read; nothing is written.
"""

from __future__ import annotations

from typing import Any

from ..connect.base import Connector
from ..engine.manifest import compile_play
from ..engine.modules import sha256, sha256_file
from ..engine.role import Play
from ..engine.runner import play_vars
from ..engine.state import HostState
from ..inventory import Host
from .apply import play_extra
from .describe import Deployment
from .inputs import ModelSource


def installed_files(play: Play, host: Host, conn: Connector, facts: Any, dep: Deployment, src: ModelSource) -> list[dict[str, Any]]:
    """[{path, kind, mode, sha256}] sorted by path; kind is file, unit or build (a build's
    sha256 is that of its stamp file, `stamp`, which holds the hash of what it is built from)."""
    steps = compile_play(host.name, play, play_vars(play, host.vars, play_extra(host, facts, dep, src)), HostState(conn))
    out: list[dict[str, Any]] = []

    def add(step: dict[str, Any], kind: str) -> None:
        data = step["content"]
        digest = sha256(data.encode()) if data is not None else sha256_file(step["src"])
        out.append({"path": step["dest"], "kind": kind, "mode": step["mode"], "sha256": digest})

    for step in steps["files"]:
        add(step, "file")
    for unit in steps["units"]:
        for step in unit["files"]:
            add(step, "unit")
    for b in steps["builds"]:
        out.append({"path": b["output"], "kind": "build", "mode": b["mode"], "stamp": b["stamp"],
                    "sha256": sha256(b["stamp_content"].encode())})
    return sorted(out, key=lambda f: f["path"])
