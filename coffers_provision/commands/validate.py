"""`validate INVENTORY`: check an inventory and every vars file beside it."""

from __future__ import annotations

import argparse
import sys

from ..inventory import InventoryError, load_inventory
from ..output import diagnostics
from ..status import ExitStatus
from ..vault import default_secret
from .inventory import add_source_arguments, sources_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check an inventory and its group_vars/host_vars files")
    add_source_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> ExitStatus:
    sources = sources_of(args)
    if not sources:
        print("validate: error: the following arguments are required: inventory (or -i SRC)", file=sys.stderr)
        return ExitStatus.USAGE
    try:
        inv = load_inventory(sources, vault_secret=default_secret(args.vault_password_file))
    except InventoryError as e:
        diagnostics(e.diagnostics)
        print(f"{len(e.diagnostics)} error(s)", file=sys.stderr)
        return ExitStatus.ERROR
    for w in inv.warnings:
        print(f"{w} (warning)", file=sys.stderr)
    groups = [g for g in inv.groups if g != "all"]
    print(f"{' '.join(sources)}: valid, {len(inv.hosts)} host(s) in {len(groups)} group(s)")
    return ExitStatus.SUCCESS
