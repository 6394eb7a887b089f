"""A play compiled into plain steps that another engine carries out (the Ansible
collection's `serve` role, docs/ansible.md).

Every file comes with its exact bytes (or the local path they are read from), every build
with its stamp, every command with its check, every unit with its wanted state, each with
the handlers it notifies. The bytes come from the same modules and templates the runner
uses, and build stamps are computed by the build module itself, so either engine leaves
the same files on a host and each sees the other's work as done. Reading the host
(compiler version, stale unit instances) goes through `HostState`, never a write.
"""

from __future__ import annotations

import os
import shlex
from typing import Any, Mapping

from .modules import SYSTEMD_BOOTED, Context, TaskFailed, get, parse_mode
from .modules import build, copy, sysctl, systemd_unit, template
from .role import Play
from . import handlers as pending
from .runner import ENGINE_DEFAULTS, Entry, expand, play_entries
from .state import HostState, Needs
from .templating import TemplateError


def _ctx(host: str, state: HostState, variables: Mapping[str, Any], entry: Entry) -> Context:
    return Context(host, state.conn, state, variables, entry.task.role)


def _mode(value: Any, default: int | None) -> str | None:
    mode = parse_mode(value)
    mode = default if mode is None else mode
    return None if mode is None else f"{mode:04o}"


def _file(path: str, data: bytes | None, *, mode: str | None, src: str | None = None, **extra: Any) -> dict[str, Any]:
    """A file step: text content inline, anything else as a local path to upload."""
    return {"dest": path, "mode": mode, "content": None if data is None else data.decode(),
            "src": None if data is not None else src, "validate": None, "notify": [], **extra}


def _copy(args: dict, ctx: Context) -> dict[str, Any]:
    mode = _mode(args.get("mode"), None)
    if "content" in args:
        return _file(args["dest"], str(args["content"]).encode(), mode=mode)
    src = str(args["src"])
    path = src if src.startswith("/") else str(ctx.role.file_path(src))
    if not os.path.isfile(path):
        copy.source(args, ctx)  # raises the runner's own message
    return _file(args["dest"], None, mode=mode, src=path)


def _unit(args: dict, ctx: Context, notify: list[str], needs_files: list[str]) -> dict[str, Any]:
    name, unit_dir = args["name"], systemd_unit._unit_dir(args, ctx)
    state = args.get("state", "started")
    units = systemd_unit._units(args)
    files: list[dict[str, Any]] = []
    if state != "absent":
        if "src" in args:
            files.append(_file(f"{unit_dir}/{name}", systemd_unit.render(ctx, args["src"]), mode="0644"))
        if systemd_unit._is_template(name) and "dropin_src" in args:
            for item, unit in zip(systemd_unit._instances(args), units):
                path = f"{systemd_unit._dropin_dir(unit_dir, unit)}/{systemd_unit.DROPIN}"
                files.append(_file(path, systemd_unit.render(ctx, args["dropin_src"], {"instance": item}), mode="0644"))
    stale = systemd_unit._stale(args, ctx, unit_dir)
    gone = stale + (units if state == "absent" else [])
    remove = [f"{systemd_unit._dropin_dir(unit_dir, u)}/{systemd_unit.DROPIN}" for u in gone]
    if state == "absent":
        remove.append(f"{unit_dir}/{name}")
    return {
        "name": name, "state": state, "units": units if state != "absent" else [], "stop": gone,
        "unit_dir": unit_dir, "files": files, "remove": remove, "needs_files": needs_files, "notify": notify,
        "verify": bool(units) and state != "absent",
    }


