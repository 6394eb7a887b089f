"""`tune` on this machine with a real llama-server: every variant measured by the server's
own timings, records stored and schema-valid, the fastest left deployed, and `auto` then
planned from the records. Absolute figures mean nothing here; the mechanism is what is
checked. (One NUMA node: variants that start the same processes are measured once.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from coffers_provision.bench import tuned

from .promtool import check_metrics
from .test_apply import REPO, apply, env, inventory
from .test_serving import free_port


def tune(tmp, inv, *flags):  # type: ignore[no-untyped-def]
    cmd = [sys.executable, "-m", "coffers_provision", "tune", str(inv), "--facts-dir", str(tmp / "facts"),
           "--play", str(tmp / "roles" / "site.yml"), "--results", str(tmp / "tune"), "--json", *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(tmp), timeout=900, cwd=tmp)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"no JSON (rc {proc.returncode}): {proc.stdout}\n{proc.stderr}") from None


def test_tune_measures_stores_and_leaves_the_fastest(tmp_path, llama_server):
    inv = inventory(tmp_path, llama_server=str(llama_server), strategy="auto",
                    service={"verify": True, "host": "127.0.0.1", "port": free_port()})
    assert apply(tmp_path, inv)[0] == 0  # also copies the roles the tune run uses
    rc, doc = tune(tmp_path, inv, "--strategies", "shard,one-node,distribute", "--requests", "2", "--n-predict", "8",
                   "--prompt-tokens", "16", "--plot", "--metrics-dir", str(tmp_path / "metrics"))
    assert rc == 0, doc
    host = doc["hosts"]["localhost"]
    by = {v["variant"]: v for v in host["variants"]}
    assert by["shard"]["status"] == "measured" and by["distribute"]["status"] == "measured"
    assert by["one-node"]["status"] == "skipped" and "shard" in by["one-node"]["message"]  # one node: same command
    for name in ("shard", "distribute"):
        rec = by[name]["record"]
        g = rec["generation_tokens_per_s"]
        assert 0 < g["min"] <= g["median"] <= g["max"]
        assert rec["requests"] == 2 and rec["n_predict"] == 8 and rec["prompt_tokens"] > 0
        assert rec["llama_server"]["version"].startswith("version")
    fastest = max(("shard", "distribute"), key=lambda n: by[n]["record"]["generation_tokens_per_s"]["median"])
    assert host["winner"] == fastest
    stored = tuned.read_host(tmp_path / "tune" / doc["run_id"] / "localhost.json")  # schema-checked on read
    assert [r["variant"] for r in stored["records"]] == ["shard", "distribute"]
    assert (tmp_path / "tune" / doc["run_id"] / "tune.png").stat().st_size > 1000
    deployed = json.loads((tmp_path / "root/var/lib/coffers/deployment.json").read_text())
    assert deployed["strategy"] == fastest
    assert deployed["provenance"]["tune"]["run_id"] == doc["run_id"]  # the record says which run decided
    text = check_metrics(tmp_path / "metrics" / "coffers_tune.prom")
    for name in ("shard", "distribute"):
        median = by[name]["record"]["generation_tokens_per_s"]["median"]
        assert f'coffers_tune_generation_tokens_per_second{{host="localhost",strategy="{name}"}} {float(median)!r}' in text, text

    # plan with strategy auto now names the record that decided
    plan = subprocess.run([sys.executable, "-m", "coffers_provision", "plan", str(inv), "--facts-dir", str(tmp_path / "facts"),
                           "--tune-results", str(tmp_path / "tune"), "--json"], capture_output=True, text=True, env=env(tmp_path), timeout=300, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    doc = json.loads(plan.stdout)
    p = doc["hosts"]["localhost"] if "hosts" in doc else doc
    assert p["strategy"] == fastest
    assert any("tune run" in r for r in p["reasons"]), p["reasons"]
