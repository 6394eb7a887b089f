"""Roles as data: `roles/<name>/{tasks,handlers,defaults}.yml`, `templates/`, `files/`.

Every file is checked against schemas/role.schema.json when loaded, and so is every
reference a task makes (a template, a source file, a handler name), so a bad role fails
before any host is touched, with FILE:LINE:COL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2

from ..errors import DiagnosticsError
from ..schema import Diagnostic, Located, YamlError, check, load_yaml
from .templating import make_env

MODULES = ("file", "copy", "template", "command", "build", "systemd_unit", "sysctl")
TASK_KEYWORDS = ("name", "when", "loop", "notify", "needs_files")


class RoleError(DiagnosticsError):
    """One or more problems; each is a Diagnostic printed as FILE:LINE:COL: path: message."""


@dataclass(frozen=True)
class Task:
    name: str
    module: str
    args: dict[str, Any]
    role: "Role" = field(repr=False, compare=False)
    where: str  # FILE:LINE of the task, for messages
    when: str | bool | None = None
    loop: Any = None
    notify: tuple[str, ...] = ()
    needs_files: Any = None


@dataclass(frozen=True, eq=False)
class Role:
    name: str
    path: Path
    tasks: tuple[Task, ...] = ()
    handlers: tuple[Task, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def templates(self) -> jinja2.Environment:
        return make_env(self.path / "templates")

    def file_path(self, name: str) -> Path:
        return self.path / "files" / name

    def file_bytes(self, name: str) -> bytes:
        return self.file_path(name).read_bytes()


@dataclass(frozen=True)
class PlayRole:
    role: Role
    when: str | bool | None


@dataclass(frozen=True)
class Play:
    roles: tuple[PlayRole, ...]

    @property
    def handlers(self) -> dict[str, Task]:
        """Handlers by name, in definition order (the order they run in)."""
        return {h.name: h for pr in self.roles for h in pr.role.handlers}


def _load(path: Path, ref: str, problems: list[Diagnostic]) -> Located | None:
    if not path.exists():
        return None
    try:
        located = load_yaml(path)
    except YamlError as e:
        problems.append(e.diagnostic)
        return None
    if located.data is None:
        located.data = {} if ref == "defaults" else []
    if ref == "tasks" and isinstance(located.data, list):
        return located  # checked task by task, so one bad task does not hide the others
    found = check("role", located, ref=ref)
    problems.extend(found)
    return None if found else located


def _tasks(role: Role, located: Located | None, problems: list[Diagnostic]) -> tuple[Task, ...]:
    if located is None:
        return ()
    out = []
    for i, raw in enumerate(located.data):
        found = check("role", located, at=(i,), ref="task")
        if found:
            problems.extend(found)
            continue
        modules = [k for k in raw if k in MODULES]
        if len(modules) != 1:
            problems.append(located.diag((i,), f"a task names exactly one module ({', '.join(MODULES)}); found {len(modules)}"))
            continue
        module = modules[0]
        args = raw[module]
        _check_refs(role, located, (i, module), module, args, problems)
        line, _ = located.where((i,))
        notify = raw.get("notify", ())
        out.append(
            Task(
                name=raw["name"],
                module=module,
                args=args,
                role=role,
                where=f"{located.file}:{line}",
                when=raw.get("when"),
                loop=raw.get("loop"),
                notify=(notify,) if isinstance(notify, str) else tuple(notify),
                needs_files=raw.get("needs_files"),
            )
        )
    return tuple(out)


def _check_refs(role: Role, located: Located, at: tuple, module: str, args: dict, problems: list[Diagnostic]) -> None:
    """Files a task names must exist in the role (templated names are checked when rendered)."""

    def need(kind: str, name: str, key: tuple) -> None:
        if "{{" not in name and not name.startswith("/") and not (role.path / kind / name).is_file():
            problems.append(located.diag(at + key, f"no such file: {role.name}/{kind}/{name}"))

    if module == "copy" and "src" in args:
        need("files", args["src"], ("src",))
    if module == "template":
        need("templates", args["src"], ("src",))
    if module == "systemd_unit":
        for key in ("src", "dropin_src"):
            if key in args:
                need("templates", args[key], (key,))
    if module == "build":
        for j, src in enumerate(args["sources"]):
            need("files", src, ("sources", j))


def load_role(path: str | Path) -> Role:
    """Load and check one role directory."""
    path = Path(path)
    problems: list[Diagnostic] = []
    if not (path / "tasks.yml").is_file():
        raise RoleError([Diagnostic(str(path), 1, 1, "$", "not a role: no tasks.yml")])
    defaults = _load(path / "defaults.yml", "defaults", problems)
    role = Role(name=path.name, path=path, defaults=dict(defaults.data) if defaults else {})
    tasks = _tasks(role, _load(path / "tasks.yml", "tasks", problems), problems)
    handlers_file = _load(path / "handlers.yml", "tasks", problems)
    handlers = _tasks(role, handlers_file, problems)
    seen: set[str] = set()
    for i, h in enumerate(handlers):
        if h.name in seen:
            problems.append(handlers_file.diag((i, "name"), f"handler {h.name!r} defined twice"))
        seen.add(h.name)
    if problems:
        raise RoleError(problems)
    object.__setattr__(role, "tasks", tasks)
    object.__setattr__(role, "handlers", handlers)
    return role


def load_play(play_file: str | Path, roles_dir: str | Path | None = None) -> Play:
    """A play file (list of `{role, when}`) with its roles, from `roles_dir` (default: beside it)."""
    play_file = Path(play_file)
    roles_dir = Path(roles_dir) if roles_dir else play_file.parent
    problems: list[Diagnostic] = []
    located = _load(play_file, "play", problems)
    if located is None:
        if not play_file.exists():
            problems.append(Diagnostic(str(play_file), 1, 1, "$", "no such play file"))
        raise RoleError(problems)
    entries: list[PlayRole] = []
    for i, item in enumerate(located.data):
        if not (roles_dir / item["role"] / "tasks.yml").is_file():
            problems.append(located.diag((i, "role"), f"no role {item['role']!r} in {roles_dir}"))
            continue
        try:
            entries.append(PlayRole(load_role(roles_dir / item["role"]), item.get("when")))
        except RoleError as e:
            problems.extend(e.diagnostics)
    play = Play(tuple(entries))
    # a task may notify a handler of a role outside this play (bench rebuilds a tool the
    # service uses): it stays pending on the host for the play that has it
    handlers = set(play.handlers)
    for other in sorted(roles_dir.glob("*/handlers.yml")):
        if other.parent.name not in {pr.role.name for pr in entries}:
            try:
                handlers |= {h.name for h in load_role(other.parent).handlers}
            except RoleError:
                pass  # reported when a play uses that role
    for pr in entries:
        for t in pr.role.tasks + pr.role.handlers:
            for name in t.notify:
                if name not in handlers:
                    problems.append(Diagnostic(t.where.rsplit(":", 1)[0], int(t.where.rsplit(":", 1)[1]), 1, "$.notify", f"no handler named {name!r}"))
    if problems:
        raise RoleError(problems)
    return play
