"""`copy`: a file from the role's files/, an absolute path on the machine running apply
(a generated model, a source archive), or inline `content`; compared by checksum."""

from __future__ import annotations

from ..state import Needs
from . import Context, Outcome, TaskFailed, parse_mode, write_file


def needs(args: dict, ctx: Context) -> Needs:
    return Needs(stat={args["dest"]})


def source(args: dict, ctx: Context) -> bytes:
    if "content" in args:
        return str(args["content"]).encode()
    src = str(args["src"])
    try:
        return open(src, "rb").read() if src.startswith("/") else ctx.role.file_bytes(src)
    except OSError as e:
        shown = src if src.startswith("/") else f"{ctx.role.name}/files/{src}"
        raise TaskFailed(f"{shown}: {e.strerror}") from None


def prepare(args: dict, ctx: Context) -> Outcome:
    return write_file(
        ctx, args["dest"], source(args, ctx),
        mode=parse_mode(args.get("mode")), owner=args.get("owner"), group=args.get("group"),
    )
