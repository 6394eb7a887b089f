"""`promtool check metrics` (Debian's prometheus package) on a Prometheus text file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def check_metrics(path: Path) -> str:
    """The file's text, after promtool found nothing wrong with it (lint warnings included)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is not installed: run scripts/bootstrap"
    text = path.read_text()
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr
    return text
