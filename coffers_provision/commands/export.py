"""`export ansible INVENTORY --out DIR`: a ready Ansible project that deploys what `apply
INVENTORY` deploys (docs/ansible.md): site.yml, ansible.cfg, requirements.yml,
execution-environment.yml and the coffers.numa collection built and installed in DIR."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..bench.planning import measured_results
from ..deployment.ansible import write_project
from ..errors import CoffersError
from ..inventory import InventoryError, load_inventory
from ..output import diagnostics, error, out
from ..status import ExitStatus
from ..vault import default_secret


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a ready Ansible project (the coffers.numa collection) for an inventory")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    a = kinds.add_parser("ansible", help="site.yml, ansible.cfg, requirements.yml, execution-environment.yml, the collection")
    a.add_argument("inventory", type=Path, help="the inventory ansible-playbook will be given (-i)")
    a.add_argument("--out", type=Path, required=True, metavar="DIR", help="the project folder to write")
    a.add_argument("--vault-password-file", metavar="FILE", help="to read an inventory with vaulted values")
    a.add_argument("--bench-results", type=Path, metavar="DIR", help="plan from this bench run (default results/latest when present), as apply does")
    a.add_argument("--tune-results", type=Path, default=Path("results/tune"), metavar="DIR", help="tune records (default results/tune), as apply does")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> ExitStatus:
    try:
        load_inventory([args.inventory], vault_secret=default_secret(args.vault_password_file))
    except InventoryError as e:
        diagnostics(e.diagnostics)
        return ExitStatus.ERROR
    role_vars = {"coffers_tune_results": str(args.tune_results.resolve())}
    try:
        bench = measured_results(args.bench_results)
        if bench is not None:
            role_vars["coffers_bench_results"] = str(bench)
        written = write_project(args.out, role_vars)
    except CoffersError as e:
        error(str(e))
        return e.status
    for path in written:
        out.print(str(path), markup=False)
    out.print(f"then: cd {args.out} && ansible-playbook -i {args.inventory.resolve()} site.yml", markup=False)
    return ExitStatus.SUCCESS
