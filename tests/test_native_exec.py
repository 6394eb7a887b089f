"""numa-shard-place --exec: the CPU list and memory policy it sets are what the program it
runs has, read by that program itself (/proc/self/status and get_mempolicy(2)).

This machine has one NUMA node, so every policy names node 0; the lab's 4-node guest checks
where the program's pages land (tests/lab/test_placement.py).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tests.c.nativebuild import PLACE, sanitized

WEIGHTED = Path("/sys/kernel/mm/mempolicy/weighted_interleave")
SYS_GET_MEMPOLICY = {"x86_64": 239, "aarch64": 236}[platform.machine()]

# Run by the exec'd program: what it was given, as one JSON line.
REPORT = f"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
mode, mask = ctypes.c_int(-1), (ctypes.c_ulong * 16)()
maxnode = ctypes.c_ulong(ctypes.sizeof(mask) * 8 + 1)  # the kernel reads one bit fewer than maxnode
rc = libc.syscall({SYS_GET_MEMPOLICY}, ctypes.byref(mode), mask, maxnode, None, ctypes.c_ulong(0))
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
print(json.dumps({{"rc": rc, "mode": mode.value, "mask": mask[0], "cpus": status["Cpus_allowed_list"].strip(),
                   "env": os.environ.get("COFFERS_EXEC_PROBE")}}))
"""
MODES = {"default": 0, "preferred": 1, "bind": 2, "interleave": 3, "local": 4, "weighted-interleave": 6}


def run_exec(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(sanitized(PLACE)), "--exec", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def report(*args: str, env: dict[str, str] | None = None) -> dict:
    proc = run_exec(*args, "--", sys.executable, "-c", REPORT, env=env)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["rc"] == 0
    return got


def cpu_list(text: str) -> set[int]:
    """The kernel's list syntax (0-2,5) as a set."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def test_cpus_and_bind_are_applied_and_the_environment_kept():
    cpu = allowed_cpus()[-1]
    got = report("--cpus", str(cpu), "--policy", "bind", "--nodes", "0", env={"COFFERS_EXEC_PROBE": "kept"})
    assert cpu_list(got["cpus"]) == {cpu}
    assert (got["mode"], got["mask"]) == (MODES["bind"], 1)
    assert got["env"] == "kept"


def test_cpus_alone_leave_the_policy_as_it_was():
    got = report("--cpus", "0")
    assert got["cpus"] == "0" and got["mode"] == MODES["default"]
    status = subprocess.run([str(sanitized(PLACE)), "--exec", "--cpus", "0", "--", "cat", "/proc/self/status"],
                            capture_output=True, text=True, timeout=60).stdout  # a program found on PATH
    assert "Cpus_allowed_list:\t0\n" in status


@pytest.mark.parametrize("policy, nodes", [("preferred", "0"), ("interleave", "0"), ("local", None),
                                           ("default", None)])
def test_each_policy_is_the_programs_policy(policy, nodes):
    got = report("--policy", policy, *(["--nodes", nodes] if nodes else []))
    assert got["mode"] == MODES[policy]
    assert got["mask"] == (1 if nodes else 0)
    assert cpu_list(got["cpus"]) == set(allowed_cpus())  # no --cpus: the affinity is inherited as it was


@pytest.mark.skipif(not WEIGHTED.is_dir(), reason="this kernel has no weighted interleave: see the next test")
def test_weighted_interleave_writes_the_weights_then_sets_the_policy():
    """The real sysfs file: node 0's weight is changed, seen by the program, then put back."""
    node0 = WEIGHTED / "node0"
    before = node0.read_text().strip()
    weight = "7" if before != "7" else "5"
    try:
        proc = run_exec("--policy", "weighted-interleave", "--weights", f"0:{weight}", "--", "cat", str(node0))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == weight
        got = report("--policy", "weighted-interleave", "--nodes", "0")
        assert (got["mode"], got["mask"]) == (MODES["weighted-interleave"], 1)
    finally:
        node0.write_text(before + "\n")  # one node: the weight means nothing here, but leave it as found


def test_weights_go_to_the_weight_files(tmp_path):
    fake = tmp_path / "weighted_interleave"
    fake.mkdir()
    (fake / "node0").write_text("1\n")
    if WEIGHTED.is_dir():
        got = report("--policy", "weighted-interleave", "--nodes", "0", "--weights", "0:9",
                     env={"NUMA_SHARD_WEIGHTED_SYSFS": str(fake)})
        assert got["mode"] == MODES["weighted-interleave"]
    else:  # the weights are written, then the kernel refuses the policy
        proc = run_exec("--policy", "weighted-interleave", "--weights", "0:9", "--", "true",
                        env={"NUMA_SHARD_WEIGHTED_SYSFS": str(fake)})
        assert proc.returncode == 1 and "needs Linux 6.9" in proc.stderr
    assert (fake / "node0").read_text() == "9\n"


def test_a_kernel_without_weighted_interleave_is_named(tmp_path):
    env = {} if not WEIGHTED.is_dir() else {"NUMA_SHARD_WEIGHTED_SYSFS": str(tmp_path / "absent")}
    proc = run_exec("--policy", "weighted-interleave", "--nodes", "0", "--", "true", env=env)
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()
    assert line.startswith("numa-shard-place: weighted interleave needs Linux 6.9 or later; this kernel is "
                           f"{os.uname().release} (")


def test_a_missing_weight_file_is_named(tmp_path):
    fake = tmp_path / "weighted_interleave"
    fake.mkdir()
    proc = run_exec("--policy", "weighted-interleave", "--weights", "0:2", "--", "true",
                    env={"NUMA_SHARD_WEIGHTED_SYSFS": str(fake)})
    assert proc.returncode == 1
    assert f"cannot set the weight of node 0: {fake}/node0: No such file or directory" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cpus", "x"], "--cpus: expected a CPU list such as 0-3,8, got 'x'"),
        (["--cpus", "4000"], "--cpus: CPU 4000 is not in this process's allowed CPUs ("),
        (["--cpus", "3-1"], "--cpus: expected a CPU list"),
        (["--policy", "frob"], "--policy: expected bind, preferred, interleave, weighted-interleave, local or default"),
        (["--policy", "bind"], "--policy bind needs --nodes"),
        (["--policy", "bind", "--nodes", "0-"], "--nodes: expected a node list such as 0,2-3, got '0-'"),
        (["--policy", "interleave", "--nodes", "0,0"], "--nodes: node 0 given twice"),
        (["--policy", "local", "--nodes", "0"], "--policy local takes no --nodes"),
        (["--nodes", "0"], "--exec: --nodes needs --policy"),
        (["--policy", "bind", "--nodes", "0", "--weights", "0:2"], "--weights goes with --policy weighted-interleave"),
        (["--policy", "weighted-interleave", "--nodes", "0", "--weights", "1:2"], "--weights: node 1 is not in --nodes"),
        (["--policy", "weighted-interleave", "--nodes", "0", "--weights", "0:0"], "with weights 1..255, got '0:0'"),
        (["--frob"], "--exec takes --cpus, --policy, --nodes and --weights, then -- PROGRAM ARGS...; got '--frob'"),
    ],
)
def test_bad_lists_and_flags_fail_with_one_line(args, message):
    proc = run_exec(*args, "--", "true")
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("numa-shard-place: ") and message in line and proc.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["--policy", "bind", "--nodes", "1023"], "--nodes: node 1023 is offline or does not exist"),
    (["--policy", "preferred", "--nodes", "0-1"], "--nodes: node 1 is offline or does not exist"),
    (["--policy", "weighted-interleave", "--weights", "0:1,7:2"], "--weights: node 7 is offline or does not exist"),
])
def test_a_node_this_host_lacks_fails_naming_it(args, message):
    """Well-formed flags that ask for what the host does not have: exit 1, as for a bad map."""
    proc = run_exec(*args, "--", "true")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [f"numa-shard-place: {message}"]


