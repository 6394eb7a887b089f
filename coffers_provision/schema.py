"""YAML documents that remember where each value came from, and JSON Schema checks that say so.

Every problem becomes a `Diagnostic` printed as `FILE:LINE:COL: json.path: message`
(1-based line and column of the offending YAML node).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import yaml

from .errors import CoffersError
from .resources import schema_path

if TYPE_CHECKING:  # jsonschema is imported only when a document is not known to be valid
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

JsonPath = tuple[str | int, ...]
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every `{"$ref": "#/$defs/NAME"}` replaced by that definition (they
    must not recurse). Validating many documents then skips a reference lookup per value:
    a facts document checks each CPU id against `$defs/id`."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if len(node) == 1 and isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        return [walk(v) for v in node] if isinstance(node, list) else node

    return walk(schema)


def format_path(path: JsonPath) -> str:
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.match(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


@dataclass(frozen=True, order=True)
class Diagnostic:
    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {self.message}"


@dataclass
class Located:
    """Plain data loaded from YAML, plus the 1-based (line, col) of every value and mapping key."""

    file: str
    data: Any
    values: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: JsonPath, *, key: bool = False) -> tuple[int, int]:
        """The position of `path` (its key when `key`), or of its nearest located ancestor."""
        table = self.keys if key else self.values
        if path in table:
            return table[path]
        for n in range(len(path), -1, -1):
            if path[:n] in self.values:
                return self.values[path[:n]]
        return (1, 1)

    def diag(self, path: JsonPath, message: str, *, key: bool = False) -> Diagnostic:
        line, col = self.where(path, key=key)
        return Diagnostic(self.file, line, col, format_path(path), message)


class YamlError(CoffersError):
    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic
        super().__init__(str(diagnostic))


def _pos(mark: yaml.Mark) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


def load_yaml(path: str | Path, text: str | None = None, *, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Located:
    """Load one YAML document with positions. Duplicate keys and non-scalar keys are errors.

    `loader` may be a SafeLoader subclass that adds tags (the inventory's `!vault`)."""
    file = str(path)
    if text is None:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise YamlError(Diagnostic(file, 1, 1, "$", f"cannot read: {e.strerror}")) from None
        except UnicodeDecodeError:
            raise YamlError(Diagnostic(file, 1, 1, "$", "not UTF-8 text")) from None
    try:
        loader = loader(text)
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (NUL, most controls)
        line = text.count("\n", 0, e.position) + 1
        col = e.position - text.rfind("\n", 0, e.position)
        raise YamlError(Diagnostic(file, line, col, "$", f"YAML error: character {e.character:#06x} is not allowed in YAML")) from None
    located = Located(file=file, data=None)
    try:
        node = loader.get_single_node()
        if node is not None:
            located.data = _convert(loader, node, (), located)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = _pos(mark) if mark else (1, 1)
        problem = e.problem or "YAML error"
        if e.context:
            problem = f"{e.context}: {problem}"
        if e.context_mark and mark is not e.context_mark:
            problem += f" (opened at line {e.context_mark.line + 1}, column {e.context_mark.column + 1})"
        raise YamlError(Diagnostic(file, line, col, "$", f"YAML syntax error: {problem}")) from None
    except yaml.YAMLError as e:
        raise YamlError(Diagnostic(file, 1, 1, "$", f"YAML error: {e}")) from None
    finally:
        loader.dispose()
    return located


def _convert(loader: yaml.SafeLoader, node: yaml.Node, path: JsonPath, located: Located) -> Any:
    located.values[path] = _pos(node.start_mark)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<` merge keys
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                raise yaml.MarkedYAMLError(problem="mapping keys must be plain scalars", problem_mark=knode.start_mark)
            key = loader.construct_object(knode)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise yaml.MarkedYAMLError(problem=f"unsupported key {key!r}", problem_mark=knode.start_mark)
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}", problem_mark=knode.start_mark)
            located.keys[path + (key,)] = _pos(knode.start_mark)
            out[key] = _convert(loader, vnode, path + (key,), located)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, child, path + (i,), located) for i, child in enumerate(node.value)]
    value = loader.construct_object(node, deep=True)
    if hasattr(value, "isoformat"):  # YAML timestamps: keep them as written
        return node.value
    return value


# -- JSON Schema ------------------------------------------------------------------


@cache
def schema_text(name: str) -> str:
    return schema_path(name).read_text()


@cache
def schema(name: str) -> dict[str, Any]:
    """schemas/<name>.schema.json (each is checked against the metaschema by tests/test_schemas.py)."""
    return json.loads(schema_text(name))


@cache
def validator(name: str, ref: str | None = None) -> Draft202012Validator:
    """A validator for schemas/<name>.schema.json, or for its `$defs/<ref>` part."""
    from jsonschema import Draft202012Validator

    whole = schema(name)
    return Draft202012Validator(whole if ref is None else {"$defs": whole["$defs"], "$ref": f"#/$defs/{ref}"})


# -- known-valid cache ----------------------------------------------------------------
# Validation is a pure function of (schema, document). A document that passed once is
# remembered by the hash of both, so checking it again (a re-run of validate, plan or
# apply on an unchanged inventory) neither imports jsonschema nor walks the schema.
# Only passes are kept: a failing document is always validated afresh for its messages.


def _valid_marker(name: str, ref: str | None, data: Any) -> Path | None:
    """The cache file that says `data` is valid against the schema, or None when `data`
    is not plain JSON (a vault value, say) or there is no cache directory."""
    try:
        doc = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None
    if json.loads(doc) != data:  # not plain JSON (keys that are not strings, tuples): uncached
        return None
    base = os.environ.get("XDG_CACHE_HOME") or (str(Path.home() / ".cache") if "HOME" in os.environ else "")
    if not base:
        return None
    key = hashlib.sha256(f"{schema_text(name)}\0{ref}\0{doc}".encode()).hexdigest()
    return Path(base) / "coffers-provision" / "valid" / key[:2] / key


def _errors(name: str, ref: str | None, data: Any) -> list[ValidationError]:
    marker = _valid_marker(name, ref, data)
    if marker is not None and marker.exists():
        return []
    errors = list(validator(name, ref).iter_errors(data))
    if not errors and marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:  # a read-only home: validation still works, only uncached
            pass
    return errors


def check(name: str, located: Located, *, at: JsonPath = (), ref: str | None = None) -> list[Diagnostic]:
    """Validate the part of `located` under `at` against a schema (or one of its $defs)."""
    data = located.data
    for part in at:
        data = data[part]
    found = [_diagnose(err, located, at) for err in _errors(name, ref, data)]
    return sorted(d for group in found for d in group)


def problems(name: str, data: Any, *, ref: str | None = None, prefix: str = "") -> list[str]:
    """Schema errors of plain data (no positions), as `prefix.path: message` lines."""
    errors = sorted(_errors(name, ref, data), key=lambda e: [str(p) for p in e.absolute_path])
    out = []
    for err in errors:
        if err.context:
            err = _best(err.context)
        where = ".".join([prefix, *map(str, err.absolute_path)]) if prefix else format_path(tuple(err.absolute_path))
        out.append(f"{where}: {_message(err)}")
    return out


def _diagnose(err: ValidationError, located: Located, at: JsonPath) -> Iterator[Diagnostic]:
    if err.context:  # anyOf/oneOf: report the branch that got furthest
        err = _best(err.context)
    path = at + tuple(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = list(err.schema.get("properties", {}))
        patterns = list(err.schema.get("patternProperties", {}))
        for key in err.instance:
            if key in allowed or any(re.search(p, key) for p in patterns):
                continue
            hint = difflib.get_close_matches(key, allowed, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            yield located.diag(path + (key,), f"unknown key {key!r}{suggestion}", key=True)
        return
    yield located.diag(path, _message(err))


def _best(errors: list[ValidationError]) -> ValidationError:
    from jsonschema.exceptions import best_match

    return best_match(errors)


def _message(err: ValidationError) -> str:
    if err.validator == "type":
        expected = err.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"expected {expected}, got {_describe(err.instance)}"
    if "x-error" in err.schema:  # a schema's own wording beats a raw pattern
        return f"{err.instance!r}: {err.schema['x-error']}"
    if err.validator == "enum":
        return f"{err.instance!r} is not one of {', '.join(map(repr, err.validator_value))}"
    return err.message


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
