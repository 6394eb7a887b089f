"""Inventory loading: precedence (as ansible-core), groups, ranges, ProxyJump, host patterns."""

import textwrap
from pathlib import Path

import pytest

from coffers_provision.inventory import PatternError, expand_hosts, load_inventory, proxy_jump_of


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root / "inventory.yml"


PRECEDENCE = {
    "inventory.yml": """
        all:
          vars: {level: all-inline, from_all: yes, coffers: {strategy: shard, service: {port: 1, host: a}}}
          children:
            parent:
              vars: {level: parent-inline}
              children:
                child:
                  vars: {level: child-inline}
                  hosts:
                    h1: {level: host-inline}
                    h2:
            zeta:
              vars: {level: zeta-inline}
              hosts: {h2: }
        """,
    "group_vars/all.yml": "level: all-file\n",
    "group_vars/parent.yml": "level: parent-file\ncoffers: {service: {port: 2}}\n",
    "group_vars/child/one.yml": "level: child-file\n",
    "group_vars/child/two.yaml": "coffers: {context_length: 99}\n",
    "host_vars/h1.yml": "level: host-file\ncoffers: {service: {host: b}}\n",
    "host_vars/h2": "from_file: yes\n",
}


def test_precedence_all_parent_child_inline_hostfile(tmp_path):
    inv = load_inventory(write(tmp_path, PRECEDENCE))
    h1, h2 = inv.hosts["h1"], inv.hosts["h2"]
    assert h1.vars["level"] == "host-file"  # host_vars/ beats inline host vars
    assert h1.vars["from_all"] is True
    # coffers merges key by key across every level
    assert h1.coffers == {"strategy": "shard", "service": {"port": 2, "host": "b"}, "context_length": 99}
    # h2 has no inline vars; child (depth 2) beats zeta (depth 1) although zeta sorts later
    assert h2.vars["level"] == "child-file" and h2.vars["from_file"] is True
    assert set(h2.groups) == {"parent", "child", "zeta"}


# Lowest first: inline all < inline parent < inline child < group_vars/all <
# group_vars/parent < group_vars/child < inline host < host_vars/host.
@pytest.mark.parametrize("drop,expect", [
    ("host_vars", "host-inline"),
    ("host_inline", "child-file"),
    ("child_file", "parent-file"),
    ("parent_file", "all-file"),
    ("all_file", "child-inline"),
    ("child_inline", "parent-inline"),
    ("parent_inline", "all-inline"),
])
def test_each_level_beats_the_one_below(tmp_path, drop, expect):
    files = dict(PRECEDENCE)
    order = ["host_vars", "host_inline", "child_file", "parent_file", "all_file", "child_inline", "parent_inline"]
    gone = order[: order.index(drop) + 1]
    text = files["inventory.yml"]
    edits = {
        "host_vars": ("host_vars/h1.yml", None), "host_inline": ("inventory.yml", ("h1: {level: host-inline}", "h1:")),
        "child_file": ("group_vars/child/one.yml", None), "parent_file": ("group_vars/parent.yml", None),
        "all_file": ("group_vars/all.yml", None), "child_inline": ("inventory.yml", ("{level: child-inline}", "{other: 1}")),
        "parent_inline": ("inventory.yml", ("{level: parent-inline}", "{other: 1}")),
    }  # fmt: skip
    for level in gone:
        path, change = edits[level]
        if change is None:
            files[path] = "other: 1\n"
        else:
            text = text.replace(*change)
    files["inventory.yml"] = text
    assert load_inventory(write(tmp_path, files)).hosts["h1"].vars["level"] == expect


def test_top_level_groups_are_children_of_all(tmp_path):
    inv = load_inventory(write(tmp_path, {"inventory.yml": """
        web:
          hosts: {w1: }
        db:
          hosts: {d1: }
          vars: {x: 1}
        """}))
    assert list(inv.hosts) == ["w1", "d1"]
    assert inv.groups["all"] == ["w1", "d1"]
    assert inv.hosts["d1"].vars == {"x": 1}


def test_host_ranges():
    assert expand_hosts("web[01:03].x") == ["web01.x", "web02.x", "web03.x"]
    assert expand_hosts("n[1:5:2]") == ["n1", "n3", "n5"]
    assert expand_hosts("db-[a:c]") == ["db-a", "db-b", "db-c"]
    assert expand_hosts("r[1:2]s[a:b]") == ["r1sa", "r1sb", "r2sa", "r2sb"]
    with pytest.raises(ValueError):
        expand_hosts("bad[1:x]")