def test_a_memoryless_node_is_refused(tmp_path):
    tree = tmp_path / "nodes"
    tree.mkdir()
    for name, text in (("online", "0-1"), ("possible", "0-1"), ("has_memory", "0")):
        (tree / name).write_text(text + "\n")
    proc = run_exec("--policy", "bind", "--nodes", "1", "--", "true", env={"GGML_NUMA_SHARD_SYSFS": str(tree)})
    assert proc.returncode == 1 and proc.stderr.splitlines() == ["numa-shard-place: --nodes: node 1 has no memory"]


@pytest.mark.parametrize("args, status, message", [
    ([], 2, "--exec: expected -- PROGRAM ARGS... at the end"),
    (["--cpus", "0"], 2, "--exec: expected -- PROGRAM ARGS... at the end"),
    (["--cpus", "0", "--"], 2, "--exec: expected -- PROGRAM ARGS... at the end"),
    (["--", "/nonexistent/program"], 127, "cannot run /nonexistent/program: No such file or directory"),
    (["--", "NOEXEC"], 126, "cannot run NOEXEC: Permission denied"),
    (["--", "SCRIPT"], 126, "cannot run SCRIPT: Exec format error"),  # no shell fallback for a path
])
def test_no_program_or_one_that_cannot_run(tmp_path, args, status, message):
    (tmp_path / "noexec").write_text("#!/bin/sh\n")
    (tmp_path / "script").write_text("echo ran\n")
    (tmp_path / "script").chmod(0o755)
    subst = {"NOEXEC": str(tmp_path / "noexec"), "SCRIPT": str(tmp_path / "script")}
    message = message.replace("NOEXEC", subst["NOEXEC"]).replace("SCRIPT", subst["SCRIPT"])
    proc = run_exec(*[subst.get(a, a) for a in args])
    assert proc.returncode == status and message in proc.stderr, proc.stderr


@pytest.mark.parametrize("flag", ["--cpus", "--policy", "--nodes"])
def test_exec_flags_need_exec(flag):
    proc = subprocess.run([str(sanitized(PLACE)), flag, "0", "m.gguf"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr == f"numa-shard-place: {flag} goes with --exec\n"


def test_help_prints_every_form_and_exits_0():
    proc = subprocess.run([str(sanitized(PLACE)), "--exec", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    assert [line.split()[:2] for line in proc.stdout.splitlines() if line.startswith(("usage:", "      "))
            and "numa-shard-place" in line] == [["usage:", "numa-shard-place"]] + [["numa-shard-place", m] for m in
                                                ("--interleave", "--evict", "--exec")]


def test_the_program_gets_its_arguments_untouched():
    proc = run_exec("--cpus", "0", "--", sys.executable, "-c", "import sys; print(sys.argv[1:])", "--map", "--", "x y")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['--map', '--', 'x y']"

