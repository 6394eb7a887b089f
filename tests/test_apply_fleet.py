"""`apply` over SSH on the sshd test fleet (tests/fleet): real hosts, real file states.

Each host has its own writable /usr/local, /etc/systemd/system, /opt and /var/lib; systemd
is not PID 1 there, so units are installed and verified and systemctl steps are skipped.
llama-server on the hosts is a copy of /bin/true at /opt/llama-server (verify needs an
executable; serving is tested in the lab).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coffers_provision.schema import problems

REPO = Path(__file__).resolve().parent.parent
MANAGED = ("/usr/local", "/etc/systemd/system", "/var/lib/coffers")
TINY = {"layers": 4, "dim": 256, "heads": 4, "kv_heads": 4, "ffn": 512}


def prepare(fleet, tmp: Path, hosts=None, **coffers) -> Path:
    """llama-server is /bin/true, so the server is not asked (service.verify false): the
    fleet's simulated topologies cannot run a placed server (tests/test_serving.py and the
    lab do)."""
    coffers["service"] = {"verify": False, **(coffers.get("service") or {})}
    for h in hosts or fleet.hosts:
        target = h.upper("/opt/llama-server")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copy("/bin/true", target)
    return fleet.write_inventory(tmp / "inventory.yml", hosts=hosts, coffers={
        "model": "/var/lib/coffers/models/tiny.gguf", "model_generate": TINY,
        "llama_server": "/opt/llama-server", "context_length": 512, **coffers,
    })


def apply(fleet, tmp: Path, inv: Path, *flags: str, host_vars: dict | None = None) -> tuple[int, dict]:
    roles = tmp / "roles"
    if not roles.exists():
        shutil.copytree(REPO / "roles", roles)
    proc = subprocess.run(
        [sys.executable, "-m", "coffers_provision", "apply", str(inv), "--json", "--known-hosts", str(fleet.known_hosts),
         "--facts-dir", str(tmp / "facts"), "--retry-file", str(tmp / "apply.retry"), "--play", str(roles / "site.yml"), *flags],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "PYTHONPATH": str(REPO)},
    )
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"rc {proc.returncode}: {proc.stdout}\n{proc.stderr}") from None
    assert not problems("recap", doc), problems("recap", doc)  # every recap these tests read, as documented
    return proc.returncode, doc


def trees(hosts) -> dict[str, str]:
    """Every byte and mode of every host's managed trees."""
    out = {}
    for h in hosts:
        for top in MANAGED:
            base = h.upper(top)
            for dirpath, dirs, files in os.walk(base):
                for name in dirs + files:
                    p = Path(dirpath) / name
                    data = p.read_bytes() if p.is_file() else b""
                    out[f"{h.name}:{p}"] = f"{p.lstat().st_mode:o}:{hashlib.sha256(data).hexdigest()}"
    return out


def changed(doc: dict, host: str) -> set[str]:
    return {t["task"] for t in doc["hosts"][host]["tasks"] if t["status"] == "changed"}


@pytest.mark.fleet
def test_apply_then_reapply_changes_nothing(fleet, tmp_path):
    inv = prepare(fleet, tmp_path, service={"port": 18080})
    rc, first = apply(fleet, tmp_path, inv)
    assert rc == 0, json.dumps(first, indent=1)[:3000]
    for h in fleet.hosts:
        counts = first["hosts"][h.name]
        assert counts["failed"] == 0 and counts["changed"] > 0, h.name
        assert os.access(h.upper("/usr/local/bin/numa-shard-place"), os.X_OK)
        assert h.upper("/usr/local/include/ggml-numa-shard.h").exists()
        unit = h.upper("/etc/systemd/system/coffers-llama.service").read_text()
        plan = json.loads(h.upper("/var/lib/coffers/deployment.json").read_text())
        if plan["shard_map"]:
            assert f'Environment="GGML_NUMA_SHARD_MAP={plan["shard_map"]}"' in unit
        assert '"--port" "18080"' in unit
        unit_task = next(t for t in first["hosts"][h.name]["tasks"] if t["task"] == "coffers-llama.service")
        steps = {s["name"]: s for s in unit_task["steps"]}
        assert steps["verify"]["status"] == "ok"
        assert steps["start"]["status"] == "skipped" and "not PID 1" in steps["start"]["message"]
    before = trees(fleet.hosts)
    rc, second = apply(fleet, tmp_path, inv)
    assert rc == 0
    assert {h: d["changed"] for h, d in second["hosts"].items()} == {h.name: 0 for h in fleet.hosts}
    assert trees(fleet.hosts) == before


