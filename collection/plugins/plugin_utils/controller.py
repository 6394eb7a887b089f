"""Controller-side helpers of the coffers.numa action plugins: coffers_provision's connector
interface over a task's Ansible connection, and the host described as `apply` describes it."""

from __future__ import annotations

import base64
import io
import multiprocessing
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ansible.plugins.action import ActionBase

from coffers_provision.connect.base import Command, Connector, FileStat, Result, timed_line, to_shell
from coffers_provision.deployment.apply import default_play_file, play_extra
from coffers_provision.deployment.describe import Deployment
from coffers_provision.deployment.host import Sources, deployment_for
from coffers_provision.engine.role import Play, load_play
from coffers_provision.engine.runner import play_vars
from coffers_provision.errors import HostError
from coffers_provision.inventory import Host, load_inventory
from coffers_provision.vault import default_secret

# Copies stdin to a TCP port on the host and the answer back, base64 (the host's python3,
# which Ansible needs there anyway): one HTTP request with `Connection: close` per run. The
# writing side stays open: llama-server takes a half-closed connection for a client that
# left and cancels the completion it is generating.
RELAY = ("import base64,socket,sys\n"
         "s=socket.create_connection((sys.argv[1],int(sys.argv[2])),float(sys.argv[3]))\n"
         "s.sendall(base64.b64decode(sys.stdin.read()))\n"
         "b=b''\n"
         "while True:\n"
         "    c=s.recv(65536)\n"
         "    if not c: break\n"
         "    b+=c\n"
         "sys.stdout.write(base64.b64encode(b).decode())\n")


class _Relayed:
    """A stream whose request is sent, and answer read, when the first byte is asked for."""

    def __init__(self, conn: "AnsibleConnector", address: str, port: int, timeout: float):
        self.conn, self.address, self.port, self.timeout = conn, address, port, timeout
        self.sent, self.answer = b"", None

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def settimeout(self, t: float | None) -> None:
        self.timeout = t or self.timeout

    def recv(self, n: int) -> bytes:
        if self.answer is None:
            line = (f"printf %s {shlex.quote(base64.b64encode(self.sent).decode())} | "
                    f"python3 -c {shlex.quote(RELAY)} {shlex.quote(self.address)} {self.port} {self.timeout}")
            r = self.conn.run(line, timeout=self.timeout + 30)
            if not r.ok:
                raise ConnectionRefusedError(f"{self.address}:{self.port}: {r.stderr.strip()[-300:]}")
            self.answer = io.BytesIO(base64.b64decode(r.stdout.strip()))
        return self.answer.read(n)

    def close(self) -> None:
        pass


class AnsibleConnector(Connector):
    """coffers_provision's connector interface over the task's Ansible connection."""

    def __init__(self, action: ActionBase, host: str):
        self.action, self.host = action, host

    def run(self, command: Command, *, timeout: float | None = None, stdin: bytes | None = None) -> Result:
        r = self.action._low_level_execute_command(timed_line(to_shell(command), timeout), in_data=stdin)
        return Result(int(r.get("rc", 1)), r.get("stdout", ""), r.get("stderr", ""))

    def put(self, data: bytes, path: str, *, mode: int = 0o644) -> None:
        self.put_text(data, path, mode)

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        q = shlex.quote(path)
        cut = f" | head -c {int(length)}" if length is not None else ""
        r = self.run(f"[ -f {q} ] || exit 3; tail -c +{int(offset) + 1} -- {q}{cut} | base64 -w0")
        if r.rc == 3:
            raise FileNotFoundError(2, "No such file or directory", path)
        if not r.ok:
            raise OSError(f"{self.host}: cannot read {path}: {r.stderr.strip()}")
        return base64.b64decode(r.stdout)

    def stat(self, path: str) -> FileStat | None:
        r = self.run(["stat", "-L", "-c", "%s %a %u %g %F", "--", path])
        if not r.ok:
            return None
        size, mode, uid, gid, kind = r.stdout.strip().split(" ", 4)
        return FileStat(int(size), int(mode, 8), int(uid), int(gid), kind == "directory")

    def put_text(self, data: bytes, path: str, mode: int) -> None:
        """Atomic: a temp file beside `path`, then rename."""
        tmp = f"{path}.coffers-tmp"
        line = (f"printf %s {shlex.quote(base64.b64encode(data).decode())} | base64 -d > {shlex.quote(tmp)} && "
                f"chmod {mode:04o} -- {shlex.quote(tmp)} && mv -f -- {shlex.quote(tmp)} {shlex.quote(path)}")
        r = self.run(line)
        if not r.ok:
            raise OSError(f"{self.host}: cannot write {path}: {r.stderr.strip()}")

    def open_channel(self, address: str, port: int, timeout: float) -> Any:
        return _Relayed(self, address, port, timeout)


@dataclass(frozen=True)
class Described:
    host: Host
    play: Play
    deployment: Deployment
    variables: dict[str, Any]


def inventory_host(task_vars: Mapping[str, Any]) -> Host:
    """The host read from ansible-playbook's own inventory sources by coffers_provision's
    reader: its vars are the ones `apply` sees."""
    inv = load_inventory([Path(s) for s in task_vars.get("ansible_inventory_sources") or []], vault_secret=default_secret())
    return next(iter(inv.select(task_vars["inventory_hostname"])))


def playbook_pid() -> int:
    """The ansible-playbook process, which holds the host's lock for the whole play.

    An action plugin runs in a worker that ansible-playbook forks for one task on one host
    (ansible.utils.multiprocessing: the fork context) and that exits when the task is done,
    so the worker's own pid would look dead by the next task. The process that forked it
    runs the strategy for the whole playbook and ends with it: its pid and start time are
    what tell a live run from a killed one. multiprocessing kept that pid when it forked
    this worker (os.getppid() would name whoever adopted the worker once the parent died)."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        raise HostError("coffers.numa.lock runs only in an ansible-playbook worker process")
    return parent.pid


def describe_host(action: ActionBase, task_vars: Mapping[str, Any], args: Mapping[str, Any], conn: Connector) -> Described:
    """The host from ansible-playbook's own inventory sources (inventory_host), planned and
    described by `deployment_for`, with the play's variables."""
    host = inventory_host(task_vars)
    play = load_play(Path(args["play"]) if args.get("play") else default_play_file())
    sources = Sources(
        bench_results=Path(args["bench_results"]) if args.get("bench_results") else None,
        tune_dir=Path(args.get("tune_results") or "results/tune"),
        model_cache=Path(args["model_cache"]) if args.get("model_cache") else None,
    )
    dep, src = deployment_for(host, args["facts"], conn, sources)
    return Described(host, play, dep, play_vars(play, host.vars, play_extra(host, args["facts"], dep, src)))
