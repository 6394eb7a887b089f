"""`coffers-provision apply` end to end on this machine (local connection), every path
under a temp root: the CLI, its JSON, exit statuses, the retry file, and kill -9 at
random points. llama-server is a copy of /bin/true (units are verified with
systemd-analyze, not started: systemd is not PID 1 here, and the server is not asked).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def inventory(tmp: Path, hosts: dict[str, dict] | None = None, **coffers) -> Path:
    """llama-server is /bin/true, so the server is not asked (service.verify false);
    tests/test_serving.py deploys and asks a real one."""
    coffers["service"] = {"verify": False, **(coffers.get("service") or {})}
    root = tmp / "root"
    (root / "opt").mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/true", root / "opt/llama-server")

    def host(name: str, extra: dict) -> dict:
        doc = _host(name, extra)
        doc["coffers"] = {k: v for k, v in doc["coffers"].items() if v is not None}  # None: leave the key out
        return doc

    def _host(name: str, extra: dict) -> dict:
        # hosts on this one machine each get their own state dir: its lock admits one run at a time
        return {
            "ansible_connection": "local",
            "state_dir": f"{root}/var/lib/coffers" + ("" if name == "localhost" else f"-{name}"),
            "unit_dir": f"{root}/etc/systemd/system",
            "coffers": {
                "prefix": f"{root}/usr/local",
                "model": f"{root}/models/tiny.gguf",
                "model_generate": {"layers": 4, "dim": 256, "heads": 4, "kv_heads": 4, "ffn": 512},
                "llama_server": f"{root}/opt/llama-server",
                "context_length": 512,
                **coffers,
                **extra,
            },
        }

    doc = {"all": {"hosts": {name: host(name, extra) for name, extra in (hosts or {"localhost": {}}).items()}}}
    path = tmp / "inventory.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def apply_cmd(tmp: Path, inv: Path, *flags: str) -> list[str]:
    roles = tmp / "roles"  # a snapshot of the shipped roles: the run sees one version of them
    if not roles.exists():
        shutil.copytree(REPO / "roles", roles)
    return [sys.executable, "-m", "coffers_provision", "apply", str(inv), "--facts-dir", str(tmp / "facts"),
            "--retry-file", str(tmp / "apply.retry"), "--play", str(roles / "site.yml"), *flags]


def env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "PYTHONPATH": str(REPO)}


def apply(tmp: Path, inv: Path, *flags: str) -> tuple[int, dict]:
    proc = subprocess.run(apply_cmd(tmp, inv, "--json", *flags), capture_output=True, text=True, env=env(tmp), timeout=300)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"no JSON (rc {proc.returncode}): {proc.stdout}\n{proc.stderr}") from None


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_apply_json_counts_and_idempotence(tmp_path):
    inv = inventory(tmp_path, service={"port": 18080})
    rc, first = apply(tmp_path, inv)
    host = first["hosts"]["localhost"]
    assert rc == 0 and first["status"] == "success" and first["check"] is False
    assert all(isinstance(host[k], int) for k in ("ok", "changed", "skipped", "failed", "unreachable"))
    # >= 9: the state dir already exists when the play starts (the host lock lives there)
    assert host["failed"] == 0 and host["unreachable"] == 0 and host["changed"] >= 9
    tasks = {t["task"]: t for t in host["tasks"]}
    assert tasks["coffers-llama.service"]["status"] == "changed"
    assert {s["name"]: s["status"] for s in tasks["coffers-llama.service"]["steps"]}["start"] == "skipped"
    unit = (tmp_path / "root/etc/systemd/system/coffers-llama.service").read_text()
    assert '"--port" "18080"' in unit and "GGML_NUMA_SHARD_MAP=" in unit
    assert os.access(tmp_path / "root/usr/local/bin/numa-shard-place", os.X_OK)
    assert (tmp_path / "root/models/tiny.gguf").read_bytes()[:4] == b"GGUF"

    rc, second = apply(tmp_path, inv)
    assert rc == 0 and second["hosts"]["localhost"]["changed"] == 0

    before = snapshot(tmp_path / "root")
    inv = inventory(tmp_path, service={"port": 18081})
    rc, check = apply(tmp_path, inv, "--check", "--diff")
    assert rc == 0 and check["check"] is True
    assert snapshot(tmp_path / "root") == before
    would = {t["task"] for t in check["hosts"]["localhost"]["tasks"] if t["status"] == "changed"}
    assert would == {"record the deployment this host runs", "coffers-llama.service"}
    restart = next(t for t in check["hosts"]["localhost"]["tasks"] if t["task"] == "restart llama-server")
    assert restart["handler"] and restart["status"] == "skipped" and "systemd is not PID 1" in restart["message"]
    diff = next(t["diff"] for t in check["hosts"]["localhost"]["tasks"] if t["task"] == "coffers-llama.service")
    assert '"--port" "18080"' in diff and '"--port" "18081"' in diff
    rc, real = apply(tmp_path, inv)
    assert {t["task"] for t in real["hosts"]["localhost"]["tasks"] if t["status"] == "changed"} == would


def test_failed_hosts_go_to_the_retry_file_and_limit_reads_it(tmp_path):
    inv = inventory(tmp_path, hosts={"good": {}, "bad": {"model_generate": None, "model_local": str(tmp_path / "missing.gguf")}})
    rc, doc = apply(tmp_path, inv)
    assert rc == 3 and doc["status"] == "hosts_failed"
    assert doc["hosts"]["bad"]["failed"] == 1 and "missing.gguf" in doc["hosts"]["bad"]["error"]
    assert doc["hosts"]["good"]["failed"] == 0
    assert (tmp_path / "apply.retry").read_text() == "bad\n"
    rc, again = apply(tmp_path, inv, "--limit", f"@{tmp_path / 'apply.retry'}")
    assert list(again["hosts"]) == ["bad"]


def test_bad_inventory_and_bad_limit_change_nothing(tmp_path):
    inv = tmp_path / "bad.yml"
    inv.write_text("all:\n  hosts:\n    h1:\n      coffers: {strategy: sideways}\n")
    proc = subprocess.run(apply_cmd(tmp_path, inv), capture_output=True, text=True, env=env(tmp_path))
    assert proc.returncode == 1 and f"{inv}:4:" in proc.stderr and "sideways" in proc.stderr
    proc = subprocess.run(apply_cmd(tmp_path, inventory(tmp_path), "--limit", "@/nonexistent"), capture_output=True, text=True, env=env(tmp_path))
    assert proc.returncode == 2 and "/nonexistent" in proc.stderr
    assert not (tmp_path / "root/usr").exists()


def test_the_embedded_default_in_check_mode(tmp_path):
    """The README's inventory plans and computes here; --check changes nothing."""
    proc = subprocess.run(apply_cmd(tmp_path, REPO / "inventories/local.yml", "--check", "--json"),
                          capture_output=True, text=True, env=env(tmp_path), timeout=300)
    doc = json.loads(proc.stdout)
    host = doc["hosts"]["localhost"]
    assert proc.returncode == 0, proc.stderr
    assert host["failed"] == 0 and host["unreachable"] == 0
    assert not (tmp_path / "apply.retry").exists()


