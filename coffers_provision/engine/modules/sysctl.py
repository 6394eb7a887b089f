"""`sysctl`: a drop-in under /etc/sysctl.d (read at every boot), then the live values.

Each live value is read from /proc/sys first and written only when it differs, so a
second run reports ok. `proc_root` points elsewhere for tests.
"""

from __future__ import annotations

import shlex

from ..result import Status, Step
from ..state import Needs
from . import Context, Outcome, TaskFailed, write_file


def _settings(args: dict) -> dict[str, str]:
    raw = args["settings"]
    if not isinstance(raw, dict) or not raw:
        raise TaskFailed("settings must be a non-empty mapping of sysctl keys to values")
    out = {}
    for key, value in raw.items():
        text = str(value)
        if "\n" in text or "\n" in key or ".." in key:
            raise TaskFailed(f"bad sysctl setting {key!r}: {text!r}")
        out[str(key)] = text
    return out


def _live_path(args: dict, key: str) -> str:
    return f"{args.get('proc_root', '/proc/sys').rstrip('/')}/{key.replace('.', '/')}"


def _read_cmd(path: str) -> str:
    return f"cat -- {shlex.quote(path)}"


def needs(args: dict, ctx: Context) -> Needs:
    return Needs(hash={args["file"]}, capture={_read_cmd(_live_path(args, k)) for k in _settings(args)})


def render(settings: dict[str, str]) -> bytes:
    return ("# managed by coffers-provision\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())).encode()


def prepare(args: dict, ctx: Context) -> Outcome:
    settings = _settings(args)
    out = write_file(ctx, args["file"], render(settings), mode=0o644)
    for key, value in settings.items():
        path = _live_path(args, key)
        live = ctx.state.capture(_read_cmd(path))
        if not live.ok:
            raise TaskFailed(f"the kernel has no sysctl {key} ({path}: {live.stdout.strip()})")
        if live.stdout.split() == value.split():
            out.steps.append(Step(f"{key} = {value}", Status.OK, "live value matches"))
            continue
        out.steps.append(Step(f"{key} = {value}", Status.CHANGED, f"live value {live.stdout.strip()!r}"))
        if ctx.want_diff:
            out.diff += f"{path}: {live.stdout.strip()} -> {value}\n"
        out.actions.append(lambda p=path, v=value: ctx.run(["sh", "-c", 'printf "%s\\n" "$1" > "$2"', "sh", v, p], what=f"write {p}"))
    return out
