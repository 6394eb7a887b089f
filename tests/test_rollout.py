"""Batches and the failure budget of a rolling apply (rollout.py), as Ansible's `serial`
and `max_fail_percentage` define them; and the flags' errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coffers_provision.rollout import batches, format_serial, parse_percent, parse_serial, stop_reason


def sizes(n: int, serial: str) -> list[int]:
    return [len(b) for b in batches(list(range(n)), parse_serial(serial))]


def test_batch_sizes_follow_ansible_serial():
    assert sizes(6, "2") == [2, 2, 2]
    assert sizes(7, "3") == [3, 3, 1]
    assert sizes(10, "30%") == [3, 3, 3, 1]  # 30% of 10, rounded down
    assert sizes(3, "10%") == [1, 1, 1]  # never below one host
    assert sizes(20, "1,5,25%") == [1, 5, 5, 5, 4]  # the last size repeats
    assert sizes(4, "100%") == [4]
    assert batches(list(range(3)), ()) == [[0, 1, 2]]
    assert format_serial(parse_serial("1, 5 ,25%")) == "1,5,25%"


@given(st.integers(0, 60), st.lists(st.tuples(st.integers(1, 100), st.booleans()), min_size=1, max_size=4))
def test_batches_keep_every_host_once_in_order(n, serial):
    hosts = list(range(n))
    cut = batches(hosts, tuple(serial))
    assert [h for b in cut for h in b] == hosts and all(cut)


@pytest.mark.parametrize("bad", ["0", "-1", "x", "", "5,,2", "101%", "0%", "2.5"])
def test_bad_serial_is_refused(bad):
    with pytest.raises(ValueError, match="not a batch size"):
        parse_serial(bad)


def test_the_budget_is_exceeded_not_reached():
    assert stop_reason(1, 4, 25.0) is None  # 25% is not more than 25%
    assert "2/4 hosts of the batch failed (50% > --max-fail-percent 25)" in (stop_reason(2, 4, 25.0) or "")
    assert stop_reason(1, 2, 0.0) is not None
    assert stop_reason(0, 2, 0.0) is None
    assert stop_reason(1, 2, None) is None and "every host" in (stop_reason(2, 2, None) or "")
    assert parse_percent("30%") == 30.0
    for bad in ("abc", "-1", "101"):
        with pytest.raises(ValueError):
            parse_percent(bad)


@pytest.mark.parametrize("flag", [["--serial", "0"], ["--serial", "5,x"], ["--max-fail-percent", "150"]])
def test_bad_rollout_flags_exit_2_with_one_line(tmp_path, flag):
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    h1: {}\n")
    proc = subprocess.run([sys.executable, "-m", "coffers_provision", "apply", str(inv), *flag], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"argument {flag[0]}" in proc.stderr.splitlines()[-1]