def test_connection_vars(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "id").write_text("k")
    inv = load_inventory(write(tmp_path, {"inventory.yml": """
        all:
          hosts:
            a:
              ansible_host: 10.1.1.1
              ansible_port: 2200
              ansible_user: llm
              ansible_ssh_private_key_file: keys/id
              ansible_ssh_common_args: "-o StrictHostKeyChecking=yes -o ProxyJump=ops@bastion:2222"
            b: {ansible_connection: local}
            c: {ansible_ssh_common_args: "-J jump"}
        """}))
    a, b, c = inv.hosts["a"], inv.hosts["b"], inv.hosts["c"]
    assert (a.address, a.port, a.user, a.connection) == ("10.1.1.1", 2200, "llm", "ssh")
    assert a.key_file == str(tmp_path.resolve() / "keys" / "id")
    assert a.proxy_jump == "ops@bastion:2222"
    assert b.connection == "local" and b.address == "b" and b.proxy_jump is None
    assert c.proxy_jump == "jump"


@pytest.mark.parametrize("args,jump", [
    ("-o ProxyJump=x", "x"), ("-oProxyJump=u@x:1", "u@x:1"), ("-o 'ProxyJump x'", "x"),
    ("-J a", "a"), ("-Ja", "a"), ("-o ServerAliveInterval=5", None), ("", None),
])
def test_proxy_jump_forms(args, jump):
    assert proxy_jump_of(args) == jump


FLEET = {"inventory.yml": """
    all:
      children:
        epyc:
          hosts: {epyc01: , epyc02: , epyc03: }
        xeon:
          hosts: {xeon01: , xeon02: }
        staging:
          hosts: {epyc03: , xeon02: }
        power:
          children:
            p8:
              hosts: {s824-1: }
    """}


@pytest.mark.parametrize("pattern,expected", [
    ("epyc01", ["epyc01"]),
    ("xeon", ["xeon01", "xeon02"]),
    ("power", ["s824-1"]),
    ("epyc0[12]", ["epyc01", "epyc02"]),
    ("*01", ["epyc01", "xeon01"]),
    ("x*", ["xeon01", "xeon02"]),
    ("~^epyc0[23]$", ["epyc02", "epyc03"]),
    ("epyc:xeon", ["epyc01", "epyc02", "epyc03", "xeon01", "xeon02"]),
    ("epyc,xeon01", ["epyc01", "epyc02", "epyc03", "xeon01"]),
    ("epyc:&staging", ["epyc03"]),
    ("all:!staging", ["epyc01", "epyc02", "xeon01", "s824-1"]),
    ("!staging:epyc", ["epyc01", "epyc02"]),  # modifiers apply after unions, wherever written
    ("&staging", ["epyc03", "xeon02"]),
    ("epyc:xeon:&staging:!epyc03", ["xeon02"]),
    (None, ["epyc01", "epyc02", "epyc03", "xeon01", "xeon02", "s824-1"]),
])
def test_host_patterns(tmp_path, pattern, expected):
    inv = load_inventory(write(tmp_path, FLEET))
    assert [h.name for h in inv.select(pattern)] == expected


def test_at_file_pattern(tmp_path):
    inv = load_inventory(write(tmp_path, FLEET))
    retry = tmp_path / "apply.retry"
    retry.write_text("# failed last time\nxeon02\n\nepyc01\n")
    assert [h.name for h in inv.select(f"@{retry}")] == ["epyc01", "xeon02"]
    assert [h.name for h in inv.select(f"@{retry}:!xeon")] == ["epyc01"]


@pytest.mark.parametrize("pattern,message", [
    ("nosuch", "matches no host or group"),
    ("epyc:!nosuch", "matches no host or group"),
    ("epycc", "did you mean 'epyc'"),
    ("epyc::xeon", "empty term"),
    ("epyc,", "empty term"),
    ("~[unclosed", "bad regular expression"),
    ("@/nonexistent/retry", "cannot read"),
])
def test_bad_patterns(tmp_path, pattern, message):
    inv = load_inventory(write(tmp_path, FLEET))
    with pytest.raises(PatternError, match=message.replace("(", r"\(")):
        inv.select(pattern)


def test_at_file_with_unknown_host(tmp_path):
    inv = load_inventory(write(tmp_path, FLEET))
    f = tmp_path / "list"
    f.write_text("epyc01\nghost\n")
    with pytest.raises(PatternError, match="ghost"):
        inv.select(f"@{f}")


def test_shipped_inventories_validate(repo_root):
    example = load_inventory(repo_root / "inventories" / "example.yml")
    assert len(example.hosts) >= 10
    jumped = [h for h in example.hosts.values() if h.proxy_jump]
    assert jumped and all("bastion" in h.proxy_jump for h in jumped)
    assert {"power8", "epyc", "xeon", "bastion"} <= set(example.groups)
    # group_vars and host_vars beside the example apply
    assert example.hosts["s824-01.dc1.example.net"].coffers["tuning"]["thp"] == "madvise"
    assert example.hosts["xeon-02.dc1.example.net"].coffers["nodes"] == [0, 2]
    local = load_inventory(repo_root / "inventories" / "local.yml")
    assert [h.connection for h in local.hosts.values()] == ["local"]
