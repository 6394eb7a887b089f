"""The QEMU NUMA lab: guest definitions, and bringing the guests up and down.

`tests/lab/up` and `tests/lab/down` call `up()` and `down()`; the lab tests import the
guest definitions from here, so the QEMU command line and the expected topology come from
one place. Standard library only: it runs before the virtualenv exists.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
REPO = LAB_DIR.parent.parent
BOOT_TIMEOUT_S = 600  # a cold TCG boot on a busy 2-core machine


@dataclass(frozen=True)
class GuestNode:
    mem_mb: int
    cpus: tuple[int, ...]


@dataclass(frozen=True)
class Guest:
    name: str
    port: int  # host port forwarded to the guest's sshd, on 127.0.0.1 only
    nodes: tuple[GuestNode, ...]
    distances: tuple[tuple[int, ...], ...]

    @property
    def mem_mb(self) -> int:
        return sum(n.mem_mb for n in self.nodes)

    @property
    def n_cpus(self) -> int:
        return sum(len(n.cpus) for n in self.nodes)


GUESTS: tuple[Guest, ...] = (
    Guest("lab2", 52202,
          (GuestNode(384, (0,)), GuestNode(384, (1,))),
          ((10, 21), (21, 10))),
    # Unequal sizes and distances: two "sockets" of two nodes each, 12 inside, 20/22 across.
    Guest("lab4", 52204,
          (GuestNode(512, (0,)), GuestNode(384, (1,)), GuestNode(256, (2,)), GuestNode(256, (3,))),
          ((10, 12, 20, 22), (12, 10, 22, 20), (20, 22, 10, 12), (22, 20, 12, 10))),
)


def guest(name: str) -> Guest:
    return next(g for g in GUESTS if g.name == name)


# -- paths -------------------------------------------------------------------------------
def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("COFFERS_LAB_CACHE") or Path(base) / "coffers-lab")


def run_dir() -> Path:
    return Path(os.environ.get("COFFERS_LAB_RUN") or LAB_DIR / "run")


def image_dir() -> Path:
    """The cached image that build-image makes for its current content."""
    out = subprocess.run(["bash", "-c", f". {LAB_DIR}/lib.sh && echo $LAB_IMAGE"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def key_path() -> Path:
    return run_dir() / "id_ed25519"


def known_hosts_path() -> Path:
    return run_dir() / "known_hosts"


# -- QEMU ------------------------------------------------------------------------------
def qemu_argv(g: Guest, image: Path, overlay: Path, accel: str) -> list[str]:
    run = run_dir()
    argv = ["qemu-system-x86_64", "-name", g.name, "-machine", "q35", "-accel", accel,
            "-cpu", "host" if accel == "kvm" else "max",
            "-smp", str(g.n_cpus), "-m", f"{g.mem_mb}M",
            "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", f"file:{run / (g.name + '.console.log')}",
            "-daemonize", "-pidfile", str(run / (g.name + ".pid")),
            "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"),
            "-append", f"root=/dev/vda rw console=ttyS0 quiet systemd.hostname={g.name} mitigations=off",
            "-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
            "-nic", f"user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:{g.port}-:22",
            "-device", "virtio-rng-pci"]
    for i, node in enumerate(g.nodes):
        argv += ["-object", f"memory-backend-ram,id=m{i},size={node.mem_mb}M",
                 "-numa", f"node,nodeid={i},memdev=m{i}," + ",".join(f"cpus={c}" for c in node.cpus)]
    for i, row in enumerate(g.distances):
        for j, d in enumerate(row):
            if i != j:
                argv += ["-numa", f"dist,src={i},dst={j},val={d}"]
    return argv


def kvm_works(image: Path) -> bool:
    """True when KVM really runs a guest: the kernel reaches its first panic within seconds.

    An openable /dev/kvm is not enough (nested setups can hang forever), so boot the lab
    kernel with an init that fails, and require the panic message. Cached per host boot.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    verdict = cache_dir() / f"kvm-{boot_id}"
    if verdict.exists():
        return verdict.read_text() == "yes"
    log = run_dir() / "kvm-probe.log"
    log.unlink(missing_ok=True)
    argv = ["qemu-system-x86_64", "-accel", "kvm", "-m", "256", "-nodefaults", "-display", "none",
            "-no-reboot", "-serial", f"file:{log}", "-kernel", str(image / "vmlinuz"),
            "-initrd", str(image / "initrd.img"), "-append", "console=ttyS0 panic=-1 rdinit=/bin/false"]
    try:
        subprocess.run(argv, timeout=20, capture_output=True, check=False)
        ok = "Kernel panic" in log.read_text(errors="replace") if log.exists() else False
    except subprocess.TimeoutExpired:  # run() kills qemu (its own child) on timeout
        ok = False
    verdict.parent.mkdir(parents=True, exist_ok=True)
    verdict.write_text("yes" if ok else "no")
    return ok


