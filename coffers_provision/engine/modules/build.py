"""`build`: compile C sources from the role's files/ on the host with gcc.

It rebuilds only when the source hash, the compiler version or the flags changed: a
stamp (JSON, under <state_dir>/build/) records what the installed binary was built
from. The binary is linked to a temp name beside the output and renamed over it, then
the stamp is written; a run killed in between rebuilds next time, which converges.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import dataclass

from ..result import Status, Step
from ..state import Needs, PathState
from . import Context, Outcome, TaskFailed, parse_mode, sweep

UNAME = "uname -m"
# -march=native is spelled -mcpu=native on POWER and ARM
_MCPU = ("ppc64le", "ppc64", "ppc", "aarch64", "arm64", "armv7l", "armv8l")
_MARCH = ("x86_64", "i386", "i686", "s390x", "loongarch64")


def native_flag(arch: str) -> list[str]:
    if arch in _MCPU:
        return ["-mcpu=native"]
    if arch in _MARCH:
        return ["-march=native"]
    return []


def _compiler(args: dict) -> str:
    return str(args.get("compiler", "gcc"))


def _version_cmd(args: dict) -> str:
    return f"{shlex.quote(_compiler(args))} --version | head -n 1"


def stamp_path(args: dict, ctx: Context) -> str:
    out = args["output"]
    stamp_dir = args.get("stamp_dir") or os.path.join(str(ctx.vars.get("state_dir", "/var/lib/coffers")), "build")
    return os.path.join(stamp_dir, f"{os.path.basename(out)}-{hashlib.sha256(out.encode()).hexdigest()[:8]}.json")


def needs(args: dict, ctx: Context) -> Needs:
    return Needs(stat={args["output"]}, read={stamp_path(args, ctx)}, capture={_version_cmd(args), UNAME})


def _words(value, what: str) -> list[str]:
    if not isinstance(value, list):
        raise TaskFailed(f"{what} must be a list of words")
    return [str(v) for v in value]


@dataclass(frozen=True)
class Wanted:
    """What the installed binary must be built from, and how: the stamp and the compile."""

    names: list[str]
    blobs: dict[str, bytes]
    flags: list[str]
    libs: list[str]
    mode: int
    stamp: dict
    stamp_file: str

    @property
    def stamp_bytes(self) -> bytes:
        return (json.dumps(self.stamp, sort_keys=True) + "\n").encode()

    def argv(self, compiler: str, workdir: str, output: str) -> list[str]:
        c_files = [n for n in self.names if n.endswith(".c")]
        if not c_files:
            raise TaskFailed("build: no .c file among the sources")
        return [compiler, *self.flags, "-I", workdir, *(f"{workdir}/{c}" for c in c_files), "-o", output, *self.libs]


def wanted(args: dict, ctx: Context) -> Wanted:
    """The build stamp a converged host holds (sources' hashes, compiler, flags)."""
    output, sources = args["output"], list(args["sources"])
    names = [os.path.basename(s) for s in sources]
    try:
        blobs = {os.path.basename(s): ctx.role.file_bytes(s) for s in sources}
    except OSError as e:
        raise TaskFailed(f"{ctx.role.name}/files: {e.filename}: {e.strerror}") from None
    version = ctx.state.capture(_version_cmd(args))
    if not version.ok or not version.stdout.strip():
        raise TaskFailed(f"no compiler {_compiler(args)!r} on the host (install gcc)")
    arch = ctx.state.capture(UNAME).stdout.strip()
    flags = _words(args.get("cflags", ["-O3"]), "cflags") + native_flag(arch)
    libs = _words(args.get("libs", ["-lnuma"]), "libs")
    stamp = {
        "output": output,
        "sources": {n: hashlib.sha256(blobs[n]).hexdigest() for n in sorted(blobs)},
        "compiler": version.stdout.strip(),
        "flags": flags + libs,
    }
    return Wanted(names, blobs, flags, libs, parse_mode(args.get("mode", "0755")), stamp, stamp_path(args, ctx))


def prepare(args: dict, ctx: Context) -> Outcome:
    output = args["output"]
    w = wanted(args, ctx)
    names, blobs, mode, want = w.names, w.blobs, w.mode, w.stamp
    stamp_file = w.stamp_file
    raw = ctx.state.read(stamp_file)
    try:
        have = json.loads(raw) if raw else None
    except ValueError:
        have = None
    exists = ctx.state.stat(output) is not None
    step = f"build {output}"
    if exists and have == want:
        return Outcome([Step(step, Status.OK, "up to date")])
    if not exists:
        why = ["output missing"]
    elif have is None:
        why = ["no build stamp"]
    else:
        why = [f"{k} changed" for k in ("sources", "compiler", "flags") if have.get(k) != want[k]] or ["stamp differs"]
    diff = ""
    if ctx.want_diff:
        diff = f"{output}: rebuild ({', '.join(why)})\n"
        if have:
            for k in ("sources", "compiler", "flags"):
                if have.get(k) != want[k]:
                    diff += f"  {k}: {json.dumps(have.get(k))} -> {json.dumps(want[k])}\n"
    stamp_bytes = w.stamp_bytes
    tmp_out = os.path.join(os.path.dirname(output), f".{os.path.basename(output)}.coffers-build")
    w.argv(_compiler(args), "", tmp_out)  # no .c file fails here, before anything runs

    def action() -> None:
        workdir = ctx.run(["mktemp", "-d", "/tmp/coffers-build.XXXXXXXX"]).stdout.strip()
        try:
            for n in names:
                ctx.conn.put(blobs[n], f"{workdir}/{n}", mode=0o644)
            argv = w.argv(_compiler(args), workdir, tmp_out)
            ctx.run(argv, what=f"{_compiler(args)} ({os.path.basename(output)})")
            ctx.run(["chmod", f"{mode:04o}", "--", tmp_out])
            ctx.run(["mv", "-f", "--", tmp_out, output])
            sweep(ctx, output)
        finally:
            ctx.conn.run(["rm", "-rf", "--", workdir])
        ctx.run(["mkdir", "-p", "--", os.path.dirname(stamp_file)])
        ctx.conn.put(stamp_bytes, stamp_file, mode=0o644)
        sweep(ctx, stamp_file)

    return Outcome(
        [Step(step, Status.CHANGED, ", ".join(why))],
        actions=[action],
        diff=diff,
        effects={output: PathState("file", mode, 0, 0, "root", "root")},
        contents={stamp_file: stamp_bytes},
    )