@pytest.mark.slow
def test_kill_9_at_random_points_never_tears_a_file_and_converges(tmp_path):
    """Two versions of the desired state (two ports); every managed file, at every kill
    point, is absent or exactly one of the two versions; temp files are the only extras."""
    versions = {}
    for port in (18080, 18081):
        inv = inventory(tmp_path, service={"port": port})
        assert apply(tmp_path, inv)[0] == 0
        versions[port] = snapshot(tmp_path / "root")
    started = time.monotonic()
    apply(tmp_path, inventory(tmp_path, service={"port": 18080}))
    one_run = time.monotonic() - started
    allowed: dict[str, set[str]] = {}
    for snap in versions.values():
        for path, digest in snap.items():
            allowed.setdefault(path, set()).add(digest)

    # the pending restart is recorded before a change and removed after the restart
    record = (json.dumps({"pending": ["restart llama-server"]}) + "\n").encode()
    allowed["var/lib/coffers/pending-handlers.json"] = {hashlib.sha256(record).hexdigest()}
    rng = random.Random(20240607)
    for i in range(20):
        if i % 5 == 0:
            shutil.rmtree(tmp_path / "root" / "usr", ignore_errors=True)  # a first install again
            shutil.rmtree(tmp_path / "root" / "etc", ignore_errors=True)
        port = (18080, 18081)[i % 2]
        proc = subprocess.Popen(apply_cmd(tmp_path, inventory(tmp_path, service={"port": port}), "--json"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(tmp_path))
        time.sleep(rng.uniform(0.2, one_run * 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for path, digest in snapshot(tmp_path / "root").items():
            name = os.path.basename(path)
            if ".coffers-" in name and name.startswith("."):
                continue  # a temp file: never read as the real thing, swept by the next write
            if name in ("lock.json", ".lock.json.tmp"):
                continue  # the killed run's host lock: the next run takes it over (tests/test_hostlock.py)
            assert path in allowed, f"kill {i}: unexpected file {path}"
            assert digest in allowed[path], f"kill {i}: {path} is torn or foreign"

    inv = inventory(tmp_path, service={"port": 18081})
    rc, doc = apply(tmp_path, inv)
    assert rc == 0, doc
    rc, doc = apply(tmp_path, inv)
    assert rc == 0 and doc["hosts"]["localhost"]["changed"] == 0
    final = {p: d for p, d in snapshot(tmp_path / "root").items() if ".coffers-" not in p}
    expected = {p: d for p, d in versions[18081].items() if p != "var/lib/coffers/pending-handlers.json"}
    assert {p: d for p, d in final.items() if p != "var/lib/coffers/pending-handlers.json"} == expected
    assert not (tmp_path / "root/var/lib/coffers/pending-handlers.json").exists()
