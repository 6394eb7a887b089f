"""A fleet of real OpenSSH hosts on this machine, each with its own NUMA topology.

Every host is one `/usr/sbin/sshd -D` started inside its own mount namespace
(`unshare --mount --propagation private`), listening on its own loopback address
(127.R.x.y, R random per fleet so parallel test runs do not meet) on a kernel-chosen
port. Inside that namespace:

- `/etc/systemd/system`, `/usr/local`, `/opt` and `/var/lib` (holding a fresh
  `/var/lib/coffers`) are overlays whose upper layers live in the fleet's state dir,
  so a test reads what a host wrote from the outside (`FleetHost.upper`);
- `/usr/bin/numactl` prints the host's captured fixture for `--hardware` (or is a
  non-executable file on hosts that "lack" numactl);
- `/sys/devices/system/node` is a tree generated from the same fixture
  (facts.numa.write_sysfs), `/sys/devices/system/cpu` a CPU tree matching it
  (packages, cores, SMT siblings, caches), and `/proc/cpuinfo` names the host's model.

With `users=` (SudoUser records) every host also has ordinary login users with sudoers
rules (`/etc` and `/home` overlaid too), for privilege escalation tests.

What stays the machine's own: the kernel (`uname`, /proc/sys), systemd, gcc, the disk.
Every process the fleet starts is stopped by PID (`Fleet.stop`), including the
per-connection sshd children still living in a host's namespace.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from coffers_provision.facts.numa import parse_numactl, write_sysfs
from coffers_provision.topology import Topology, format_cpulist

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "numactl"
SSHD = "/usr/sbin/sshd"
NUMACTL = "/usr/bin/numactl"
ROOT_RC = ("/root/.bashrc", "/root/.profile", "/root/.bash_profile")
OVERLAID = ("/etc/systemd/system", "/usr/local", "/opt", "/var/lib")


@dataclass(frozen=True)
class HostSpec:
    """The hardware a fleet host pretends to be: a real numactl capture plus CPU details."""

    short: str  # host name in the default fleet
    fixture: str  # file stem under tests/fixtures/numactl
    model: str
    cpuinfo_style: str  # "x86" | "power" | "arm": how /proc/cpuinfo names the model
    sockets: int
    threads_per_core: int
    smt_layout: str = "split"  # "split": siblings are N and N+cores (x86); "adjacent": 4k..4k+3 (POWER)
    llc_kb: int = 32768
    numactl: bool = True  # False: numactl is "not installed", probe must read sysfs

    def topology(self) -> Topology:
        path = FIXTURES / f"{self.fixture}.txt"
        return parse_numactl(path.read_text(), source=str(path))


@dataclass(frozen=True)
class SudoUser:
    """A non-root login on every host of a fleet: the fleet's client key, a password set with
    chpasswd, and `/etc/sudoers.d/` allowing it everything as any user (without a password
    when `nopasswd`)."""

    name: str
    password: str = field(repr=False)
    nopasswd: bool = False

    def sudoers(self) -> str:
        return f"{self.name} ALL=(ALL:ALL) {'NOPASSWD: ' if self.nopasswd else ''}ALL\n"


# Only where a fleet has users: their accounts, homes and sudoers rules stay in the host.
USER_OVERLAID = ("/etc", "/home")


# Distinct shapes: sparse ids + memory-only GPU nodes, 8 nodes, CXL memory-only nodes,
# one node, and an ARM host without numactl (the sysfs path).
DEFAULT_SPECS = (
    HostSpec("p9", "power9-ac922-6node-gpu-memory-nodes", "POWER9, altivec supported", "power", 2, 4, "adjacent", 10240),
    HostSpec("epyc", "epyc-7742-2s-nps4-8node-smt-off-expanse", "AMD EPYC 7742 64-Core Processor", "x86", 2, 1, "split", 16384),
    HostSpec("cxl", "xeon-2s-cxl-expanders-4node-2-memoryonly-dist14-24-26", "Intel(R) Xeon(R) Platinum 8470 CPU @ 2.00GHz", "x86", 2, 2, "split", 107520),
    HostSpec("single", "single-node-8cpu-snabb", "Intel(R) Core(TM) i7-4790 CPU @ 3.60GHz", "x86", 1, 2, "split", 8192),
    HostSpec("kunpeng", "kunpeng920-2s-128core-4node-dist-12-20-22-24", "implementer 0x48 part 0xd01", "arm", 2, 1, "split", 65536, numactl=False),
)


# -- the CPU side of a spec ----------------------------------------------------------


@dataclass(frozen=True)
class CpuLayout:
    """Where every CPU sits: package, core id, SMT siblings. Derived from a spec + topology."""

    package: dict[int, int]
    core: dict[int, int]
    siblings: dict[int, tuple[int, ...]]

    @property
    def cpus(self) -> list[int]:
        return sorted(self.package)

    @property
    def sibling_sets(self) -> list[tuple[int, ...]]:
        return sorted(set(self.siblings.values()))


def cpu_layout(spec: HostSpec, topo: Topology) -> CpuLayout:
    """Packages follow the nodes (CPU nodes split evenly over sockets); cores are groups of
    `threads_per_core` CPUs, numbered within their package."""
    cpu_nodes = [n for n in topo.nodes if n.cpus]
    package: dict[int, int] = {}
    for i, n in enumerate(cpu_nodes):
        for c in n.cpus:
            package[c] = i * spec.sockets // len(cpu_nodes)
    cpus = sorted(package)
    tpc = spec.threads_per_core
    if len(cpus) % tpc:
        raise ValueError(f"{spec.short}: {len(cpus)} CPUs do not split into cores of {tpc}")
    ncores = len(cpus) // tpc
    group = {c: (i % ncores if spec.smt_layout == "split" else i // tpc) for i, c in enumerate(cpus)}
    members: dict[int, list[int]] = {}
    for c in cpus:
        members.setdefault(group[c], []).append(c)
    siblings = {c: tuple(members[group[c]]) for c in cpus}
    core: dict[int, int] = {}
    for pkg in sorted(set(package.values())):
        first_cpus = sorted({siblings[c][0] for c in cpus if package[c] == pkg})
        for k, first in enumerate(first_cpus):
            for c in members[group[first]]:
                core[c] = k
    return CpuLayout(package, core, siblings)


def write_cpu_sysfs(spec: HostSpec, layout: CpuLayout, root: Path) -> None:
    """A /sys/devices/system/cpu tree: topology/ and cache/ per CPU, online/possible/present."""
    root.mkdir(parents=True, exist_ok=True)
    every = format_cpulist(layout.cpus) + "\n"
    for name in ("online", "possible", "present"):
        (root / name).write_text(every)
    caches = [(1, "Data", 32), (1, "Instruction", 32), (2, "Unified", 512), (3, "Unified", spec.llc_kb)]
    for c in layout.cpus:
        t = root / f"cpu{c}" / "topology"
        t.mkdir(parents=True)
        sib = format_cpulist(layout.siblings[c]) + "\n"
        pkg_cpus = format_cpulist(x for x in layout.cpus if layout.package[x] == layout.package[c]) + "\n"
        (t / "physical_package_id").write_text(f"{layout.package[c]}\n")
        (t / "core_id").write_text(f"{layout.core[c]}\n")
        (t / "thread_siblings_list").write_text(sib)
        (t / "core_cpus_list").write_text(sib)
        (t / "package_cpus_list").write_text(pkg_cpus)
        for i, (level, kind, size) in enumerate(caches):
            d = root / f"cpu{c}" / "cache" / f"index{i}"
            d.mkdir(parents=True)
            shared = pkg_cpus if level == 3 else sib
            (d / "level").write_text(f"{level}\n")
            (d / "type").write_text(f"{kind}\n")
            (d / "size").write_text(f"{size}K\n")
            (d / "shared_cpu_list").write_text(shared)


def cpuinfo_text(spec: HostSpec, layout: CpuLayout) -> str:
    """/proc/cpuinfo in the style of the spec's architecture."""
    blocks = []
    for c in layout.cpus:
        if spec.cpuinfo_style == "x86":
            blocks.append(
                f"processor\t: {c}\nvendor_id\t: {'AuthenticAMD' if 'AMD' in spec.model else 'GenuineIntel'}\n"
                f"model name\t: {spec.model}\nphysical id\t: {layout.package[c]}\ncore id\t\t: {layout.core[c]}\n"
            )
        elif spec.cpuinfo_style == "power":
            blocks.append(f"processor\t: {c}\ncpu\t\t: {spec.model}\nclock\t\t: 3800.000000MHz\nrevision\t: 2.3 (pvr 004e 1203)\n")
        else:
            implementer, part = spec.model.split()[1], spec.model.split()[3]
            blocks.append(f"processor\t: {c}\nBogoMIPS\t: 200.00\nCPU implementer\t: {implementer}\nCPU part\t: {part}\n")
    tail = "\ntimebase\t: 512000000\nplatform\t: PowerNV\nmodel\t\t: 8335-GTH\n" if spec.cpuinfo_style == "power" else ""
    return "\n".join(blocks) + tail


