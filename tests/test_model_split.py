"""Split GGUF models (PREFIX-0000N-of-0000M.gguf): found from any part, checked as a set, planned as one."""

from __future__ import annotations

import json
import shutil

import pytest

from coffers_provision import modelgen
from coffers_provision.cli import main
from coffers_provision.deployment.describe import describe
from coffers_provision.deployment.inputs import ModelSource
from coffers_provision.model import GGUFError, read_layout
from coffers_provision.planner import plan
from tests.test_planner import topo

SMALL = {"n_layers": 4, "dim": 256, "ffn": 512}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The same llama model in one file and in 3 parts."""
    d = tmp_path_factory.mktemp("split")
    modelgen.write_model(d / "one.gguf", modelgen.llama_spec(**SMALL))
    modelgen.write_model(d / "m.gguf", modelgen.llama_spec(**SMALL), parts=3)
    return d


def parts(d, stem="m", n=3):
    return [d / f"{stem}-{i:05d}-of-{n:05d}.gguf" for i in range(1, n + 1)]


def copy_set(src, dst):
    dst.mkdir()
    for p in parts(src):
        shutil.copy(p, dst / p.name)
    return dst


def test_any_part_reads_the_whole_set(models):
    one = read_layout(models / "one.gguf")
    for p in parts(models):
        lay = read_layout(p)
        assert [part.source for part in lay.parts] == [str(x) for x in parts(models)]
        assert sum(part.n_tensors for part in lay.parts) == len(lay.tensors) == len(one.tensors)
        assert {(t.name, t.type, t.shape, t.n_bytes) for t in lay.tensors} == {(t.name, t.type, t.shape, t.n_bytes) for t in one.tensors}
        assert lay.total_bytes == one.total_bytes and lay.block_count == 4
        assert lay.file_size == sum(x.stat().st_size for x in parts(models))
        assert {t.part for t in lay.tensors} == {0, 1, 2}
    # each tensor's offset is inside its own part's data, as llama.cpp reads it
    for t in lay.tensors:
        assert t.offset + t.n_bytes <= lay.parts[t.part].size


def test_a_plan_from_the_parts_covers_every_tensor(models):
    one, split = read_layout(models / "one.gguf"), read_layout(parts(models)[1])
    a, b = plan(topo("aws-c5n"), one), plan(topo("aws-c5n"), split)
    assert a.shard_map == b.shard_map and a.node_bytes == b.node_bytes
    assert sorted(n for n, _ in b.tensor_nodes()) == sorted(t.name for t in one.tensors)
    assert b.to_json()["model"]["parts"] == [str(x) for x in parts(models)]


def test_the_unit_opens_the_first_part_and_every_part_is_placed(models):
    lay = read_layout(parts(models)[2])
    p = plan(topo("aws-c5n"), lay)
    host_parts = [f"/srv/m-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]
    dep = describe("h", p, ModelSource(host_parts[2], None), {})
    (svc,) = dep.services
    assert svc.argv[svc.argv.index("-m") + 1] == host_parts[0]
    assert host_parts[1] not in svc.argv and host_parts[2] not in svc.argv
    assert [argv[-1] for argv in svc.pre] == host_parts  # shard: numa-shard-place once per part
    assert dep.model == host_parts[0] and dep.model_files == tuple(host_parts)
    assert dep.to_json()["model"]["parts"] == host_parts


def test_a_missing_part_is_named(models, tmp_path):
    d = copy_set(models, tmp_path / "s")
    (d / "m-00002-of-00003.gguf").unlink()
    with pytest.raises(GGUFError, match=r"m-00002-of-00003\.gguf: part 2 of 3 of .*m-00001-of-00003\.gguf: cannot read"):
        read_layout(d / "m-00001-of-00003.gguf")


def test_a_part_of_another_model_is_named(models, tmp_path):
    d = copy_set(models, tmp_path / "s")
    other = tmp_path / "o"
    other.mkdir()
    modelgen.write_model(other / "m.gguf", modelgen.llama_spec(**SMALL), parts=4)
    shutil.copy(other / "m-00002-of-00004.gguf", d / "m-00002-of-00003.gguf")
    with pytest.raises(GGUFError, match=r"m-00002-of-00003\.gguf: a part of another model: split\.count 4"):
        read_layout(d / "m-00003-of-00003.gguf")


def test_a_duplicated_part_is_named(models, tmp_path):
    d = copy_set(models, tmp_path / "s")
    shutil.copy(d / "m-00001-of-00003.gguf", d / "m-00003-of-00003.gguf")
    with pytest.raises(GGUFError, match=r"m-00003-of-00003\.gguf: split\.no is 0 \(part 1\), but the file is named as part 3"):
        read_layout(d / "m-00002-of-00003.gguf")


def test_a_tensor_in_two_parts_is_named(tmp_path):
    spec = modelgen.llama_spec(n_layers=2, dim=64, ffn=128)
    modelgen.write_model(tmp_path / "m.gguf", spec, parts=2)
    (tmp_path / "r").mkdir()
    spec.tensors.reverse()  # same count, same keys: the other half of the tensors first
    modelgen.write_model(tmp_path / "r" / "m.gguf", spec, parts=2)
    first = modelgen.split_paths(tmp_path / "m.gguf", 2)[0]
    # the reversed model's part 2 holds the first tensors again: the same count, another set
    shutil.copy(modelgen.split_paths(tmp_path / "r" / "m.gguf", 2)[1], modelgen.split_paths(tmp_path / "m.gguf", 2)[1])
    with pytest.raises(GGUFError, match=r"m-00002-of-00002\.gguf: offset \d+: tensor '.*' is in part 1 and again in part 2"):
        read_layout(first)


def test_a_split_file_with_another_name_cannot_find_its_parts(models, tmp_path):
    shutil.copy(parts(models)[1], tmp_path / "m-00003-of-00003.gguf")
    with pytest.raises(GGUFError, match=r"m-00003-of-00003\.gguf: split\.no 1 and split\.count 3 make it PREFIX-00002-of-00003\.gguf, but the name says another part"):
        read_layout(tmp_path / "m-00003-of-00003.gguf")
    shutil.copy(parts(models)[0], tmp_path / "renamed.gguf")
    with pytest.raises(GGUFError, match=r"renamed\.gguf: split\.count is 3, but the name is not PREFIX-NNNNN-of-00003\.gguf"):
        read_layout(tmp_path / "renamed.gguf")


def test_inspect_lists_the_parts_and_errors_are_one_line(models, tmp_path, capsys):
    assert main(["model", "inspect", str(parts(models)[1])]) == 0
    text = capsys.readouterr().out
    assert "part 1 of 3:" in text and "part 3 of 3:" in text
    assert main(["model", "inspect", str(parts(models)[0]), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["source"] for p in doc["parts"]] == [str(x) for x in parts(models)]
    assert sorted({t["part"] for t in doc["tensors"]}) == [0, 1, 2]
    d = copy_set(models, tmp_path / "s")
    (d / "m-00003-of-00003.gguf").unlink()
    assert main(["model", "inspect", str(d / "m-00001-of-00003.gguf")]) == 1
    err = capsys.readouterr().err
    assert "part 3 of 3" in err and "Traceback" not in err


def test_numa_shard_place_reads_each_part_as_the_python_reader_does(models):
    import subprocess

    from tests.c.nativebuild import PLACE, build

    lay = read_layout(parts(models)[0])
    for i, p in enumerate(parts(models)):
        proc = subprocess.run([str(build(PLACE)), "--plan", "--json", "--map", "", str(p)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        got = sorted((t["name"], t["offset"], t["bytes"]) for t in json.loads(proc.stdout)["tensors"])
        assert got == sorted((t.name, t.offset, t.n_bytes) for t in lay.tensors if t.part == i)
