"""Pending handlers, kept on the host so a restart is never lost.

When a task that notifies a handler is about to change the host, the handler's name is
first added to <state_dir>/pending-handlers.json (written atomically). A handler leaves
the file only after it ran. So if a later task fails, or the run is killed, the next
apply reads the file and carries the restart out.
"""

from __future__ import annotations

import json
import shlex

from ..connect.base import Connector
from .state import HostState

FILE = "pending-handlers.json"


def path(state_dir: str) -> str:
    return f"{state_dir.rstrip('/')}/{FILE}"


def load(state: HostState, state_dir: str) -> list[str]:
    raw = state.read(path(state_dir))
    if not raw:
        return []
    try:
        names = json.loads(raw).get("pending", [])
    except (ValueError, AttributeError):
        return []  # an unreadable record: the file is rewritten at the end of the play
    return [n for n in names if isinstance(n, str)]


def store(conn: Connector, state: HostState, state_dir: str, names: list[str]) -> None:
    """Write the pending set (or remove the file when it is empty)."""
    target = path(state_dir)
    if names:
        conn.run(f"mkdir -p -- {shlex.quote(state_dir)}")
        data = (json.dumps({"pending": sorted(set(names))}) + "\n").encode()
        conn.put(data, target, mode=0o644)
        # and any temp file an interrupted earlier write left beside it
        conn.run(f"rm -f -- {shlex.quote(state_dir.rstrip('/'))}/{shlex.quote('.' + FILE + '.coffers-')}*")
        state.overlay({}, {target: data})
    else:
        conn.run(["rm", "-f", "--", target])
        state.overlay({}, {target: None})
