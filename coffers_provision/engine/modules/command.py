"""`command`: run an argv list on the host, every word quoted.

Idempotence comes from `creates` (nothing to do when the path exists) or `unless` (a
read-only check that runs in --check too; exit 0 means nothing to do). `changed_when`
is an expression on `result` (rc, stdout, stderr) judged after the command ran.
"""

from __future__ import annotations

import shlex
from typing import Any

from ..result import Status, Step
from ..state import Needs
from ..templating import TemplateError, evaluate
from . import Context, Outcome, TaskFailed


def _argv(value: Any, what: str) -> list[str]:
    """The words of a command; a word that is itself a list (a `{{ list }}` var) is spliced in."""
    if not isinstance(value, list) or not value:
        raise TaskFailed(f"{what} must be a non-empty list of words, got {type(value).__name__}")
    words: list[str] = []
    for w in value:
        if isinstance(w, (list, tuple)):
            words += [str(x) for x in w]
        elif isinstance(w, (dict, type(None))):
            raise TaskFailed(f"{what}: a word must be a string, got {type(w).__name__}")
        else:
            words.append(str(w))
    return words


def command_line(args: dict) -> str:
    """The exact shell line: every word quoted, environment through env(1), chdir through cd."""
    argv = _argv(args["argv"], "argv")
    env = args.get("environment") or {}
    if not isinstance(env, dict):
        raise TaskFailed("environment must be a mapping")
    words = (["env", *(f"{k}={v}" for k, v in env.items())] if env else []) + argv
    line = "exec " + shlex.join(words)
    if args.get("chdir"):
        line = f"cd -- {shlex.quote(args['chdir'])} && {line}"
    return line


def needs(args: dict, ctx: Context) -> Needs:
    out = Needs()
    if args.get("creates"):
        out.stat.add(args["creates"])
    if args.get("unless") is not None:
        out.capture.add(shlex.join(_argv(args["unless"], "unless")))
    return out


def prepare(args: dict, ctx: Context) -> Outcome:
    line = command_line(args)
    shown = shlex.join(_argv(args["argv"], "argv"))
    if args.get("creates") and ctx.state.stat(args["creates"]) is not None:
        return Outcome([Step(shown, Status.OK, f"{args['creates']} exists")])
    if args.get("unless") is not None:
        check = ctx.state.capture(shlex.join(_argv(args["unless"], "unless")))
        if check.ok:
            return Outcome([Step(shown, Status.OK, "`unless` check passed")])
    changed_when = args.get("changed_when", True)
    note = "" if changed_when is True else " (changed_when judges the result)"
    outcome = Outcome([Step(shown, Status.CHANGED, "run" + note)], diff=f"run: {shown}\n" if ctx.want_diff else "")

    def action() -> None:
        result = ctx.conn.run(line, timeout=args.get("timeout"))
        if not result.ok:
            detail = (result.stderr.strip() or result.stdout.strip())[-2000:]
            raise TaskFailed(f"{shown} exited {result.rc}: {detail}")
        try:
            changed = bool(evaluate(changed_when, {**ctx.vars, "result": result}, where="changed_when"))
        except TemplateError as e:
            raise TaskFailed(str(e)) from None
        outcome.steps[0] = Step(shown, Status.CHANGED if changed else Status.OK, "ran")

    outcome.actions.append(action)
    return outcome
