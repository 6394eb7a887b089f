"""The shipped roles that the unit and apply tests do not cover: tuning and llama_build,
run on this machine through the local connector with every path under a temp root.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from coffers_provision.connect.local import LocalConnector
from coffers_provision.engine.result import Status
from coffers_provision.engine.role import load_play
from coffers_provision.engine.runner import Options, play_vars, run_play
from coffers_provision.resources import data_dir


def play_of(tmp: Path, *roles: str):
    path = tmp / "play.yml"
    path.write_text("".join(f"- role: {r}\n" for r in roles))
    return load_play(path, data_dir("roles"))


def run(play, host_vars: dict, check: bool = False):
    return run_play("local", LocalConnector(), play, play_vars(play, host_vars), Options(check=check))


def statuses(report) -> dict[str, Status]:
    return {r.task: r.status for r in report.results}


def test_tuning_sets_numa_balancing_and_thp_now_and_at_boot(tmp_path):
    """The kernel knobs are files under tmp_path: this machine's own are never touched."""
    proc = tmp_path / "proc/sys/kernel"
    proc.mkdir(parents=True)
    (proc / "numa_balancing").write_text("1\n")
    thp = tmp_path / "thp_enabled"
    thp.write_text("[always] madvise never\n")
    for d in ("sysctl.d", "tmpfiles.d"):
        (tmp_path / d).mkdir()
    host = {
        "state_dir": str(tmp_path / "state"), "proc_sys": str(tmp_path / "proc/sys"), "thp_path": str(thp),
        "sysctl_dir": str(tmp_path / "sysctl.d"), "tmpfiles_dir": str(tmp_path / "tmpfiles.d"),
        "coffers": {"tuning": {"enabled": True, "thp": "madvise"}},
    }
    play = play_of(tmp_path, "tuning")
    first = run(play, host)
    assert set(statuses(first).values()) == {Status.CHANGED}, [r.message for r in first.results]
    assert (proc / "numa_balancing").read_text() == "0\n"
    assert (tmp_path / "sysctl.d/90-coffers-numa.conf").read_text().endswith("kernel.numa_balancing = 0\n")
    assert (tmp_path / "tmpfiles.d/coffers-thp.conf").read_text() == f"w {thp} - - - - madvise\n"
    assert thp.read_text() == "madvise\n"
    thp.write_text("always [madvise] never\n")  # what the kernel shows after the write
    assert run(play, host).counts()["changed"] == 0
    (proc / "numa_balancing").write_text("1\n")  # drift
    assert statuses(run(play, host))["kernel.numa_balancing"] is Status.CHANGED


SERVER_CMAKE = """\
cmake_minimum_required(VERSION 3.13)
project(standin C)
add_executable(llama-server tools/server/server.c)
set_target_properties(llama-server PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
"""


def standin_archive(tmp: Path, version: str) -> Path:
    """A source tree shaped like llama.cpp's (tools/server) whose llama-server is a tiny C
    program: a real cmake build of the same target, minutes shorter (the lab builds the real one)."""
    src = tmp / f"src-{version}" / "llama.cpp"
    (src / "tools/server").mkdir(parents=True)
    (src / "CMakeLists.txt").write_text(SERVER_CMAKE)
    (src / "tools/server/CMakeLists.txt").write_text("# the server target lives in the top CMakeLists here\n")
    (src / "tools/server/server.c").write_text(f'#include <stdio.h>\nint main(void) {{ puts("{version}"); return 0; }}\n')
    archive = tmp / f"llama-{version}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="llama.cpp")
    return archive


@pytest.mark.slow
def test_llama_build_builds_once_and_again_when_the_archive_changes(tmp_path):
    server = tmp_path / "prefix/bin/llama-server"
    play = play_of(tmp_path, "llama_build")

    def host(archive: Path, args: list[str] | None = None) -> dict:
        return {"state_dir": str(tmp_path / "state"),
                "coffers": {"prefix": str(tmp_path / "prefix"),
                            "llama_build": {"source_archive": str(archive), "jobs": 2, "cmake_args": args or []}}}

    v1 = standin_archive(tmp_path, "v1")
    first = run(play, host(v1))
    assert statuses(first)["build llama-server"] is Status.CHANGED, [r.message for r in first.results]
    assert subprocess.run([server], capture_output=True, text=True).stdout == "v1\n"
    assert run(play, host(v1)).counts()["changed"] == 0
    v2 = standin_archive(tmp_path, "v2")
    check = run(play, host(v2), check=True)
    assert statuses(check)["build llama-server"] is Status.CHANGED
    assert subprocess.run([server], capture_output=True, text=True).stdout == "v1\n"  # --check built nothing
    again = run(play, host(v2))
    assert statuses(again)["build llama-server"] is Status.CHANGED
    assert subprocess.run([server], capture_output=True, text=True).stdout == "v2\n"
    flags = run(play, host(v2, ["-DCMAKE_C_FLAGS=-O1"]))
    assert statuses(flags)["build llama-server"] is Status.CHANGED
    assert statuses(flags)["upload the source archive"] is Status.OK


def test_a_bad_archive_fails_with_the_reason(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        (tmp_path / "README").write_text("not llama.cpp\n")
        tar.add(tmp_path / "README", arcname="x/README")
    report = run(play_of(tmp_path, "llama_build"), {
        "state_dir": str(tmp_path / "state"),
        "coffers": {"prefix": str(tmp_path / "prefix"), "llama_build": {"source_archive": str(bad)}}})
    build = next(r for r in report.results if r.task == "build llama-server")
    assert build.status is Status.FAILED and "not a llama.cpp source tree" in build.message