# -- hosts and the fleet -------------------------------------------------------------


@dataclass
class FleetHost:
    """One running test host. `topology` is what its numactl and sysfs present."""

    name: str
    spec: HostSpec
    address: str
    port: int
    key: Path  # the client key that logs in as root
    state: Path  # this host's directory in the fleet state dir
    topology: Topology
    layout: CpuLayout
    pid: int | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def fixture(self) -> str:
        return self.spec.fixture

    @property
    def host_key(self) -> Path:
        return self.state / "ssh_host_ed25519_key"

    @property
    def log(self) -> Path:
        return self.state / "sshd.log"

    def known_hosts_line(self) -> str:
        kind, blob = (self.host_key.with_suffix(".pub")).read_text().split()[:2]
        return f"[{self.address}]:{self.port} {kind} {blob}\n"

    def upper(self, path: str) -> Path:
        """Where a file a host wrote under an overlaid dir lands, seen from outside."""
        for top in OVERLAID:
            if path == top or path.startswith(top + "/"):
                return self.state / "overlay" / top.strip("/").replace("/", "_") / "upper" / path[len(top) :].lstrip("/")
        raise ValueError(f"{path} is not under an overlaid directory {OVERLAID}")

    def inside(self, path: str) -> Path:
        """`path` as the host sees it (through /proc/PID/root, its mount namespace)."""
        if self.pid is None:
            raise RuntimeError(f"{self.name} is not running")
        return Path(f"/proc/{self.pid}/root{path}")

    def run_inside(self, command: str) -> subprocess.CompletedProcess:
        """Run a shell command in the host's mount namespace (no SSH): ground truth for tests."""
        if self.pid is None:
            raise RuntimeError(f"{self.name} is not running")
        return subprocess.run(["nsenter", "-t", str(self.pid), "-m", "/bin/sh", "-c", command], capture_output=True, text=True, timeout=60)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _says_ssh(address: str, port: int) -> bool:
    """An SSH server answers there (not just anything listening)."""
    try:
        with socket.create_connection((address, port), timeout=2) as s:
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _keygen(path: Path) -> None:
    for p in (path, path.with_suffix(".pub")):
        p.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)


