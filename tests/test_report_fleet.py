"""`report --html` over the sshd fleet, rendered in a real headless Chromium (Debian's
`chromium`): the page renders, its table has every host, and it asks for nothing outside
itself (no http(s) URL in any src/href/url(), a CSP allowing no load, and Chromium's own
network log shows no request but the page's file).

Bench results are crafted numa-shard-bench documents (tests/test_bench.py) stored with the
bench store; the tune record is written with the tune store: the report reads both as
`bench` and `tune` leave them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from coffers_provision.bench.tuned import write_host

from .test_apply_fleet import REPO, apply, prepare
from .test_bench import crafted, store_run

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars")


class Links(HTMLParser):
    """Every URL-bearing attribute, and the table's host rows."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.rows: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href", "xlink:href", "action", "poster", "data") and v]
        if tag == "tr" and a.get("data-host"):
            self.rows.append(a["data-host"] or "")


def record(variant: str, median: float) -> dict:
    figures = {"min": round(median * 0.95, 3), "median": median, "max": round(median * 1.04, 3)}
    return {"variant": variant, "at": "2026-12-06T01:00:00Z",
            "hardware": {"fingerprint": "0123456789abcdef", "cpu_model": "AMD EPYC 7742 64-Core Processor", "sockets": 2,
                         "product": None, "topology": "8 nodes"},
            "model": {"path": "/var/lib/coffers/models/tiny.gguf", "bytes": 1, "identity": "fedcba9876543210"},
            "llama_server": {"path": "/opt/llama-server", "version": "b1"}, "deployment_fingerprint": "x", "cpus": "0-3",
            "instances": 1, "requests": 3, "n_predict": 16, "prompt_tokens": 8,
            "generation_tokens_per_s": figures, "prompt_tokens_per_s": figures, "seconds_to_healthy": 1.0}


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    assert exe, "chromium (Debian package) is not installed: run scripts/bootstrap"
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "HOME": str(tmp)})


@pytest.mark.fleet
def test_report_renders_every_host_and_requests_nothing(fleet, tmp_path):
    hosts = fleet.hosts[:3]
    inv = prepare(fleet, tmp_path, hosts=hosts)
    store_run(tmp_path / "results", {h.name: crafted(h.name, {n.id: 40.0 + 7 * i for i, n in enumerate(h.topology.nodes)}) for h in hosts[:2]})
    assert apply(fleet, tmp_path, inv, "--bench-results", str(tmp_path / "results"))[0] == 0  # the plan reads the measurements
    write_host(tmp_path / "tune", "20261206T010000Z", hosts[0].name,
               [record("shard", 21.5), record("interleave", 17.2), record("distribute", 12.9), record("replicate", 19.4)])
    page = tmp_path / "fleet.html"
    proc = subprocess.run(
        [sys.executable, "-m", "coffers_provision", "report", str(inv), "--html", str(page), "--known-hosts", str(fleet.known_hosts),
         "--facts-dir", str(tmp_path / "facts"), "--play", str(tmp_path / "roles" / "site.yml"),
         "--results", str(tmp_path / "results"), "--tune-results", str(tmp_path / "tune")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    html = page.read_text()
    assert proc.returncode == 0, proc.stderr + "".join(re.findall(r'<div class="note bad">[^<]*</div>', html))
    assert 'http-equiv="Content-Security-Policy" content="default-src \'none\'' in html
    assert html.count("<svg") == 3  # two heatmaps, one tune chart

    log = tmp_path / "net.json"
    dom = chromium(tmp_path, f"--log-net-log={log}", "--dump-dom", page.as_uri())
    assert dom.returncode == 0 and "</html>" in dom.stdout, dom.stderr[-2000:]
    links = Links()
    links.feed(dom.stdout)
    assert links.rows == [h.name for h in hosts], links.rows  # the table has every host, in inventory order
    external = [u for u in links.urls if not u.startswith(("#", "data:"))]
    assert external == [], external
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", dom.stdout), "a style loads something"
    # Chromium's own background requests (time, updates) start with no origin; anything the
    # page asked for would carry its origin ("null" for a file) as initiator
    starts = [e["params"] for e in json.loads(log.read_text())["events"] if "initiator" in (e.get("params") or {})]
    from_page = [p["url"] for p in starts if p["initiator"] != "not an origin"]
    assert from_page == [], from_page

    shot = tmp_path / "fleet.png"
    r = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,1500", page.as_uri())
    assert r.returncode == 0 and shot.stat().st_size > 10_000, r.stderr[-2000:]
    if os.environ.get("COFFERS_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["COFFERS_KEEP_SCREENSHOT"])
