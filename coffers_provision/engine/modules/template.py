"""`template`: a Jinja2 template from the role's templates/, rendered with the host's vars."""

from __future__ import annotations

from ..state import Needs
from ..templating import TemplateError, render_file
from . import Context, Outcome, TaskFailed, parse_mode, write_file


def needs(args: dict, ctx: Context) -> Needs:
    return Needs(stat={args["dest"]})


def render(ctx: Context, name: str, extra: dict | None = None) -> bytes:
    try:
        text = render_file(ctx.role.templates, name, {**ctx.vars, **(extra or {})}, where=f"{ctx.role.name}/templates/{name}")
    except TemplateError as e:
        raise TaskFailed(str(e)) from None
    return text.encode()


def prepare(args: dict, ctx: Context) -> Outcome:
    return write_file(
        ctx, args["dest"], render(ctx, args["src"]),
        mode=parse_mode(args.get("mode")), owner=args.get("owner"), group=args.get("group"),
    )
