"""`exec INVENTORY --host H [--instance I]`: run a host's llama-server exactly as its unit
would (ExecStartPre placement, then the same argv, environment, CPUs and memory policy),
in the foreground: the entry point for containers and machines without systemd.

It runs on the machine it is started on, so the host must use `ansible_connection: local`;
`--print` shows the command lines instead (for any host).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
from pathlib import Path

from ..deployment.host import Sources, deployment_for
from ..errors import CoffersError
from ..facts.cache import DEFAULT_FACTS_DIR, load_or_probe
from ..inventory import load_inventory
from ..status import ExitStatus


class ExecError(CoffersError):
    """The host or instance cannot be run here."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("exec", help="run a host's llama-server exactly as its unit would, in the foreground")
    p.add_argument("inventory", help="inventory file")
    p.add_argument("--host", required=True, metavar="H", help="the host (its ansible_connection must be local)")
    p.add_argument("--instance", metavar="I", help="which instance, by unit or plan name (replicate: one per node); default: the only one")
    p.add_argument("--print", action="store_true", help="print the environment and command lines instead of running them")
    p.add_argument("--facts-dir", type=Path, default=DEFAULT_FACTS_DIR, metavar="DIR", help="facts cache (default ./facts)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> ExitStatus:
    from ..connect.local import LocalConnector
    from ..deployment.verify import SYSTEMD_PATH

    inv = load_inventory(args.inventory)
    host = inv.hosts.get(args.host)
    if host is None:
        raise ExecError(f"--host {args.host}: not in {args.inventory}")
    if host.connection != "local" and not args.print:
        raise ExecError(f"--host {args.host}: exec runs the server on this machine; the host's ansible_connection is "
                        f"{host.connection!r}, not local (use --print to see its command)")
    conn = LocalConnector(host.name)
    facts, _ = load_or_probe(host, conn, facts_dir=args.facts_dir)
    dep, src = deployment_for(host, facts, conn, Sources())
    if src.upload and not os.path.exists(dep.model):
        raise ExecError(f"{dep.model}: the generated model is not installed yet: run `coffers-provision apply {args.inventory}` first")
    services = [s for s in dep.services if args.instance in (None, s.unit, s.name, s.instance)]
    if not services or (args.instance is None and len(services) > 1):
        names = ", ".join(s.unit for s in dep.services)
        raise ExecError(f"--instance: {'name one of' if services else 'no instance ' + repr(args.instance) + '; the host has'} {names}")
    svc = services[0]
    env = {"PATH": SYSTEMD_PATH, **dict(svc.environment)}
    as_user = ["runuser", "-u", dep.user, "--"] if dep.user else []  # the unit's User=
    launch = [*as_user, *svc.launch]
    if args.print:
        for k, v in svc.environment:
            print(f"{k}={shlex.quote('********' if v in dep.secrets else v)}")
        for argv in svc.pre:
            print(shlex.join([*as_user, *argv]))
        print(shlex.join(launch))
        return ExitStatus.SUCCESS
    for argv in svc.pre:
        proc = subprocess.run([*as_user, *argv], env=env)
        if proc.returncode != 0:
            raise ExecError(f"{shlex.join(argv)} exited {proc.returncode}")
    try:
        os.execvpe(launch[0], launch, env)
    except OSError as e:
        raise ExecError(f"{launch[0]}: {e.strerror}") from None
