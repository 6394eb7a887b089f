"""Command-line entry point: argument parsing, dispatch, and the one exception-to-exit mapping.

Each subcommand lives in `commands/<name>.py` with `register(subparsers)` and
`run(args) -> ExitStatus`; the library does the work. Only the command being run is
imported (the others are listed by their help line), so start-up stays cheap.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import CoffersError
from .status import ExitStatus

# name -> the help line of `coffers-provision --help`, in that order.
COMMANDS = {
    "validate": "check an inventory and its vars files against the schemas",
    "inventory": "the resolved inventory, as ansible-inventory prints it",
    "topology": "parse numactl --hardware text, or show this machine's NUMA topology",
    "model": "inspect a GGUF model's tensor table (header only)",
    "plan": "compute a host's deployment: strategy, shard map, threads, CPU lists, units",
    "probe": "gather facts from every host over SSH (cached)",
    "apply": "plan and deploy: native tools, units carrying the plan, restarts, health",
    "exec": "run a host's llama-server exactly as its unit would, in the foreground",
    "tune": "measure tokens/s of every strategy on each host and deploy the fastest",
    "bench": "run numa-shard-bench fleet-wide; report and compare stored results",
    "export": "write a ready Ansible project (the coffers.numa collection) deploying what apply deploys",
    "status": "what every host runs against its plan: drift, health, live placement, kernel hygiene",
    "report": "the fleet as one static HTML page: table, bandwidth heatmaps, tune charts",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 itself; keep it, name the program
        self.print_usage(sys.stderr)
        self.exit(ExitStatus.USAGE, f"{self.prog}: error: {message}\n")


def _available() -> dict[str, str]:
    """The commands whose module exists in this build."""
    from importlib.util import find_spec

    return {name: text for name, text in COMMANDS.items() if find_spec(f"{__package__}.commands.{name}") is not None}


def _chosen(argv: list[str], names: dict[str, str]) -> str | None:
    """The subcommand named on the command line (the first word that is one), if any."""
    return next((a for a in argv if a in names), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with `argv`, only the command it names is imported and fully registered."""
    parser = _Parser(
        prog="coffers-provision",
        description="NUMA-aware provisioning and config generation for llama.cpp inference fleets.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    names = _available()
    chosen = _chosen(argv, names) if argv is not None else None
    for name, text in names.items():
        if argv is None or name == chosen:
            importlib.import_module(f".commands.{name}", __package__).register(sub)
        else:
            sub.add_parser(name, help=text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args))
    except CoffersError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        return ExitStatus.SUCCESS
