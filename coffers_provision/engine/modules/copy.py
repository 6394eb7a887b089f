"""`copy`: a file from the role's files/, an absolute path on the machine running apply
(a generated model, a source archive), or inline `content`; compared by checksum."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..state import Needs
from . import Context, Outcome, TaskFailed, parse_mode, sha256, write_file


def needs(args: dict, ctx: Context) -> Needs:
    return Needs(hash={args["dest"]})


@lru_cache(maxsize=64)
def _read(path: str, mtime_ns: int, size: int) -> tuple[bytes, str]:
    """A local file and its sha256, read once per version for every host of the run."""
    data = Path(path).read_bytes()
    return data, sha256(data)


def source(args: dict, ctx: Context) -> tuple[bytes, str | None]:
    if "content" in args:
        return str(args["content"]).encode(), None
    src = str(args["src"])
    path = Path(src) if src.startswith("/") else ctx.role.file_path(src)
    try:
        st = path.stat()
        return _read(str(path), st.st_mtime_ns, st.st_size)
    except OSError as e:
        shown = src if src.startswith("/") else f"{ctx.role.name}/files/{src}"
        raise TaskFailed(f"{shown}: {e.strerror}") from None


def prepare(args: dict, ctx: Context) -> Outcome:
    data, digest = source(args, ctx)
    return write_file(
        ctx, args["dest"], data, digest=digest,
        mode=parse_mode(args.get("mode")), owner=args.get("owner"), group=args.get("group"),
    )
