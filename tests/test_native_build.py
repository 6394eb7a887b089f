"""Every native source builds warning-free (-Wall -Wextra -Werror) with gcc and clang, with and
without sanitizers; the header also as C++17, linked from C both ways, and as a no-op build."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.c.nativebuild import (BENCH, C_TESTS, FILES, HEADER, PLACE, SANITIZE, TOOL_HEADER, BuildError, build,
                                 compile_c, local_includes)

TOOLS = [BENCH, PLACE, C_TESTS / "test_shard.c", C_TESTS / "place_check.c"]
FLAGS = {
    "deployed": ("-O3", "-march=native"),  # what the native_tools role runs on each host
    "lab": ("-O2", "-std=gnu11"),  # what tests/lab/test_placement.py runs in the guests
    "c99": ("-std=c99", "-O2"),
    "sanitized": ("-std=c99", *SANITIZE),
}


@pytest.mark.parametrize("flags", FLAGS, ids=str)
@pytest.mark.parametrize("cc", ["gcc", "clang"])
@pytest.mark.parametrize("source", TOOLS, ids=lambda p: p.name)
def test_tools_build_without_warnings(source, cc, flags):
    assert build(source, cc, FLAGS[flags]).exists()


@pytest.mark.parametrize("cc", ["gcc", "clang"])
@pytest.mark.parametrize("mode", ["", "-DGGML_NUMA_SHARD_STATIC", "-DGGML_NUMA_SHARD_DISABLE"])
def test_header_implementation_builds_as_c99(cc, mode, tmp_path):
    flags = ("-std=c99", "-Wpedantic", "-x", "c", "-DGGML_NUMA_SHARD_IMPLEMENTATION", *([mode] if mode else []))
    compile_c(HEADER, tmp_path / "impl.o", cc, flags, link=False)


@pytest.mark.parametrize("cxx", ["g++", "clang++"])
def test_header_builds_and_runs_as_cxx17(cxx):
    exe = build(C_TESTS / "cxx_use.cpp", cxx, ("-std=c++17", "-Wpedantic", "-O2"))
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["blk.2.ffn_up.weight 0", "blk.9.attn_q.weight 0", "output.weight 0", "assign 0"]


@pytest.mark.parametrize("impl_lang, cc", [("c", "gcc"), ("c++", "g++"), ("c++", "clang++")])
def test_api_only_unit_links_against_the_implementation(impl_lang, cc, tmp_path):
    std = "-std=c99" if impl_lang == "c" else "-std=c++17"
    impl = compile_c(HEADER, tmp_path / "impl.o", cc, (std, "-x", impl_lang, "-DGGML_NUMA_SHARD_IMPLEMENTATION"),
                     link=False)
    user = compile_c(C_TESTS / "c_user.c", tmp_path / "user.o", "gcc", ("-std=c99",), link=False)
    exe = tmp_path / "linked"
    subprocess.run([cc, str(user), str(impl), "-o", str(exe)], check=True)
    assert subprocess.run([str(exe)]).returncode == 0


def test_disabled_build_parses_and_resolves_but_places_nothing():
    exe = build(C_TESTS / "test_shard.c", "gcc", ("-std=c99", "-DGGML_NUMA_SHARD_DISABLE"))
    env = {"GGML_NUMA_SHARD_MAP": "0-3:node2"}
    proc = subprocess.run([str(exe), "assign", "blk.1.ffn_up.weight", "100000"], capture_output=True, text=True,
                          env=env)
    assert "init 0 ggml_numa_shard: NUMA placement is not available in this build" in proc.stdout
    assert "assign -1" in proc.stdout
    assert "counts tensors 1 placed 0 failed 0 pending 0" in proc.stdout
    bad = subprocess.run([str(exe), "init"], capture_output=True, text=True, env={"GGML_NUMA_SHARD_MAP": "0-3:"})
    assert bad.returncode == 1 and "position 1 ('0-3:'): bad node ''" in bad.stdout


def test_a_warning_fails_the_build(tmp_path):
    src = tmp_path / "warn.c"
    src.write_text("int main(void) { int unused; return 0; }\n")
    with pytest.raises(BuildError, match="unused"):
        compile_c(src, tmp_path / "warn", "gcc")



def test_the_role_builds_each_tool_from_everything_it_includes():
    """The build task's sources are what reaches the host and what the build stamp hashes."""
    role = FILES.parent
    tools = yaml.safe_load((role / "defaults.yml").read_text())["native_tools"]
    [build_task] = [t for t in yaml.safe_load((role / "tasks.yml").read_text()) if "build" in t]
    assert sorted(t["source"] for t in tools) == sorted(p.name for p in (BENCH, PLACE))
    for tool in tools:
        sources = {s.replace("{{ item.source }}", tool["source"]) for s in build_task["build"]["sources"]}
        assert sources == {tool["source"], *local_includes(FILES / tool["source"])}
        assert TOOL_HEADER.name in sources


def test_the_tools_define_no_helper_twice():
    """What both tools need lives once, in numa-shard-tool.h."""
    definition = re.compile(r"^static [^;=(]*?\b(\w+)\(", re.M)
    bench, place = (set(definition.findall(p.read_text())) for p in (BENCH, PLACE))
    assert bench & place == {"usage"}  # each tool's own text
    assert {"die", "json_str", "json_ints", "parse_nodes", "page_nodes"} <= set(
        definition.findall(TOOL_HEADER.read_text()))


def test_the_tool_header_names_its_program(tmp_path):
    src = tmp_path / "nameless.c"
    src.write_text('#define GGML_NUMA_SHARD_IMPLEMENTATION\n#define GGML_NUMA_SHARD_STATIC\n'
                   '#include "ggml-numa-shard.h"\n#include "numa-shard-tool.h"\nint main(void) { return 0; }\n')
    with pytest.raises(BuildError, match="define NUMA_SHARD_TOOL"):
        compile_c(src, tmp_path / "nameless")
