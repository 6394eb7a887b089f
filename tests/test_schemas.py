"""Every shipped JSON Schema is a valid 2020-12 schema (checked here once, not at each start)."""

import json

import jsonschema
import pytest

from .conftest import ROOT


@pytest.mark.parametrize("path", sorted((ROOT / "schemas").glob("*.schema.json")), ids=lambda p: p.name)
def test_schema_is_valid(path):
    jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))