class Fleet:
    """Start with `Fleet.start_new(n)`; stop with `stop()`. Records sit in `hosts`."""

    def __init__(self, state: Path, hosts: list[FleetHost], client_key: Path, users: tuple[SudoUser, ...] = ()):
        self.state, self.hosts, self.client_key, self.users = state, hosts, client_key, users
        self._published = False  # ports are in the inventory: a host must keep its port

    # -- build -----------------------------------------------------------------------
    @classmethod
    def start_new(cls, count: int | None = None, *, specs: tuple[HostSpec, ...] = DEFAULT_SPECS, state: Path | None = None, names: list[str] | None = None, users: tuple[SudoUser, ...] = ()) -> Fleet:
        """`count` hosts cycling through `specs` (default: one per spec, named by spec);
        `users`: non-root logins with sudo on every host."""
        count = len(specs) if count is None else count
        # In memory when possible: thousands of small sysfs files, made and removed per run.
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        state = Path(state or tempfile.mkdtemp(prefix="coffers-fleet-", dir=shm))
        state.mkdir(parents=True, exist_ok=True)
        client_key = state / "client_key"
        _keygen(client_key)
        shutil.copy2(NUMACTL, state / "numactl.real")
        (state / "empty").write_text("")
        (state / "numactl.absent").write_text("")
        (state / "numactl.absent").chmod(0o644)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        octet = random.randrange(2, 255)
        hosts: list[FleetHost] = []
        for i in range(count):
            spec = specs[i % len(specs)]
            name = names[i] if names else (spec.short if count <= len(specs) else f"fleet{i:03d}")
            address = f"127.{octet}.{i // 200}.{i % 200 + 10}"
            topo = spec.topology()
            hosts.append(
                FleetHost(name, spec, address, _free_port(address), client_key, state / name, topo, cpu_layout(spec, topo))
            )
        fleet = cls(state, hosts, client_key, users)
        try:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(fleet._write_spec, {h.spec.short: h.spec for h in hosts}.values()))
                list(pool.map(fleet._prepare, hosts))
                list(pool.map(fleet.start, hosts))
        except BaseException:
            fleet.stop()
            raise
        fleet.write_known_hosts()
        fleet.write_inventory()
        fleet._published = True
        return fleet

    def _prepare(self, h: FleetHost) -> None:
        h.state.mkdir()
        _keygen(h.host_key)
        auth = h.state / "authorized_keys"
        auth.write_text(self.client_key.with_suffix(".pub").read_text())
        auth.chmod(0o600)
        for top in OVERLAID + (USER_OVERLAID if self.users else ()):
            o = h.state / "overlay" / top.strip("/").replace("/", "_")
            (o / "upper").mkdir(parents=True)
            (o / "work").mkdir()
        for u in self.users:  # read inside the namespace through files: no password in a command line
            d = h.state / "users" / u.name
            d.mkdir(parents=True)
            (d / "chpasswd").write_text(f"{u.name}:{u.password}\n")
            (d / "chpasswd").chmod(0o600)
            (d / "sudoers").write_text(u.sudoers())
        self._write_sshd_config(h)

    def _write_spec(self, spec: HostSpec) -> None:
        """What every host of one spec presents (read-only, bound into each of them)."""
        d = self.spec_dir(spec)
        d.mkdir(parents=True)
        topo = spec.topology()
        layout = cpu_layout(spec, topo)
        (d / "numactl.txt").write_text((FIXTURES / f"{spec.fixture}.txt").read_text())
        script = d / "numactl"
        script.write_text(
            "#!/bin/sh\n# fleet host: prints this host's captured topology for --hardware\n"
            f'case "$1" in -H|--hardware) exec cat {shlex.quote(str(d / "numactl.txt"))};; esac\n'
            f'exec {shlex.quote(str(self.state / "numactl.real"))} "$@"\n'
        )
        script.chmod(0o755)
        write_sysfs(topo, d / "sys" / "node")
        write_cpu_sysfs(spec, layout, d / "sys" / "cpu")
        (d / "cpuinfo").write_text(cpuinfo_text(spec, layout))

    def spec_dir(self, spec: HostSpec) -> Path:
        return self.state / "specs" / spec.short

    def _write_sshd_config(self, h: FleetHost) -> None:
        (h.state / "sshd_config").write_text(
            f"ListenAddress {h.address}:{h.port}\n"
            f"HostKey {h.host_key}\n"
            f"AuthorizedKeysFile {h.state / 'authorized_keys'}\n"
            "PidFile none\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"  # key files sit in a temp dir
            "UseDNS no\n"
            "PrintMotd no\n"
            "AllowTcpForwarding yes\n"  # ProxyJump through fleet hosts
            "MaxStartups 200\n"
            "MaxSessions 100\n"
            "Subsystem sftp internal-sftp\n"
            "LogLevel VERBOSE\n"
            + (f"Match User {','.join(u.name for u in self.users)}\n  AuthorizedKeysFile %h/.ssh/authorized_keys\n" if self.users else "")
        )

    def _namespace_script(self, h: FleetHost) -> str:
        q = lambda p: shlex.quote(str(p))  # noqa: E731
        lines = ["set -e"]
        for top in USER_OVERLAID if self.users else ():  # before /etc/systemd/system's overlay
            o = h.state / "overlay" / top.strip("/")
            lines.append(f"mount -t overlay overlay -o lowerdir={top},upperdir={o / 'upper'},workdir={o / 'work'} {top}")
        for top in OVERLAID:
            o = h.state / "overlay" / top.strip("/").replace("/", "_")
            lines.append(f"mount -t overlay overlay -o lowerdir={top},upperdir={o / 'upper'},workdir={o / 'work'} {top}")
        d = self.spec_dir(h.spec)
        numactl = d / "numactl" if h.spec.numactl else self.state / "numactl.absent"
        lines += [
            "mkdir -p /var/lib/coffers",
            f"mount --bind {q(numactl)} {NUMACTL}",
            # shared by every host of the spec, so read-only like the real thing
            *(
                f"mount --bind {q(src)} {dst} && mount -o remount,bind,ro {dst}"
                for src, dst in ((d / "sys" / "node", "/sys/devices/system/node"), (d / "sys" / "cpu", "/sys/devices/system/cpu"), (d / "cpuinfo", "/proc/cpuinfo"))
            ),
        ]
        # A clean root login: this machine's own ~/.bashrc (which bash sources for ssh
        # commands) would add its start-up time to every command a host runs.
        lines += [f"mount --bind {q(self.state / 'empty')} {q(rc)}" for rc in ROOT_RC if Path(rc).is_file()]
        for u in self.users:
            d, home = h.state / "users" / u.name, f"/home/{u.name}"
            lines += [
                f"useradd -m -d {home} -s /bin/sh {u.name}",
                f"chpasswd < {q(d / 'chpasswd')}",
                f"mkdir -m 700 {home}/.ssh && cp {q(self.client_key.with_suffix('.pub'))} {home}/.ssh/authorized_keys",
                f"chown -R {u.name}: {home}/.ssh && chmod 600 {home}/.ssh/authorized_keys",
                f"install -m 440 {q(d / 'sudoers')} /etc/sudoers.d/coffers-{u.name}",
            ]
        lines.append(f"exec {SSHD} -D -e -f {q(h.state / 'sshd_config')}")
        return "\n".join(lines)

    # -- run -------------------------------------------------------------------------
    def start(self, h: FleetHost, timeout: float = 60.0) -> None:
        """Start (or restart) one host's sshd and wait until it accepts connections."""
        if h.running:
            return
        for attempt in range(3):
            log_start = h.log.stat().st_size if h.log.exists() else 0
            log = open(h.log, "ab")
            h.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", self._namespace_script(h)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
            log.close()
            h.pid = h.proc.pid  # unshare and sh exec, so this is sshd's own PID
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if h.proc.poll() is not None:
                    break
                if _says_ssh(h.address, h.port):
                    return
                time.sleep(0.02)
            else:
                raise RuntimeError(f"fleet host {h.name}: sshd not listening on {h.address}:{h.port} after {timeout}s")
            tail = h.log.read_bytes()[log_start:].decode(errors="replace")
            h.proc, h.pid = None, None
            if "Address already in use" in tail and not self._published and attempt < 2:
                h.port = _free_port(h.address)  # another process took the port we picked: pick again
                self._write_sshd_config(h)
                continue
            raise RuntimeError(f"fleet host {h.name}: sshd exited:\n{tail[-2000:]}")

    def stop_host(self, h: FleetHost) -> None:
        """Stop one host: its sshd and every process left in its mount namespace, by PID."""
        if h.proc is None:
            return
        if h.proc.poll() is None:
            stop_pid_tree(h.pid, h.proc)
        h.proc = None
        h.pid = None

    def rekey(self, h: FleetHost) -> None:
        """Give a host a new host key (restarting it): clients that knew the old one must refuse."""
        self.stop_host(h)
        _keygen(h.host_key)
        self.start(h)

    def stop(self) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self.stop_host, self.hosts))

    def save(self, path: Path) -> None:
        """Record the running hosts (for `tests/fleet/down`)."""
        data = {"state": str(self.state), "hosts": [{"name": h.name, "pid": h.pid, "address": h.address, "port": h.port} for h in self.hosts]}
        path.write_text(json.dumps(data, indent=2) + "\n")

    # -- records for clients ---------------------------------------------------------
    @property
    def known_hosts(self) -> Path:
        return self.state / "known_hosts"

    @property
    def inventory(self) -> Path:
        return self.state / "inventory.yml"

    def host(self, name: str) -> FleetHost:
        return next(h for h in self.hosts if h.name == name)

    def write_known_hosts(self, path: Path | None = None) -> Path:
        path = path or self.known_hosts
        path.write_text("".join(h.known_hosts_line() for h in self.hosts))
        return path

    def inventory_data(self, hosts: list[FleetHost] | None = None, **extra_vars: object) -> dict:
        """Ansible YAML inventory: every host under `all`, grouped by shape and arch style.
        `extra_vars` may override the login (`ansible_user` of one of `users`)."""
        hosts = self.hosts if hosts is None else hosts
        groups: dict[str, list[str]] = {}
        for h in hosts:
            groups.setdefault("multinode" if len(h.topology.nodes) > 1 else "singlenode", []).append(h.name)
            groups.setdefault(h.spec.cpuinfo_style, []).append(h.name)
        return {
            "all": {
                "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(self.client_key), **extra_vars},
                "hosts": {h.name: {"ansible_host": h.address, "ansible_port": h.port} for h in hosts},
                "children": {g: {"hosts": {n: None for n in names}} for g, names in groups.items()},
            }
        }

    def write_inventory(self, path: Path | None = None, hosts: list[FleetHost] | None = None, **extra_vars: object) -> Path:
        path = path or self.inventory
        path.write_text(yaml.safe_dump(self.inventory_data(hosts, **extra_vars), sort_keys=False))
        return path


def stop_pid_tree(pid: int, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM a host's sshd and the other processes of its mount namespace, by PID; reap."""
    pids = _namespace_pids(pid)
    for p in [pid, *[p for p in pids if p != pid]]:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for p in pids:
        _reap(p)


def _namespace_pids(pid: int) -> list[int]:
    """Every process sharing `pid`'s mount namespace (sshd's per-connection children)."""
    try:
        ns = os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return []
    if ns == os.readlink("/proc/self/ns/mnt"):
        return [pid]  # not (or no longer) in a namespace of its own: touch nothing else
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/mnt") == ns:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _gone(pid: int) -> bool:
    """Exited: no /proc entry, or a zombie waiting for its (adoptive) parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _reap(pid: int) -> None:
    """Wait briefly for a non-child to go, then kill it by PID."""
    for _ in range(100):
        if _gone(pid):
            return
        try:
            os.waitpid(pid, os.WNOHANG)  # ours when `up` was this process
        except ChildProcessError:
            pass
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
