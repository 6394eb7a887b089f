"""`exec INVENTORY --host H`: the unit's exact command in the foreground, for machines
without systemd: its placement step, then the server with the unit's environment, CPU list
and nothing else from the caller's environment."""

from __future__ import annotations

import subprocess
import sys

from .test_apply import apply, env, inventory

PROBE = "#!/bin/sh\necho \"args: $*\"\nenv | sort\ngrep Cpus_allowed_list /proc/self/status\n"


def run_exec(tmp, inv, *flags):  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "coffers_provision", "exec", str(inv), "--facts-dir", str(tmp / "facts"), *flags],
                          capture_output=True, text=True, env={**env(tmp), "CALLER_SECRET": "leak"}, timeout=300)


def test_exec_runs_the_units_command_with_its_environment_only(tmp_path):
    inv = inventory(tmp_path, strategy="shard")
    server = tmp_path / "root/opt/llama-server"
    assert apply(tmp_path, inv)[0] == 0
    server.write_text(PROBE)  # the unit's ExecStart, observed from inside
    server.chmod(0o755)
    shown = run_exec(tmp_path, inv, "--host", "localhost", "--print")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("GGML_NUMA_SHARD_MAP=") and "numa-shard-place --exec --cpus" in lines[-1]
    ran = run_exec(tmp_path, inv, "--host", "localhost")
    assert ran.returncode == 0, ran.stderr
    assert f"args: -m {tmp_path}/root/models/tiny.gguf --host" in ran.stdout
    assert "GGML_NUMA_SHARD_MAP=" in ran.stdout and "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin" in ran.stdout
    assert "CALLER_SECRET" not in ran.stdout  # nothing of the caller's environment
    assert "Cpus_allowed_list:" in ran.stdout


def test_exec_names_what_is_wrong(tmp_path):
    inv = inventory(tmp_path)
    r = run_exec(tmp_path, inv, "--host", "nosuch")
    assert r.returncode == 1 and r.stderr.strip().startswith("error: --host nosuch: not in") and "Traceback" not in r.stderr
