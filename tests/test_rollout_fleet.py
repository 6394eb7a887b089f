"""A rolling apply on the sshd fleet: six hosts in batches of two, one host whose build
fails. The rollout stops at the failure budget; the batches before it carry the new
deployment, the hosts after it are not touched and keep the deployment they serve, the
exit status is 3, and `--limit @RETRY` re-runs exactly the hosts that did not get it.

systemd is not PID 1 on the fleet and its simulated topologies cannot run a placed
llama-server, so the servers are not asked here (service.verify false, as in
tests/test_apply_fleet.py); the health wait each batch passes before the next is
deployment/verify.py's, tested against a real llama-server in tests/test_serving.py.
"""

from __future__ import annotations

import json

import pytest
import yaml

from coffers_provision.inventory import load_inventory

from .test_apply_fleet import apply, prepare, trees


def in_order(fleet, inv):
    """The fleet's hosts in the order apply takes them (the inventory's)."""
    by_name = {h.name: h for h in fleet.hosts}
    return [by_name[h.name] for h in load_inventory(inv).select(None)]


def port_of(host) -> int:
    return json.loads(host.upper("/var/lib/coffers/deployment.json").read_text())["services"][0]["port"]


@pytest.mark.fleet
def test_a_rolling_apply_stops_at_the_failure_budget_and_the_retry_file_reruns_the_rest(make_fleet, tmp_path):
    f = make_fleet(6)
    inv = prepare(f, tmp_path, service={"port": 18080})
    hosts = in_order(f, inv)
    names = [h.name for h in hosts]
    rc, first = apply(f, tmp_path, inv)
    assert rc == 0, json.dumps(first)[:2000]
    serving_before = trees(hosts[4:])

    # the new version: another port; the third host's build fails (a flag gcc refuses)
    inv = prepare(f, tmp_path, service={"port": 18090})
    doc = yaml.safe_load(inv.read_text())
    doc["all"]["hosts"][names[2]]["native_cflags"] = ["-O2", "-fno-such-flag-coffers"]
    inv.write_text(yaml.safe_dump(doc, sort_keys=False))
    rc, roll = apply(f, tmp_path, inv, "--serial", "2", "--max-fail-percent", "25")
    assert rc == 3 and roll["status"] == "hosts_failed"
    assert roll["rollout"]["batches"] == [names[0:2], names[2:4], names[4:6]]
    assert "after batch 2/3" in roll["rollout"]["stopped"] and "1/2 hosts of the batch failed (50% > --max-fail-percent 25)" in roll["rollout"]["stopped"]
    report = roll["hosts"]
    build = next(t for t in report[names[2]]["tasks"] if t["status"] == "failed")
    assert "no-such-flag" in build["message"]
    for n in (names[0], names[1], names[3]):  # the healthy hosts of the batches that ran
        assert report[n]["failed"] == 0 and "not_reached" not in report[n]
    assert [port_of(h) for h in (hosts[0], hosts[1], hosts[3])] == [18090] * 3
    for h in hosts[4:]:  # never reached: untouched, still on the deployment they had
        assert report[h.name]["tasks"] == [] and roll["rollout"]["stopped"] == report[h.name]["not_reached"]
        assert port_of(h) == 18080
    assert trees(hosts[4:]) == serving_before
    retry = tmp_path / "apply.retry"
    assert retry.read_text().split() == [names[2], names[4], names[5]]

    # fixed: the retry file re-runs only the hosts that did not get the change
    del doc["all"]["hosts"][names[2]]["native_cflags"]
    inv.write_text(yaml.safe_dump(doc, sort_keys=False))
    rc, again = apply(f, tmp_path, inv, "--serial", "2", "--max-fail-percent", "25", "--limit", f"@{retry}")
    assert rc == 0, json.dumps(again)[:2000]
    assert list(again["hosts"]) == [names[2], names[4], names[5]]
    assert again["rollout"]["batches"] == [[names[2], names[4]], [names[5]]] and again["rollout"]["stopped"] is None
    assert [port_of(h) for h in hosts] == [18090] * 6


@pytest.mark.fleet
def test_without_a_budget_a_rollout_stops_only_when_a_whole_batch_failed(make_fleet, tmp_path):
    f = make_fleet(3)
    inv = prepare(f, tmp_path)
    names = [h.name for h in in_order(f, inv)]
    doc = yaml.safe_load(inv.read_text())
    doc["all"]["hosts"][names[0]]["native_cflags"] = ["-fno-such-flag-coffers"]
    inv.write_text(yaml.safe_dump(doc, sort_keys=False))
    rc, roll = apply(f, tmp_path, inv, "--serial", "1")
    assert rc == 3 and roll["rollout"]["stopped"].startswith("rollout stopped after batch 1/3: every host of the batch failed")
    assert [bool(roll["hosts"][n].get("not_reached")) for n in names] == [False, True, True]