def pid_of(g: Guest) -> int | None:
    """The guest's QEMU pid from its pidfile, if that process is still this guest's QEMU."""
    try:
        pid = int((run_dir() / f"{g.name}.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"-name" in cmdline and g.name.encode() in cmdline else None


def ssh_argv(g: Guest, *command: str, timeout: int = 10) -> list[str]:
    return ["ssh", "-F", "none", "-i", str(key_path()), "-p", str(g.port),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts_path()}", "-o", f"ConnectTimeout={timeout}",
            "-o", "LogLevel=ERROR", "root@127.0.0.1", *command]


def _prepare_run(image: Path) -> None:
    run = run_dir()
    run.mkdir(parents=True, exist_ok=True)
    key = key_path()
    key.unlink(missing_ok=True)
    key.write_bytes((image / "id_ed25519").read_bytes())
    key.chmod(0o600)
    hostkey = (image / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    known_hosts_path().write_text("".join(f"[127.0.0.1]:{g.port} {' '.join(hostkey)}\n" for g in GUESTS))


def up(names: list[str] | None = None) -> dict:
    """Build (or reuse) the image, boot the guests, wait for sshd; return and save lab.json."""
    subprocess.run([str(LAB_DIR / "build-image")], check=True)
    image = image_dir()
    _prepare_run(image)
    forced = os.environ.get("COFFERS_LAB_ACCEL")
    accel = forced or ("kvm" if kvm_works(image) else "tcg")
    chosen = [g for g in GUESTS if names is None or g.name in names]
    started: dict[str, float] = {}
    for g in chosen:
        if pid_of(g):
            print(f"lab: {g.name} already running (pid {pid_of(g)})", file=sys.stderr)
            continue
        overlay = run_dir() / f"{g.name}.qcow2"
        overlay.unlink(missing_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                        "-b", str(image / "rootfs.img"), str(overlay)], check=True)
        (run_dir() / f"{g.name}.console.log").unlink(missing_ok=True)
        started[g.name] = time.monotonic()
        r = subprocess.run(qemu_argv(g, image, overlay, accel), capture_output=True, text=True, check=False)
        if r.returncode != 0:  # e.g. the forwarded port is taken by a guest of another clone
            raise RuntimeError(f"{g.name}: QEMU did not start: {r.stderr.strip()}")
    boot: dict[str, float] = {}
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    pending = [g for g in chosen if g.name in started]
    while pending:
        for g in list(pending):
            if pid_of(g) is None:
                raise RuntimeError(f"{g.name}: QEMU exited during boot; see {run_dir() / (g.name + '.console.log')}")
            # sshd answers before boot ends; wait for systemd too, so tests start on a quiet guest.
            r = subprocess.run(ssh_argv(g, "systemctl", "is-system-running", "--wait"),
                               capture_output=True, text=True, timeout=BOOT_TIMEOUT_S, check=False)
            if r.returncode in (0, 1) and r.stdout.strip() in ("running", "degraded"):
                boot[g.name] = round(time.monotonic() - started[g.name], 1)
                print(f"lab: {g.name} up in {boot[g.name]} s ({r.stdout.strip()}, {accel}, port {g.port})",
                      file=sys.stderr)
                pending.remove(g)
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"not up after {BOOT_TIMEOUT_S} s: {[g.name for g in pending]}")
        if pending:
            time.sleep(2)
    state = {"accel": accel, "image": str(image), "key": str(key_path()),
             "known_hosts": str(known_hosts_path()), "boot_seconds": boot,
             "guests": {g.name: {"port": g.port, "pid": pid_of(g)} for g in chosen}}
    (run_dir() / "lab.json").write_text(json.dumps(state, indent=2) + "\n")
    return state


def down(names: list[str] | None = None) -> None:
    """Stop each guest's QEMU by its pid (TERM, then KILL), and drop its overlay."""
    for g in GUESTS:
        if names is not None and g.name not in names:
            continue
        pid = pid_of(g)
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if pid_of(g) is None:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
            print(f"lab: {g.name} stopped (pid {pid})", file=sys.stderr)
        for suffix in (".pid", ".qcow2"):
            (run_dir() / f"{g.name}{suffix}").unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    action, names = argv[0], argv[1:] or None
    try:
        if action == "up":
            up(names)
        else:
            down(names)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"lab: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
