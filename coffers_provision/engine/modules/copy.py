"""`copy`: a file from the role's files/ (or inline `content`), compared by checksum."""

from __future__ import annotations

from ..state import Needs
from . import Context, Outcome, TaskFailed, parse_mode, write_file


def needs(args: dict, ctx: Context) -> Needs:
    return Needs(stat={args["dest"]})


def source(args: dict, ctx: Context) -> bytes:
    if "content" in args:
        return str(args["content"]).encode()
    try:
        return ctx.role.file_bytes(args["src"])
    except OSError as e:
        raise TaskFailed(f"{ctx.role.name}/files/{args['src']}: {e.strerror}") from None


def prepare(args: dict, ctx: Context) -> Outcome:
    return write_file(
        ctx, args["dest"], source(args, ctx),
        mode=parse_mode(args.get("mode")), owner=args.get("owner"), group=args.get("group"),
    )
