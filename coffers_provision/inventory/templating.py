"""`{{ … }}` in inventory values, rendered with Jinja2 against the host's own vars, lazily.

As in Ansible, a value is rendered only when it is read, with every other var of the host
(and the magic vars `inventory_hostname`, `group_names`, `groups`, …) in scope, each of
them rendered in turn when the expression touches it. A value that is only `{{ expr }}`
keeps the expression's type (`ansible_port: "{{ ssh_port }}"` is an int); anything else
is text. An undefined name, a bad expression or a var that reaches itself is an error at
the var's position.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any, Callable, Iterator

from functools import cache

import yaml


class Unsafe(str):
    """A `!unsafe` string: never rendered."""


def is_template(value: Any) -> bool:
    return isinstance(value, str) and not isinstance(value, Unsafe) and ("{{" in value or "{%" in value)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("yes", "on", "1", "true", "y", "t")
    return bool(value)


def _regex_replace(value: Any, pattern: str, replacement: str = "") -> str:
    return re.sub(pattern, replacement, str(value))


def _ternary(value: Any, yes: Any, no: Any) -> Any:
    return yes if value else no


def _mandatory(value: Any) -> Any:
    return value  # StrictUndefined already fails on a missing value


def _single(values: Iterator[Any]) -> Any:
    """One node: its own value (native type); several: their text joined."""
    parts = list(values)
    if len(parts) == 1:
        return parts[0]
    return "".join("" if p is None else str(p) for p in parts)


@cache
def _env() -> Any:
    """The Jinja2 environment, made on the first template (most inventories have none, and
    importing Jinja2 costs more than loading them)."""
    from jinja2 import StrictUndefined
    from jinja2.nativetypes import NativeEnvironment
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Env(NativeEnvironment, ImmutableSandboxedEnvironment):
        concat = staticmethod(_single)  # type: ignore[assignment]

    env = Env(undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters.update(
        bool=_bool, to_json=json.dumps, to_nice_json=lambda v: json.dumps(v, indent=4, sort_keys=True),
        to_yaml=lambda v: yaml.safe_dump(v, default_flow_style=True).strip(), regex_replace=_regex_replace,
        basename=os.path.basename, dirname=os.path.dirname, ternary=_ternary, mandatory=_mandatory,
    )  # fmt: skip
    return env


class RenderError(Exception):
    """Why a template failed; the caller adds the var's position."""


class Scope(Mapping[str, Any]):
    """The names a template sees: the host's vars (each rendered when first read), then the magic vars."""

    def __init__(self, lookup: Callable[[str], Any], names: Callable[[], Iterator[str]], magic: Mapping[str, Any]):
        self._lookup, self._names, self._magic = lookup, names, magic

    def __getitem__(self, key: str) -> Any:
        try:
            return self._lookup(key)
        except KeyError:
            if key in self._magic:
                return self._magic[key]
            if key in _env().globals:
                return _env().globals[key]
            raise

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        yield from self._names()
        yield from self._magic

    def __len__(self) -> int:
        return sum(1 for _ in self)


def render(text: str, scope: Scope) -> Any:
    """Render one template string; raises RenderError with a one-line reason."""
    from jinja2 import TemplateError, TemplateSyntaxError, Undefined, UndefinedError

    try:
        template = _env().from_string(text)
        context = template.new_context(scope, shared=True)
        value = template.environment.concat(template.root_render_func(context))  # type: ignore[attr-defined]
        if isinstance(value, Undefined):  # a lone `{{ name }}` is returned, not printed: fail as printing would
            value._fail_with_undefined_error()
        return value
    except TemplateSyntaxError as e:
        raise RenderError(f"template syntax error: {e.message}") from None
    except UndefinedError as e:
        raise RenderError(f"{e.message}") from None
    except TemplateError as e:
        raise RenderError(str(e)) from None
    except (TypeError, ValueError, ArithmeticError, AttributeError) as e:
        raise RenderError(f"template failed: {e}") from None
