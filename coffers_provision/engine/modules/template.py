"""`template`: a Jinja2 template from the role's templates/, rendered with the host's vars."""

from __future__ import annotations

from ..state import Needs
from ..templating import TemplateError, render_file
from . import Context, Outcome, TaskFailed, parse_mode, sha256, write_file


def needs(args: dict, ctx: Context) -> Needs:
    return Needs(hash={args["dest"]})


def render(ctx: Context, name: str, extra: dict | None = None) -> bytes:
    try:
        text = render_file(ctx.role.templates, name, {**ctx.vars, **(extra or {})}, where=f"{ctx.role.name}/templates/{name}")
    except TemplateError as e:
        raise TaskFailed(str(e)) from None
    return text.encode()


def validate(ctx: Context, argv: list[str], data: bytes, dest: str) -> None:
    """Run `argv` (its "%s" replaced by a staged copy) on new content before it replaces
    `dest`: a config its own program rejects never lands."""
    stage = ctx.run(["mktemp", "/tmp/coffers-validate.XXXXXXXX"]).stdout.strip()
    try:
        ctx.conn.put(data, stage, mode=0o600)
        r = ctx.conn.run([stage if a == "%s" else str(a) for a in argv], timeout=120)
    finally:
        ctx.conn.run(["rm", "-f", "--", stage])
    if r.rc == 127:
        raise TaskFailed(f"{dest}: {argv[0]} is not installed on the host (needed to check the file)")
    if not r.ok:
        raise TaskFailed(f"{dest}: {' '.join(map(str, argv))} rejects it (exit {r.rc}): {(r.stderr or r.stdout).strip()[-1500:]}")


def prepare(args: dict, ctx: Context) -> Outcome:
    data = render(ctx, args["src"])
    if args.get("validate"):
        st = ctx.state.stat(args["dest"], hashed=True)
        if st is None or st.sha256 != sha256(data):
            validate(ctx, list(args["validate"]), data, args["dest"])
    return write_file(
        ctx, args["dest"], data,
        mode=parse_mode(args.get("mode")), owner=args.get("owner"), group=args.get("group"),
    )
