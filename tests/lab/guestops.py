"""What the lab tests do inside a guest: install files, run llama-server under systemd, talk HTTP.

Everything goes through the tool's own SSH connector; HTTP requests are made inside the
guest (python3 there), so llama-server listens on the guest's loopback only.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

from coffers_provision.connect.base import CommandTimeout

MODEL = "/var/lib/coffers/models/lab-llama.gguf"
LLAMA_SERVER = "/usr/local/bin/llama-server"
TEST_UNIT = "lab-llama-test"
TEST_PORT = 8091

_HTTP = r"""
import json, sys, urllib.request, urllib.error
url, body = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url, data=body.encode() if body else None, headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=float(sys.argv[3])) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode()}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode()}))
except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
    print(json.dumps({"status": 0, "body": str(e)}))
"""


def install(conn, local: Path, remote: str, mode: int = 0o644) -> None:  # type: ignore[no-untyped-def]
    """Copy `local` to `remote` unless a file of the same sha256 is already there."""
    import hashlib

    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    r = conn.run(f"sha256sum {shlex.quote(remote)} 2>/dev/null")
    if r.ok and r.stdout.split()[0] == digest:
        return
    assert conn.run(["mkdir", "-p", str(Path(remote).parent)]).ok
    conn.put(local.read_bytes(), remote, mode=mode)


def http(conn, path: str, body: dict | None = None, port: int = TEST_PORT, timeout: float = 600) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """(status, body) of a request made inside the guest; status 0 when nothing answers."""
    url = f"http://127.0.0.1:{port}{path}"
    r = conn.run(["python3", "-c", _HTTP, url, json.dumps(body) if body is not None else "", str(timeout)],
                 timeout=timeout + 30)
    assert r.ok, r.stderr
    out = json.loads(r.stdout)
    return out["status"], out["body"]


def start_llama(conn, *, threads: int = 2, env: dict[str, str] | None = None, wait_s: float = 600) -> int:  # type: ignore[no-untyped-def]
    """Start llama-server as a transient systemd service; wait for /health; return its pid."""
    stop_llama(conn)
    props = [f"--setenv={k}={v}" for k, v in (env or {}).items()]
    r = conn.run(["systemd-run", f"--unit={TEST_UNIT}", "--collect", *props, LLAMA_SERVER, "-m", MODEL,
                  "--host", "127.0.0.1", "--port", str(TEST_PORT), "-t", str(threads), "-c", "256", "-np", "1"])
    assert r.ok, r.stderr
    try:
        return _wait_healthy(conn, wait_s)
    except BaseException:
        stop_llama(conn)
        raise


def _wait_healthy(conn, wait_s: float) -> int:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            status, _ = http(conn, "/health", timeout=30)
        except CommandTimeout:  # a guest starved of CPU by a busy host: ask again
            continue
        if status == 200:
            pid = int(conn.run(["systemctl", "show", "-P", "MainPID", TEST_UNIT]).stdout.strip())
            assert pid > 0
            return pid
        active = conn.run(["systemctl", "is-active", TEST_UNIT]).stdout.strip()
        if active not in ("active", "activating"):
            log = conn.run(["journalctl", "-u", TEST_UNIT, "--no-pager", "-n", "40"]).stdout
            raise AssertionError(f"llama-server stopped ({active}):\n{log}")
        time.sleep(2)
    raise AssertionError(f"llama-server not healthy after {wait_s} s")


def stop_llama(conn) -> None:  # type: ignore[no-untyped-def]
    conn.run(["systemctl", "stop", TEST_UNIT])
