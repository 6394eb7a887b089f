"""`probe INVENTORY`: gather and cache every host's facts, in parallel.

`add_fleet_arguments` and `connect_options` are shared with the other fleet commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from ..connect import ConnectOptions
from ..connect.hostkeys import default_known_hosts
from ..facts.cache import DEFAULT_FACTS_DIR, load_or_probe
from ..fanout import DEFAULT_FORKS, HostOutcome, counts, exit_status, run_hosts
from ..inventory import Host, Inventory, InventoryError, PatternError, load_inventory
from ..output import diagnostics, error, out, print_json
from ..status import ExitStatus
from ..vault import default_secret


def add_fleet_arguments(p: argparse.ArgumentParser) -> None:
    """INVENTORY, --limit, --forks and the connection flags every fleet command takes."""
    p.add_argument("inventory", help="inventory: a YAML, INI or JSON file, a directory of them, or a script")
    p.add_argument("-i", "--inventory-source", dest="more_sources", action="append", default=[], metavar="SRC",
                   help="another inventory source, read after INVENTORY (may be given more than once)")
    p.add_argument("--vault-password-file", metavar="FILE", help="password for vault-encrypted inventory values and files (default $ANSIBLE_VAULT_PASSWORD_FILE)")
    p.add_argument("--limit", metavar="PATTERN", help="only hosts matching this pattern (e.g. 'epyc:!epyc-03')")
    add_connection_arguments(p)


def add_connection_arguments(p: argparse.ArgumentParser) -> None:
    """--forks and how hosts are reached (strict host keys unless told otherwise)."""
    p.add_argument("--forks", type=int, default=DEFAULT_FORKS, metavar="N", help=f"hosts worked on at once (default {DEFAULT_FORKS})")
    p.add_argument("--accept-new-host-keys", action="store_true", help="trust unknown host keys on first use and record them (changed keys are still refused)")
    p.add_argument("--known-hosts", type=Path, metavar="FILE", help=f"the tool's known_hosts file (default {default_known_hosts()})")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S", help="seconds to connect and log in (default 10)")


def connect_options(args: argparse.Namespace, inv: Inventory) -> ConnectOptions:
    kw: dict[str, Any] = {"known_hosts": args.known_hosts} if args.known_hosts else {}
    return ConnectOptions(
        connect_timeout=args.connect_timeout,
        accept_new_host_keys=args.accept_new_host_keys,
        inventory=inv.hosts,
        **kw,
    )


def select_hosts(args: argparse.Namespace) -> tuple[Inventory, list[Host]] | ExitStatus:
    """The inventory and the hosts to work on, or the exit status after saying what is wrong."""
    if args.forks < 1:
        error(f"--forks must be at least 1, not {args.forks}")
        return ExitStatus.USAGE
    try:
        inv = load_inventory([args.inventory, *args.more_sources], vault_secret=default_secret(args.vault_password_file))
    except InventoryError as e:
        diagnostics(e.diagnostics)
        return ExitStatus.ERROR
    try:
        hosts = inv.select(args.limit)
    except PatternError as e:
        error(f"--limit: {e}")
        return ExitStatus.USAGE
    if not hosts:
        error("no hosts to work on")
        return ExitStatus.ERROR
    return inv, hosts


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="gather NUMA, CPU and system facts from every host (cached)")
    add_fleet_arguments(p)
    p.add_argument("--json", action="store_true", help="print every host's facts and outcome as JSON")
    p.add_argument("--refresh", action="store_true", help="probe even when the cached facts are fresh")
    p.add_argument("--facts-dir", type=Path, default=DEFAULT_FACTS_DIR, metavar="DIR", help="facts cache (default ./facts)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> ExitStatus:
    selected = select_hosts(args)
    if isinstance(selected, ExitStatus):
        return selected
    inv, hosts = selected
    outcomes = run_hosts(
        hosts,
        lambda host, conn: load_or_probe(host, conn, facts_dir=args.facts_dir, refresh=args.refresh),
        forks=args.forks,
        options=connect_options(args, inv),
        label="probe",
    )
    if args.json:
        print_json(as_json(outcomes))
    else:
        out.print(summary_table(outcomes))
        for o in outcomes:
            if not o.ok:
                out.print(f"{o.host}: {o.status.upper()}: {o.error}", markup=False, highlight=False)
        c = counts(outcomes)
        out.print(f"{c['ok']} ok, {c['failed']} failed, {c['unreachable']} unreachable; facts in {args.facts_dir}/")
    return exit_status(outcomes)


def as_json(outcomes: list[HostOutcome]) -> dict[str, Any]:
    return {
        "hosts": [
            {
                "host": o.host,
                "status": o.status,
                "error": o.error,
                "cached": o.value[1] if o.ok else None,
                "facts": o.value[0] if o.ok else None,
            }
            for o in outcomes
        ],
        "summary": counts(outcomes),
    }


def _gib(mb: int | None) -> str:
    if mb is None:
        return "?"
    g = mb / 1024
    return f"{g:.1f}G" if g < 10 else f"{g:.0f}G"


def summary_table(outcomes: list[HostOutcome]) -> Table:
    table = Table(title="probe")
    for col in ("host", "status", "nodes", "memory per node", "CPUs", "arch", "facts"):
        table.add_column(col, justify="right" if col in ("nodes", "CPUs") else "left")
    for o in outcomes:
        if not o.ok:
            colour = "red" if o.status == "failed" else "magenta"
            table.add_row(escape(o.host), f"[{colour}]{o.status}[/]", "", "(below)", "", "", "")
            continue
        facts, cached = o.value
        topo = facts["topology"]
        mem = " ".join(f"{n['id']}:{_gib(n['size_mb'])}" for n in topo["nodes"]) or "no NUMA"
        table.add_row(
            escape(o.host), "[green]ok[/]", str(len(topo["nodes"])), mem, str(facts["cpu"]["cpus"]),
            facts["cpu"]["architecture"], "cached" if cached else "probed",
        )  # fmt: skip
    return table
