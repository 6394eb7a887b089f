"""Compile the native tools and the C test programs for the tests.

Each (source, compiler, flags) is built once per test process, into a temporary directory
that is removed at exit. Every build uses -Wall -Wextra -Werror.
"""

from __future__ import annotations

import atexit
import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "roles" / "native_tools" / "files"
C_TESTS = ROOT / "tests" / "c"
HEADER = FILES / "ggml-numa-shard.h"
TOOL_HEADER = FILES / "numa-shard-tool.h"  # internal to the two tools, not installed
BENCH = FILES / "numa-shard-bench.c"
PLACE = FILES / "numa-shard-place.c"

WARN = ("-Wall", "-Wextra", "-Werror")
SANITIZE = ("-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer")
OPTIMIZE = ("-O2",)
LIBS = ("-lnuma", "-lpthread")

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"', re.M)
_OUT = Path(tempfile.mkdtemp(prefix="coffers-native-"))
atexit.register(shutil.rmtree, _OUT, True)


def local_includes(source: Path) -> set[str]:
    """The files/ names that `source` includes with quotes, followed through those files."""
    seen: set[str] = set()
    todo = [source]
    while todo:
        for name in _INCLUDE.findall(todo.pop().read_text()):
            if name not in seen and (FILES / name).is_file():
                seen.add(name)
                todo.append(FILES / name)
    return seen


class BuildError(AssertionError):
    pass


def compile_c(source: Path, out: Path, cc: str = "gcc", flags: tuple[str, ...] = (), link: bool = True) -> Path:
    """Compile `source` with the warnings that must stay off; raise BuildError with the output."""
    cmd = [cc, *flags, *WARN, f"-I{FILES}", str(source), "-o", str(out)]
    if link:
        cmd += LIBS
    else:
        cmd.insert(1, "-c")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return out


@functools.cache
def build(source: Path, cc: str = "gcc", flags: tuple[str, ...] = OPTIMIZE) -> Path:
    """The program built from `source` (cached per process)."""
    tag = abs(hash((str(source), cc, flags)))
    return compile_c(source, _OUT / f"{source.stem}-{cc}-{tag:x}", cc, flags)


def sanitized(source: Path) -> Path:
    return build(source, "gcc", ("-std=c99", *SANITIZE))
