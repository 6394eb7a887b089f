"""What the lab tests do inside a guest: install files, run llama-server under systemd, talk HTTP.

Everything goes through the tool's own SSH connector; HTTP requests travel through it too
(direct-tcpip channels, as apply asks servers), so llama-server listens on the guest's
loopback only.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from coffers_provision.errors import HostError
from coffers_provision.serving.health import request, wait_healthy

MODEL = "/var/lib/coffers/models/lab-llama.gguf"
LLAMA_SERVER = "/usr/local/bin/llama-server"
TEST_UNIT = "lab-llama-test"
TEST_PORT = 8091

def install(conn, local: Path, remote: str, mode: int = 0o644) -> None:  # type: ignore[no-untyped-def]
    """Copy `local` to `remote` unless a file of the same sha256 is already there."""
    import hashlib

    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    r = conn.run(f"sha256sum {shlex.quote(remote)} 2>/dev/null")
    if r.ok and r.stdout.split()[0] == digest:
        return
    assert conn.run(["mkdir", "-p", str(Path(remote).parent)]).ok
    conn.put(local.read_bytes(), remote, mode=mode)


def opener(conn, port: int = TEST_PORT):  # type: ignore[no-untyped-def]
    """Streams to the guest's 127.0.0.1:port through its SSH connection (as apply asks servers)."""
    return lambda: conn.open_channel("127.0.0.1", port, timeout=30.0)


def http(conn, path: str, body: dict | None = None, port: int = TEST_PORT, timeout: float = 600) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """(status, body) of a request to the guest's 127.0.0.1:port; status 0 when nothing answers."""
    import http.client

    try:
        status, data = request(opener(conn, port), "POST" if body is not None else "GET", path, body, timeout=timeout)
    except (OSError, http.client.HTTPException) as e:
        return 0, str(e)
    return status, data.decode("utf-8", "replace")


def start_llama(conn, *, threads: int = 2, env: dict[str, str] | None = None, wait_s: float = 600, model: str = MODEL) -> int:  # type: ignore[no-untyped-def]
    """Start llama-server as a transient systemd service; wait for /health; return its pid."""
    stop_llama(conn)
    props = [f"--setenv={k}={v}" for k, v in (env or {}).items()]
    r = conn.run(["systemd-run", f"--unit={TEST_UNIT}", "--collect", *props, LLAMA_SERVER, "-m", model,
                  "--host", "127.0.0.1", "--port", str(TEST_PORT), "-t", str(threads), "-c", "256", "-np", "1"])
    assert r.ok, r.stderr
    try:
        return _wait_healthy(conn, wait_s)
    except BaseException:
        stop_llama(conn)
        raise


def _wait_healthy(conn, wait_s: float) -> int:  # type: ignore[no-untyped-def]
    """The same readiness wait apply uses (serving.health.wait_healthy), then the server's pid."""
    def alive() -> str | None:
        active = conn.run(["systemctl", "is-active", TEST_UNIT]).stdout.strip()
        if active in ("active", "activating"):
            return None
        return f"llama-server stopped ({active}):\n" + conn.run(["journalctl", "-u", TEST_UNIT, "--no-pager", "-n", "40"]).stdout

    try:
        wait_healthy(opener(conn), wait_s, alive=alive)
    except HostError as e:
        raise AssertionError(str(e)) from None
    pid = int(conn.run(["systemctl", "show", "-P", "MainPID", TEST_UNIT]).stdout.strip())
    assert pid > 0
    return pid


def stop_llama(conn) -> None:  # type: ignore[no-untyped-def]
    conn.run(["systemctl", "stop", TEST_UNIT])
