"""The file-dump format that facts use to bring many small files back in one command.

`grep -sH '' FILE...` prints every line of every readable file as `PATH:LINE`
(one process, however many files; unreadable ones are skipped). Kernel pseudo-file
paths hold no colon, so the first colon splits path from content.
"""

from __future__ import annotations


def dump_command(*paths: str) -> str:
    """The shell command that dumps `paths` (globs allowed, left for the shell to expand)."""
    return "grep -sH '' " + " ".join(paths)


def parse_dump(text: str, root: str = "") -> dict[str, str]:
    """`{path: content}` from dump text; with `root`, paths are made relative to it."""
    files: dict[str, str] = {}
    prefix = root.rstrip("/") + "/" if root else ""
    for line in text.splitlines():
        path, sep, content = line.partition(":")
        if not sep:
            continue
        if prefix:
            if not path.startswith(prefix):
                continue
            path = path[len(prefix) :]
        files[path] = files.get(path, "") + content + "\n"
    return files
