"""Gather every fact of a host in one round trip: the probe script (facts/gather.py) run
over a connector, its output parsed and checked against schemas/facts.schema.json."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema

from ..connect.base import Connector
from ..errors import ProbeError
from ..resources import schema_path
from ..schema import inline_refs
from ..topology import Topology
from . import system
from .gather import FACTS, PROBE_TIMEOUT_S, SCHEMA_VERSION, TOPOLOGY_FACTS, assemble, probe_script, split_sections

__all__ = ["FACTS", "SCHEMA_VERSION", "TOPOLOGY_FACTS", "ProbeError", "assemble", "probe", "probe_script",
           "split_sections", "topology_of", "validate"]


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(schema_path("facts").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(inline_refs(schema))  # read at every apply for every host: no lookup per CPU id


def validate(facts: dict[str, Any]) -> list[str]:
    """Schema problems as `json.path: message` strings (empty when valid)."""
    errors = sorted(_validator().iter_errors(facts), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]


def probe(conn: Connector, host: str, *, prefix: str = system.DEFAULT_PREFIX, timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """Run the probe script on a host and return its validated facts."""
    result = conn.run(probe_script(prefix), timeout=timeout)
    if not result.ok:
        raise ProbeError(f"{host}: probe script exited {result.rc}: {result.stderr.strip()[:500]}")
    facts = assemble(split_sections(result.stdout), host=host, prefix=prefix)
    problems = validate(facts)
    if problems:
        raise ProbeError(f"{host}: facts do not match schemas/facts.schema.json: " + "; ".join(problems[:5]))
    return facts


def topology_of(facts: dict[str, Any]) -> Topology:
    return Topology.from_json(facts["topology"])
