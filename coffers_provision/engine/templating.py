"""Jinja2 for roles: strict about undefined names, native values for whole-expression args.

A task argument that is exactly one `{{ expression }}` keeps the expression's type (a
list stays a list, so argv lists and instance tables pass through whole); any other
string renders to a string. Variables may themselves hold templates (role defaults
often do); `resolve_vars` renders them until nothing changes.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import CoffersError

_WHOLE = re.compile(r"^\{\{(?P<expr>(?:(?!\}\}).)*)\}\}$", re.S)


class TemplateError(CoffersError):
    """A template or expression that does not render; the message names where."""


def _shell_quote(value: Any) -> str:
    import shlex

    return shlex.quote(str(value))


def _systemd_quote(value: Any) -> str:
    """One word for a unit file's ExecStart= and Environment= lines.

    systemd splits on whitespace, honours double quotes with C-like backslash escapes
    and expands `$VAR` and `%` specifiers; this escapes every one of those.
    """
    text = str(value)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise jinja2.TemplateRuntimeError(f"control character in a unit file value: {text!r}")
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{text}"'


def _systemd_argv(argv: Any) -> str:
    """A command line for ExecStart= and friends: every word quoted on its own."""
    if isinstance(argv, str) or not isinstance(argv, (list, tuple)):
        raise jinja2.TemplateRuntimeError(f"systemd_argv takes a list of words, not {type(argv).__name__}")
    return " ".join(_systemd_quote(a) for a in argv)


def _unit_value(value: Any) -> str:
    """A bare value for a unit setting (no quoting: a newline would start a new setting)."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise jinja2.TemplateRuntimeError(f"newline in a unit file value: {text!r}")
    return text.replace("%", "%%")


def _sha256_file(path: Any) -> str:
    """The sha256 of a file on the machine running apply (e.g. a source archive to upload)."""
    from .modules import sha256_file

    try:
        return sha256_file(str(path))
    except OSError as e:
        raise jinja2.TemplateRuntimeError(f"{path}: {e.strerror}") from None


def make_env(template_dir: Path | None = None) -> jinja2.Environment:
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(template_dir)) if template_dir else None,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        auto_reload=False,  # role templates do not change during a run
    )
    env.filters.update(
        shell_quote=_shell_quote,
        systemd_quote=_systemd_quote,
        systemd_argv=_systemd_argv,
        unit_value=_unit_value,
        dirname=lambda p: os.path.dirname(str(p)),
        basename=lambda p: os.path.basename(str(p)),
        sha256_file=_sha256_file,
    )
    return env


_DEFAULT_ENV = make_env()


@lru_cache(maxsize=4096)
def _compiled_template(env: jinja2.Environment, text: str) -> jinja2.Template:
    return env.from_string(text)


@lru_cache(maxsize=4096)
def _compiled_expression(env: jinja2.Environment, expr: str):
    return env.compile_expression(expr, undefined_to_none=False)


def render_string(text: str, variables: Mapping[str, Any], *, where: str, env: jinja2.Environment | None = None) -> Any:
    """Render one string; a lone `{{ expr }}` returns the expression's native value."""
    if "{{" not in text and "{%" not in text:
        return text
    env = env or _DEFAULT_ENV
    try:
        m = _WHOLE.match(text.strip(" "))  # a newline outside the braces makes it text
        if m and "{{" not in m.group("expr"):
            value = _compiled_expression(env, m.group("expr"))(**variables)
            if isinstance(value, jinja2.Undefined):
                value._fail_with_undefined_error()
            return value
        return _compiled_template(env, text).render(**variables)
    except jinja2.TemplateError as e:
        raise TemplateError(f"{where}: {type(e).__name__}: {e}") from None


def render_value(value: Any, variables: Mapping[str, Any], *, where: str) -> Any:
    """Render every string inside a value (dicts and lists are walked)."""
    if isinstance(value, str):
        return render_string(value, variables, where=where)
    if isinstance(value, list):
        return [render_value(v, variables, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: render_value(v, variables, where=f"{where}.{k}") for k, v in value.items()}
    return value


def evaluate(expression: str | bool, variables: Mapping[str, Any], *, where: str) -> Any:
    """A bare Jinja expression (as in `when:`), its native value."""
    if isinstance(expression, bool):
        return expression
    try:
        value = _compiled_expression(_DEFAULT_ENV, expression)(**variables)
        if isinstance(value, jinja2.Undefined):
            value._fail_with_undefined_error()
        return value
    except jinja2.TemplateError as e:
        raise TemplateError(f"{where}: {type(e).__name__}: {e}") from None


def render_file(env: jinja2.Environment, name: str, variables: Mapping[str, Any], *, where: str) -> str:
    try:
        return env.get_template(name).render(**variables)
    except jinja2.TemplateNotFound:
        raise TemplateError(f"{where}: template {name!r} not found") from None
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{e.filename or name}:{e.lineno}: template syntax error: {e.message}") from None
    except jinja2.TemplateError as e:
        raise TemplateError(f"{where}: template {name}: {type(e).__name__}: {e}") from None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


@lru_cache(maxsize=4096)
def _names_in(text: str) -> frozenset[str]:
    try:
        return frozenset(jinja2.meta.find_undeclared_variables(_DEFAULT_ENV.parse(text)))
    except jinja2.TemplateSyntaxError:
        return frozenset()  # reported with its location when rendered


def _references(value: Any) -> set[str]:
    return {n for text in _strings(value) if "{{" in text or "{%" in text for n in _names_in(text)}


def resolve_vars(variables: Mapping[str, Any], templated: set[str], *, where: str = "vars") -> dict[str, Any]:
    """Render the `templated` variables (role defaults) against the others, dependencies first.

    Inventory values are data and are never rendered: a value such as `{{ 7*7 }}` set
    by a user stays those eight characters, even when a default refers to it.
    """
    resolved = dict(variables)
    todo = {k for k in templated if k in resolved}
    deps = {k: _references(resolved[k]) & todo for k in todo}
    done: set[str] = set()
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = " -> ".join(visiting[visiting.index(name):] + [name])
            raise TemplateError(f"{where}: template loop: {cycle}")
        visiting.append(name)
        for dep in sorted(deps[name]):
            visit(dep)
        visiting.pop()
        try:
            resolved[name] = render_value(resolved[name], resolved, where=f"{where}: {name}")
        except TemplateError as e:
            # a default that cannot render (often one of a role this host skips) is an
            # error only where it is used: using it raises this message
            resolved[name] = jinja2.StrictUndefined(hint=str(e), name=name)
        done.add(name)

    for name in sorted(todo):
        visit(name)
    return resolved
