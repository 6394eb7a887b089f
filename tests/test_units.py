"""The inference_service role renders units that carry the plan, and every one passes
`systemd-analyze verify` with no output at all (warnings count as failures).

Plans come from the real planner on real numactl captures and a real generated GGUF.
The ExecStart binaries must exist for verify: llama-server and numa-shard-place are
copies of /bin/true under a temp prefix (no llama-server build runs in the unit suite).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from coffers_provision.connect.local import LocalConnector
from coffers_provision.deployment.apply import play_extra
from coffers_provision.deployment.describe import describe
from coffers_provision.deployment.inputs import ModelSource
from coffers_provision.engine.result import Status
from coffers_provision.engine.role import load_play
from coffers_provision.engine.runner import Options, play_vars, run_play
from coffers_provision.facts.numa import parse_numactl
from coffers_provision.inventory import Host
from coffers_provision.model import read_layout
from coffers_provision.modelgen import write_llama
from coffers_provision.planner import Policy, plan
from coffers_provision.resources import data_dir

FIXTURES = Path(__file__).parent / "fixtures" / "numactl"
TWO_NODES = "threadripper-1950x-2node-dist16.txt"
FOUR_NODES = "kunpeng920-2s-128core-4node-dist-12-20-22-24.txt"


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.gguf"
    write_llama(path, n_layers=4, dim=256, n_head=4, n_head_kv=4, ffn=512)
    return read_layout(path)


@pytest.fixture
def site(tmp_path):
    """A host rooted in tmp_path; run(fixture, **coffers) applies inference_service alone."""
    prefix = tmp_path / "usr/local"
    (prefix / "bin").mkdir(parents=True)
    shutil.copy("/bin/true", prefix / "bin/numa-shard-place")
    shutil.copy("/bin/true", tmp_path / "llama-server")
    model = tmp_path / "models/m m.gguf"  # a space in the path on purpose
    model.parent.mkdir()
    model.write_bytes(b"GGUF")
    units = tmp_path / "units"
    units.mkdir()
    play_file = tmp_path / "play.yml"
    play_file.write_text("- role: inference_service\n")
    play = load_play(play_file, data_dir("roles"))

    def run(fixture: str, layout, check: bool = False, **coffers):
        coffers = {"model": str(model), "llama_server": str(tmp_path / "llama-server"), "prefix": str(prefix), **coffers}
        host = Host("h1", {"coffers": coffers}, ("all",))
        topo = parse_numactl((FIXTURES / fixture).read_text())
        p = plan(topo, layout, policy=Policy.from_vars(coffers | {"context_length": 512}))
        src = ModelSource(coffers["model"], None)
        variables = play_vars(play, {"unit_dir": str(units), "state_dir": str(tmp_path / "state"), "coffers": coffers},
                              play_extra(host, {}, describe("h1", p, src, coffers, state_dir=str(tmp_path / "state")), src))
        return p, run_play("h1", LocalConnector(), play, variables, Options(check=check))

    run.units, run.prefix, run.model = units, prefix, model
    return run


def verify(unit_dir: Path, *units: str) -> str:
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units],
        env={"SYSTEMD_UNIT_PATH": f"{unit_dir}:", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True,
    )
    return (proc.stdout + proc.stderr).strip() + ("" if proc.returncode == 0 else f" (rc {proc.returncode})")


def failures(report) -> list[str]:
    return [f"{r.task}: {r.message}" for r in report.results if r.status is Status.FAILED]


def test_shard_unit_carries_the_plan(site, layout):
    p, report = site(TWO_NODES, layout, strategy="shard", mlock=True, service={"port": 18080})
    assert not failures(report)
    unit = (site.units / "coffers-llama.service").read_text()
    inst = p.instances[0]
    assert p.shard_map and f'Environment="GGML_NUMA_SHARD_MAP={p.shard_map}"\n' in unit
    assert f'ExecStartPre="{site.prefix}/bin/numa-shard-place" "{site.model}"\n' in unit
    assert f'"-m" "{site.model}" "--host" "127.0.0.1" "--port" "18080" "-t" "{inst.threads}" "-tb" "{inst.threads_batch}"' in unit
    assert f'"--numa" "{inst.numa}"' in unit and ' "--load-mode" "mmap+mlock"' in unit
    assert f"CPUAffinity={inst.cpu_affinity}\n" in unit
    assert "LimitMEMLOCK=infinity\n" in unit and "Restart=on-failure\n" in unit
    assert f"NUMAPolicy={inst.numa_policy}\n" in unit
    assert verify(site.units, "coffers-llama.service") == ""
    assert not (site.units / "coffers-llama@.service").exists()


def test_interleave_unit_replaces_the_page_cache_and_uses_the_kernel_policy(site, layout):
    p, report = site(FOUR_NODES, layout, strategy="interleave")
    assert not failures(report)
    unit = (site.units / "coffers-llama.service").read_text()
    nodes = p.instances[0].numa_mask
    assert "GGML_NUMA_SHARD_MAP" not in unit
    assert f'ExecStartPre="{site.prefix}/bin/numa-shard-place" "--interleave" "{nodes[0]}-{nodes[-1]}" "{site.model}"\n' in unit
    assert "NUMAPolicy=interleave\n" in unit
    assert f"NUMAMask={','.join(map(str, p.instances[0].numa_mask))}\n" in unit
    assert "LimitMEMLOCK" not in unit
    assert verify(site.units, "coffers-llama.service") == ""


def test_replicate_gives_one_instance_per_node(site, layout):
    p, report = site(TWO_NODES, layout, strategy="replicate", service={"port": 9000})
    assert not failures(report)
    assert len(p.instances) == 2
    assert (site.units / "coffers-llama@.service").exists()
    names = []
    for inst in p.instances:
        node = inst.numa_mask[0]
        dropin = (site.units / f"coffers-llama@{node}.service.d/50-coffers.conf").read_text()
        assert f"NUMAPolicy=bind\nNUMAMask={node}\n" in dropin
        assert f"CPUAffinity={inst.cpu_affinity}\n" in dropin
        assert f'"--port" "{inst.port}"' in dropin
        names.append(f"coffers-llama@{node}.service")
    assert sorted(i.port for i in p.instances) == [9001, 9002]  # 9000: the front-end
    assert verify(site.units, *names) == ""


def test_switching_strategy_and_nodes_removes_what_is_no_longer_planned(site, layout):
    site(TWO_NODES, layout, strategy="shard")
    assert (site.units / "coffers-llama.service").exists()
    _, report = site(TWO_NODES, layout, strategy="replicate")
    assert not failures(report)
    assert not (site.units / "coffers-llama.service").exists()
    assert (site.units / "coffers-llama@1.service.d/50-coffers.conf").exists()
    _, report = site(TWO_NODES, layout, strategy="replicate", nodes=[0])
    assert not failures(report)
    assert (site.units / "coffers-llama@0.service.d/50-coffers.conf").exists()
    assert not (site.units / "coffers-llama@1.service.d").exists()
    _, again = site(TWO_NODES, layout, strategy="replicate", nodes=[0])
    assert again.counts()["changed"] == 0


def test_user_args_and_environment_are_quoted_for_systemd(site, layout):
    hostile = 'a b $(touch /tmp/x) "q" 100% \\ $HOME'
    p, report = site(TWO_NODES, layout, strategy="shard",
                     service={"extra_args": ["--alias", hostile], "environment": {"NOTE": hostile}, "user": "llama"})
    assert not failures(report)
    unit = (site.units / "coffers-llama.service").read_text()
    quoted = '"a b $$(touch /tmp/x) \\"q\\" 100%% \\\\ $$HOME"'
    assert f'"--alias" {quoted}\n' in unit
    assert 'Environment="NOTE=a b $$(touch /tmp/x) \\"q\\" 100%% \\\\ $$HOME"\n' in unit
    assert "User=llama\n" in unit
    assert verify(site.units, "coffers-llama.service") == ""


def test_units_are_skipped_with_a_reason_when_llama_server_is_missing(site, layout, tmp_path):
    _, report = site(TWO_NODES, layout, strategy="shard", llama_server=str(tmp_path / "nope"))
    unit = next(r for r in report.results if r.task == "coffers-llama.service")
    assert unit.status is Status.SKIPPED and f"{tmp_path}/nope is not on the host" in unit.message
    assert not (site.units / "coffers-llama.service").exists()


def test_a_split_model_is_placed_part_by_part_and_served_from_its_first_part(site, tmp_path):
    from coffers_provision.modelgen import llama_spec, write_model

    write_model(tmp_path / "split.gguf", llama_spec(n_layers=4, dim=256, n_head=4, n_head_kv=4, ffn=512), parts=3)
    parts = [site.model.parent / f"s p-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]  # a space again
    for part in parts:
        part.write_bytes(b"GGUF")
    lay = read_layout(tmp_path / "split-00002-of-00003.gguf")
    _, report = site(TWO_NODES, lay, strategy="shard", model=str(parts[2]))
    assert not failures(report)
    unit = (site.units / "coffers-llama.service").read_text()
    pre = [line for line in unit.splitlines() if line.startswith("ExecStartPre=")]
    assert pre == [f'ExecStartPre="{site.prefix}/bin/numa-shard-place" "{p}"' for p in parts]
    assert f'"-m" "{parts[0]}" ' in unit and f'"{parts[1]}" "' not in unit.split("ExecStart=", 1)[1].split("\n", 1)[0]
    assert verify(site.units, "coffers-llama.service") == ""
