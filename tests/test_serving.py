"""Every apply ends with a server that answered: a real llama-server, deployed on this
machine by `apply` (local connection, every path under a temp root), asked for /health and
one completion. systemd is not PID 1 here, so the unit's exact command runs transiently
(deployment/verify.py) and is stopped again.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from .test_apply import apply, inventory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serving(report: dict, host: str = "localhost") -> list[dict]:
    return [t for t in report["hosts"][host]["tasks"] if t["role"] == "serving"]


def answering(tmp: Path, server: Path, **service) -> Path:
    inv = inventory(tmp, llama_server=str(server), service={"verify": True, "host": "127.0.0.1", "port": free_port(), **service})
    return inv


def test_apply_ends_with_a_server_that_answered_and_a_no_op_starts_nothing(tmp_path, llama_server):
    inv = answering(tmp_path, llama_server)
    rc, first = apply(tmp_path, inv)
    checks = serving(first)
    assert rc == 0, first
    assert [c["status"] for c in checks] == ["ok"], checks
    figures = checks[0]["data"]
    assert figures["generation_tokens_per_s"] > 0 and figures["prompt_tokens_per_s"] > 0
    assert "tokens/s" in checks[0]["message"]
    assert not Path(figures["url"].replace("http://", "")).exists()  # a URL, not a path
    # the server was stopped again: nothing listens on its port
    host, port = figures["url"].removeprefix("http://").split(":")
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2).close()

    rc, second = apply(tmp_path, inv)
    assert rc == 0 and serving(second) == [], "a no-op re-apply must not start the server again"
    assert second["hosts"]["localhost"]["changed"] == 0


def test_a_server_that_does_not_come_up_fails_the_host_with_its_log(tmp_path):
    fake = tmp_path / "dies"
    fake.write_text("#!/bin/sh\necho 'cannot load the model: out of memory' >&2\nexit 1\n")
    fake.chmod(0o755)
    inv = answering(tmp_path, fake)
    rc, report = apply(tmp_path, inv)
    assert rc == 3, report
    checks = serving(report)
    assert [c["status"] for c in checks] == ["failed"]
    assert "the server exited" in checks[0]["message"] and "cannot load the model: out of memory" in checks[0]["message"]
    # not recorded as verified: the next apply asks again (and fails again)
    rc, again = apply(tmp_path, inv)
    assert rc == 3 and [c["status"] for c in serving(again)] == ["failed"]


@pytest.mark.fleet
def test_health_and_requests_reach_a_loopback_port_through_ssh(fleet, tmp_path):
    """A server bound to the host's 127.0.0.1 is asked through the SSH connection itself
    (a direct-tcpip channel), with the same readiness wait `apply` uses."""
    import subprocess
    import sys

    from coffers_provision.connect import ConnectionPool, ConnectOptions
    from coffers_provision.errors import HostError
    from coffers_provision.inventory import load_inventory
    from coffers_provision.serving.health import request, wait_healthy

    (tmp_path / "health").write_text("ok\n")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        host = load_inventory(fleet.inventory).hosts[fleet.hosts[0].name]
        pool = ConnectionPool(ConnectOptions(known_hosts=fleet.known_hosts))
        try:
            conn = pool.get(host)
            opener = lambda: conn.open_channel("127.0.0.1", port, timeout=5.0)  # noqa: E731
            wait_healthy(opener, 30.0, alive=lambda: None if server.poll() is None else "http.server exited")
            status, body = request(opener, "GET", "/health")
            assert (status, body) == (200, b"ok\n")
            server.terminate()
            server.wait()
            with pytest.raises(HostError, match="exited"):
                wait_healthy(opener, 30.0, alive=lambda: None if server.poll() is None else "http.server exited")
        finally:
            pool.close()
    finally:
        server.kill()


def test_replicate_serves_one_endpoint_through_its_front_end(tmp_path, llama_server):
    """replicate's instances listen on loopback ports; clients get one endpoint, a load
    balancer whose config its own check accepted before it was written."""
    import subprocess

    port = free_port()
    inv = inventory(tmp_path, llama_server=str(llama_server), strategy="replicate",
                    service={"verify": True, "host": "127.0.0.1", "port": port})
    rc, report = apply(tmp_path, inv)
    checks = {c["data"]["unit"]: c for c in serving(report) if c.get("data")}
    assert rc == 0, [c["message"] for c in serving(report)]
    assert set(checks) == {"coffers-llama@0.service", "coffers-llama-frontend.service"}
    assert checks["coffers-llama-frontend.service"]["data"]["url"] == f"http://127.0.0.1:{port}"
    assert checks["coffers-llama@0.service"]["data"]["url"] != f"http://127.0.0.1:{port}"
    cfg = tmp_path / "root/var/lib/coffers/coffers-llama-frontend.cfg"
    assert subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], capture_output=True).returncode == 0
    assert f"bind 127.0.0.1:{port}" in cfg.read_text()