def _sysctl(args: dict, notify: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    settings = sysctl._settings(args)
    commands = []
    for key, value in settings.items():
        path = sysctl._live_path(args, key)
        commands.append({
            "name": f"{key} = {value}",
            "argv": ["sh", "-c", 'printf "%s\\n" "$1" > "$2"', "sh", value, path],
            # the runner's comparison: the live value's words equal the wanted value's
            "unless": ["sh", "-c", 'set -- "$(cat -- "$1")" "$2"; [ "$(echo $1)" = "$(echo $2)" ]', "sh", path, value],
            "creates": None, "timeout": None, "notify": notify,
        })
    return _file(args["file"], sysctl.render(settings), mode="0644", notify=notify), commands


def compile_play(host: str, play: Play, variables: Mapping[str, Any], state: HostState, extra: Needs | None = None) -> dict[str, Any]:
    """The play's steps for one host, in the order a runner of fixed phases needs them:
    directories, files, builds, commands, units, then the handlers to run when notified.
    `extra`: what the caller reads too, fetched in the same round trip.
    Raises TaskFailed or TemplateError with the runner's own messages."""
    entries, _ = play_entries(play, variables)
    for entry in entries:
        if entry.error:
            raise TaskFailed(entry.error)
    live = [e for e in entries if e.args is not None and not e.skip]
    needs = Needs(capture={SYSTEMD_BOOTED}, read={pending.path(str(variables.get("state_dir", ENGINE_DEFAULTS["state_dir"])))})
    if extra:
        needs.update(extra)
    for e in live:
        needs.update(get(e.task.module).needs(e.args, _ctx(host, state, variables, e)))
    state.prefetch(needs)
    state_dir = str(variables.get("state_dir", ENGINE_DEFAULTS["state_dir"]))
    out: dict[str, Any] = {"dirs": [], "files": [], "builds": [], "commands": [], "units": [], "handlers": {},
                           "systemd": state.capture(SYSTEMD_BOOTED).ok,
                           "pending": pending.load(state, state_dir), "pending_file": pending.path(state_dir)}
    for e in live:
        args, ctx, notify, module = e.args, _ctx(host, state, variables, e), list(e.task.notify), e.task.module
        if module == "file":
            key = "absent" if args.get("state", "directory") == "absent" else "directory"
            out["dirs"].append({"path": args["path"], "state": key, "mode": _mode(args.get("mode"), None)})
        elif module == "copy":
            out["files"].append({**_copy(args, ctx), "notify": notify})
        elif module == "template":
            validate = args.get("validate")
            out["files"].append(_file(args["dest"], template.render(ctx, args["src"]), mode=_mode(args.get("mode"), None),
                                      notify=notify, validate=shlex.join(map(str, validate)) if validate else None))
        elif module == "build":
            w = build.wanted(args, ctx)
            out["builds"].append({
                "output": args["output"], "mode": f"{w.mode:04o}", "stamp": w.stamp_file, "stamp_content": w.stamp_bytes.decode(),
                "sources": {n: str(ctx.role.file_path(s)) for n, s in zip(w.names, args["sources"])},
                "argv": w.argv(build._compiler(args), "@WORKDIR@", f"{os.path.dirname(args['output'])}/.{os.path.basename(args['output'])}.coffers-build"),
                "notify": notify,
            })
        elif module == "command":
            out["commands"].append({"name": e.name, "argv": shlex.split(_command_line(args)), "unless": args.get("unless"),
                                    "creates": args.get("creates"), "timeout": args.get("timeout"), "notify": notify})
        elif module == "sysctl":
            file, commands = _sysctl(args, notify)
            out["files"].append(file)
            out["commands"] += commands
        elif module == "systemd_unit":
            out["units"].append(_unit(args, ctx, notify, e.needs_files))
        else:
            raise TaskFailed(f"{e.task.where}: module {module!r} has no Ansible form")
    for name, task in play.handlers.items():
        for h in expand(task, variables):
            if h.error:
                raise TemplateError(h.error)
            if h.args is not None and not h.skip:
                out["handlers"].setdefault(name, []).append({"units": systemd_unit._units(h.args), "state": h.args.get("state")})
    return out


def _command_line(args: dict) -> str:
    """The runner's exact command line, as argv for a runner that takes one."""
    from .modules.command import command_line

    line = command_line(args)
    return line[len("exec "):] if line.startswith("exec ") else "sh -c " + shlex.quote(line)
