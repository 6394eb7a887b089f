"""`apply` for one host: facts -> deployment description -> play -> health -> report.

Everything up to the play only reads (the host's facts, the model's header) and is pure
after that (planner, description); the play is the only part that changes the host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..connect.base import Connector
from ..engine.result import HostReport
from ..engine.role import Play
from ..engine.runner import Options, play_vars, run_play
from ..engine.state import HostState
from ..errors import CoffersError
from ..facts.cache import DEFAULT_FACTS_DIR, load_or_probe
from ..inventory import Host, secrets_of
from ..resources import data_dir
from ..status import ExitStatus
from . import budget, verify
from .describe import Deployment
from .diff import PROVENANCE
from .host import Sources, deployment_for
from .inputs import ModelSource, local_paths

RECORD = "deployment.json"


def default_play_file() -> Path:
    return data_dir("roles") / "site.yml"


@dataclass
class ApplySettings:
    options: Options = field(default_factory=Options)
    facts_dir: Path = DEFAULT_FACTS_DIR
    refresh_facts: bool = False
    sources: Sources = field(default_factory=Sources)


def record(dep: Deployment) -> str:
    """What the host keeps in <state_dir>/deployment.json: the description, secrets masked,
    and what decided it (`provenance`, outside the fingerprint)."""
    return json.dumps({**dep.to_json(mask=True), PROVENANCE: dict(dep.provenance)}, indent=2, sort_keys=True) + "\n"


def play_extra(host: Host, facts: Any, dep: Deployment, src: ModelSource) -> dict[str, Any]:
    """The values a play sees beside the inventory's: the description, and what to upload."""
    return {
        "coffers": local_paths(host.coffers, host.inventory_dir),
        "inventory_hostname": host.name,
        "facts": facts,
        "deployment": dep.to_json(mask=False),
        "deployment_record": record(dep),
        "model_generated": str(src.local) if src.upload else None,
        "no_log_values": sorted(set(dep.secrets) | set(secrets_of(host))),  # never in a diff, log or JSON
    }


def apply_host(host: Host, conn: Connector, play: Play, settings: ApplySettings) -> HostReport:
    """Everything `apply` does on one host. ConnectError propagates (the host is unreachable)."""
    facts, _ = load_or_probe(host, conn, facts_dir=settings.facts_dir, refresh=settings.refresh_facts)
    try:
        dep, src = deployment_for(host, facts, conn, settings.sources)
        variables = play_vars(play, host.vars, play_extra(host, facts, dep, src))
    except CoffersError as e:
        if e.status == ExitStatus.HOSTS_UNREACHABLE:
            raise
        return HostReport(host.name, error=str(e))
    state = HostState(conn)
    needs = verify.needs(variables)
    needs.update(budget.needs(dep, variables))
    # before any task: a (re)start the live memory of a node cannot take fails the host unchanged
    report = run_play(host.name, conn, play, variables, settings.options, state=state, needs=needs,
                      guard=budget.guard(conn, dep, variables))
    if not (settings.options.check or report.failed or report.unreachable):
        verify.verify(conn, state, dep, report, variables)
    return report
