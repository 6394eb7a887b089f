"""`validate INVENTORY`: check an inventory and every vars file beside it."""

from __future__ import annotations

import argparse
import sys

from ..inventory import InventoryError, load_inventory
from ..output import diagnostics
from ..status import ExitStatus


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check an inventory and its group_vars/host_vars files")
    p.add_argument("inventory", help="inventory YAML file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> ExitStatus:
    try:
        inv = load_inventory(args.inventory)
    except InventoryError as e:
        diagnostics(e.diagnostics)
        print(f"{len(e.diagnostics)} error(s)", file=sys.stderr)
        return ExitStatus.ERROR
    for w in inv.warnings:
        print(f"{w} (warning)", file=sys.stderr)
    groups = [g for g in inv.groups if g != "all"]
    print(f"{args.inventory}: valid, {len(inv.hosts)} host(s) in {len(groups)} group(s)")
    return ExitStatus.SUCCESS