@pytest.mark.fleet
def test_check_changes_no_byte_and_diff_shows_the_edit(fleet, tmp_path):
    inv = prepare(fleet, tmp_path, service={"port": 18080})
    assert apply(fleet, tmp_path, inv)[0] == 0
    before = trees(fleet.hosts)
    inv = prepare(fleet, tmp_path, service={"port": 18090})
    rc, check = apply(fleet, tmp_path, inv, "--check", "--diff")
    assert rc == 0 and check["check"]
    assert trees(fleet.hosts) == before
    for h in fleet.hosts:
        assert changed(check, h.name) == {"record the deployment this host runs", "coffers-llama.service"}, h.name
        diff = next(t["diff"] for t in check["hosts"][h.name]["tasks"] if t["task"] == "coffers-llama.service")
        minus = [line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
        plus = [line for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
        assert len(minus) == len(plus) == 1 and minus[0][1:].replace("18080", "18090") == plus[0][1:]
    rc, real = apply(fleet, tmp_path, inv)
    assert all(changed(real, h.name) == changed(check, h.name) for h in fleet.hosts)


@pytest.mark.fleet
def test_a_failed_run_keeps_the_restart_for_the_next(fleet, tmp_path):
    host = fleet.hosts[0]
    inv = prepare(fleet, tmp_path, hosts=[host])
    assert apply(fleet, tmp_path, inv)[0] == 0
    # a new build notifies the restart; then the unit fails verification (User=nobody)
    inv = prepare(fleet, tmp_path, hosts=[host], service={"user": "nobody"})
    text = inv.read_text().replace("vars:\n", "vars:\n    native_cflags: [-O2, -std=gnu11, -Wall]\n", 1)
    inv.write_text(text)
    rc, failed = apply(fleet, tmp_path, inv)
    tasks = {t["task"]: t for t in failed["hosts"][host.name]["tasks"]}
    assert rc == 3 and tasks["build numa-shard-place"]["status"] == "changed"
    assert tasks["coffers-llama.service"]["status"] == "failed" and "nobody" in tasks["coffers-llama.service"]["message"]
    assert "restart llama-server" not in tasks
    record = host.upper("/var/lib/coffers/pending-handlers.json")
    assert json.loads(record.read_text()) == {"pending": ["restart llama-server"]}
    # fixed: nothing else changes, and the recorded restart is carried out (skipped here with the reason)
    inv.write_text(text.replace("user: nobody", "user: llama"))
    rc, again = apply(fleet, tmp_path, inv)
    tasks = {t["task"]: t for t in again["hosts"][host.name]["tasks"]}
    assert rc == 0 and tasks["restart llama-server"]["handler"]
    assert tasks["restart llama-server"]["status"] == "skipped" and "not PID 1" in tasks["restart llama-server"]["message"]
    assert not record.exists()


@pytest.mark.fleet
def test_hostile_values_are_quoted_over_ssh(fleet, tmp_path):
    host = fleet.hosts[0]
    canary = f"/tmp/coffers-pwned-{os.getpid()}"
    hostile = f"m $(touch {canary}) `touch {canary}`; touch {canary} 'q\" x.gguf"
    inv = prepare(fleet, tmp_path, hosts=[host], model=f"/var/lib/coffers/models/{hostile}",
                  service={"extra_args": ["--alias", f"$(touch {canary})"], "environment": {"X": f"; touch {canary}"}})
    rc, doc = apply(fleet, tmp_path, inv)
    assert rc == 0, json.dumps(doc)[:2000]
    assert not Path(canary).exists() and not host.inside(canary).exists()
    assert host.upper(f"/var/lib/coffers/models/{hostile}").read_bytes()[:4] == b"GGUF"
    unit = host.upper("/etc/systemd/system/coffers-llama.service").read_text()
    assert f'"--alias" "$$(touch {canary})"' in unit


@pytest.mark.fleet
def test_one_host_down_the_others_finish(make_fleet, tmp_path):
    small = make_fleet(3)
    inv = prepare(small, tmp_path)
    down = small.hosts[1]
    small.stop_host(down)
    rc, doc = apply(small, tmp_path, inv)
    assert rc == 4 and doc["status"] == "hosts_unreachable"
    assert doc["hosts"][down.name]["unreachable"] == 1
    for h in (small.hosts[0], small.hosts[2]):
        assert doc["hosts"][h.name]["failed"] == 0 and doc["hosts"][h.name]["changed"] > 0
    assert (tmp_path / "apply.retry").read_text() == f"{down.name}\n"
    small.start(down)
    rc, retry = apply(small, tmp_path, inv, "--limit", f"@{tmp_path / 'apply.retry'}")
    assert rc == 0 and list(retry["hosts"]) == [down.name]


def files_of(host) -> dict[str, str]:
    out = {}
    for top in MANAGED:
        for dirpath, _, names in os.walk(host.upper(top)):
            for name in names:
                p = Path(dirpath) / name
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.mark.fleet
@pytest.mark.slow
def test_kill_9_over_ssh_never_tears_a_file_and_converges(fleet, tmp_path):
    import random
    import signal
    import time

    host = fleet.hosts[1]
    versions = {}
    for port in (18080, 18081):
        assert apply(fleet, tmp_path, prepare(fleet, tmp_path, hosts=[host], service={"port": port}))[0] == 0
        versions[port] = files_of(host)
    allowed: dict[str, set[str]] = {}
    for snap in versions.values():
        for path, digest in snap.items():
            allowed.setdefault(path, set()).add(digest)
    record = (json.dumps({"pending": ["restart llama-server"]}) + "\n").encode()
    allowed[str(host.upper("/var/lib/coffers/pending-handlers.json"))] = {hashlib.sha256(record).hexdigest()}
    start = time.monotonic()
    apply(fleet, tmp_path, prepare(fleet, tmp_path, hosts=[host], service={"port": 18080}))
    one_run = time.monotonic() - start
    rng = random.Random(7)
    for i in range(20):
        inv = prepare(fleet, tmp_path, hosts=[host], service={"port": (18080, 18081)[i % 2]})
        argv = [sys.executable, "-m", "coffers_provision", "apply", str(inv), "--known-hosts", str(fleet.known_hosts),
                "--facts-dir", str(tmp_path / "facts"), "--retry-file", str(tmp_path / "r"), "--play", str(tmp_path / "roles/site.yml")]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)})
        time.sleep(rng.uniform(0.2, one_run * 1.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for path, digest in files_of(host).items():
            name = os.path.basename(path)
            if name.startswith(".") and ".coffers-" in name:
                continue  # a temp file, swept by the next write of its path
            if name in ("lock.json", ".lock.json.tmp"):
                continue  # the killed run's host lock: the next run takes it over (tests/test_hostlock.py)
            assert digest in allowed.get(path, ()), f"kill {i}: {path} is torn or foreign"
    inv = prepare(fleet, tmp_path, hosts=[host], service={"port": 18081})
    assert apply(fleet, tmp_path, inv)[0] == 0
    rc, doc = apply(fleet, tmp_path, inv)
    assert rc == 0 and doc["hosts"][host.name]["changed"] == 0
    final = {p: d for p, d in files_of(host).items() if ".coffers-" not in p}
    assert final == versions[18081]


def plan_files(fleet, tmp: Path, inv: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "coffers_provision", "plan", str(inv), "--files", "--known-hosts", str(fleet.known_hosts),
         "--facts-dir", str(tmp / "facts"), *flags],
        capture_output=True, text=True, timeout=600, env={**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "PYTHONPATH": str(REPO)})


@pytest.mark.fleet
def test_plan_files_lists_exactly_what_apply_wrote_with_its_hash(fleet, tmp_path):
    """plan --files: every file apply installs, with the sha256 of its bytes (builds: of
    their stamp), computed from the description and the roles, not read from the host."""
    host = fleet.hosts[1]
    inv = prepare(fleet, tmp_path, hosts=[host])
    rc, doc = apply(fleet, tmp_path, inv)
    assert rc == 0, json.dumps(doc, indent=1)[:3000]
    proc = plan_files(fleet, tmp_path, inv, "--json")
    assert proc.returncode == 0, proc.stderr
    files = json.loads(proc.stdout)["hosts"][host.name]["files"]
    kinds = {f["kind"] for f in files}
    assert kinds == {"file", "unit", "build"}, files
    paths = {f["path"] for f in files}
    assert {"/var/lib/coffers/deployment.json", "/usr/local/include/ggml-numa-shard.h",
            "/etc/systemd/system/coffers-llama.service"} <= paths, paths
    for f in files:
        on_host = host.upper(f["stamp"] if f["kind"] == "build" else f["path"])
        assert hashlib.sha256(on_host.read_bytes()).hexdigest() == f["sha256"], f
        if f["mode"] and f["kind"] != "build":
            assert f"{on_host.stat().st_mode & 0o7777:04o}" == f["mode"], f
    unit = host.upper("/etc/systemd/system/coffers-llama.service")
    unit.write_text(unit.read_text() + "# edited by hand\n")
    again = json.loads(plan_files(fleet, tmp_path, inv, "--json").stdout)["hosts"][host.name]["files"]
    assert again == files  # what apply would write, whatever the host holds now
    text = plan_files(fleet, tmp_path, inv)
    assert text.returncode == 0 and f"{files[0]['sha256'][:16]}  {files[0]['path']}" in text.stdout, text.stdout
    offline = plan_files(fleet, tmp_path, inv, "--offline")
    assert offline.returncode == 2 and "--files needs INVENTORY" in offline.stderr
