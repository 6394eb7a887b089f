"""`inventory list INVENTORY...`: the resolved inventory as `ansible-inventory` prints it
(`--list`, `--host H`, `--graph`, `--yaml`), so the two tools can be diffed."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from ..inventory import InventoryError, load_inventory
from ..inventory.listing import as_graph, as_list, as_yaml, host_vars
from ..output import diagnostics, error
from ..status import ExitStatus
from ..vault import VaultError, default_secret


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """INVENTORY (one or more), `-i SRC` (again and again), and the vault password flag."""
    p.add_argument("inventory", nargs="*", help="inventory sources: files, directories or scripts, read in order")
    p.add_argument("-i", "--inventory-source", dest="more_sources", action="append", default=[], metavar="SRC",
                   help="another inventory source (may be given more than once)")
    p.add_argument("--vault-password-file", metavar="FILE", help="password for vault-encrypted values and files (default $ANSIBLE_VAULT_PASSWORD_FILE)")


def sources_of(args: argparse.Namespace) -> list[str]:
    return [*args.inventory, *args.more_sources]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inventory", help="the resolved inventory, as ansible-inventory prints it")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    ls = verbs.add_parser("list", help="print the inventory: groups, hosts and every host's vars (--list shape)")
    add_source_arguments(ls)
    shape = ls.add_mutually_exclusive_group()
    shape.add_argument("--host", metavar="H", help="only this host's vars (the --host shape)")
    shape.add_argument("--graph", action="store_true", help="the group tree")
    ls.add_argument("--yaml", action="store_true", help="YAML instead of JSON")
    ls.set_defaults(func=run)


def run(args: argparse.Namespace) -> ExitStatus:
    sources = sources_of(args)
    if not sources:
        error("inventory list: the following arguments are required: inventory (or -i SRC)")
        return ExitStatus.USAGE
    try:
        inv = load_inventory(sources, vault_secret=default_secret(args.vault_password_file), check_connections=False)
    except InventoryError as e:
        diagnostics(e.diagnostics)
        return ExitStatus.ERROR
    except VaultError as e:
        error(str(e))
        return ExitStatus.ERROR
    if args.graph:
        sys.stdout.write(as_graph(inv))
        return ExitStatus.SUCCESS
    if args.host is not None:
        if args.host not in inv.hosts:
            error(f"inventory list --host: no host {args.host!r} in the inventory")
            return ExitStatus.ERROR
        data = host_vars(inv.hosts[args.host])
    else:
        data = as_yaml(inv) if args.yaml else as_list(inv)
    if args.yaml:
        sys.stdout.write(yaml.safe_dump(data, default_flow_style=False, sort_keys=True, allow_unicode=True))
    else:
        sys.stdout.write(json.dumps(data, indent=4, sort_keys=True, ensure_ascii=False) + "\n")
    return ExitStatus.SUCCESS
