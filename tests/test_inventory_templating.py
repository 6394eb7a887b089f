"""`{{ }}` in inventory values: rendered lazily against the host's vars; errors at the var's position."""

from __future__ import annotations

from pathlib import Path

import pytest

from coffers_provision.inventory import InventoryError, load_inventory

CASE = Path(__file__).resolve().parent / "fixtures" / "inventories" / "probes" / "templated" / "hosts.ini"


def test_rendered_against_host_vars_and_magic_vars():
    inv = load_inventory(CASE)
    a1, a2 = inv.hosts["a1"], inv.hosts["a2"]
    assert a1.vars["ansible_host"] == "a1.example.net" and a1.address == "a1.example.net"
    assert a1.vars["url"] == "http://a1.example.net:8080/"
    assert a2.vars["url"] == "http://app-a2:80/"


def test_a_lone_expression_keeps_its_type(tmp_path):
    (tmp_path / "hosts").write_text("[g]\nh ssh_port=2022 ansible_port='{{ ssh_port }}' n='{{ ssh_port + 1 }}' s='p{{ ssh_port }}'\n")
    h = load_inventory(tmp_path / "hosts").hosts["h"]
    assert (h.vars["ansible_port"], h.vars["n"], h.vars["s"], h.port) == (2022, 2023, "p2022", 2022)


@pytest.mark.parametrize("text,message", [
    ("[g]\nh a='{{ b }}' b='{{ a }}'\n", "recursive loop in templates: a -> b -> a"),
    ("[g]\nh a='{{ nosuch }}'\n", "'nosuch' is undefined"),
    ("[g]\nh a='{{ 1 + }}'\n", "template syntax error"),
])
def test_errors_name_the_var_at_its_position(tmp_path, text, message):
    (tmp_path / "hosts").write_text(text)
    inv = load_inventory(tmp_path / "hosts")  # lazily: nothing is rendered until read
    with pytest.raises(InventoryError) as e:
        inv.hosts["h"].vars["a"]
    (line,) = e.value.lines()
    assert line.startswith(f"{tmp_path / 'hosts'}:2:3: $.g.hosts.h.a: host h: var a: ") and message in line


def test_unused_bad_template_is_no_error_and_unsafe_is_never_rendered(tmp_path):
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    h: {bad: '{{ nosuch }}', raw: !unsafe '{{ nosuch }}'}\n")
    h = load_inventory(tmp_path / "inventory.yml").hosts["h"]
    assert h.vars["raw"] == "{{ nosuch }}"
