"""Command-line entry point: argument parsing and dispatch only.

Each subcommand lives in `commands/<name>.py` with `register(subparsers)` and
`run(args) -> ExitStatus`; the library does the work.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .status import ExitStatus

# Order here is the order of `--help`.
COMMANDS = ["validate", "topology", "model", "plan", "probe", "apply", "bench"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 itself; keep it, name the program
        self.print_usage(sys.stderr)
        self.exit(ExitStatus.USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="coffers-provision",
        description="NUMA-aware provisioning and config generation for llama.cpp inference fleets.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        return ExitStatus.SUCCESS
