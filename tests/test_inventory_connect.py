"""Connection vars as Ansible and OpenSSH mean them, on the real sshd fleet: ProxyCommand
in `ansible_ssh_common_args` (an INI inventory) and `-J` in `ansible_ssh_extra_args`
with the legacy aliases and a quoted port, each through a real jump host."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from coffers_provision.connect import ConnectOptions, open_connector
from coffers_provision.inventory import InventoryError, load_inventory
from tests.fleet.fleet import _namespace_pids

pytestmark = pytest.mark.fleet


def options(fleet, inv) -> ConnectOptions:
    return ConnectOptions(known_hosts=fleet.known_hosts, user_known_hosts=None, ssh_config=None, connect_timeout=5.0, inventory=inv.hosts)


def logins(fh) -> int:
    return fh.log.read_text().count("Accepted publickey")


def owned_by(jump, target) -> bool:
    """The TCP connection to the target belongs to a process in the jump host's namespace."""
    ss = subprocess.run(["ss", "-tnpH", "state", "established", "dst", f"{target.address}:{target.port}"], capture_output=True, text=True).stdout
    owners = {int(p) for p in re.findall(r"pid=(\d+)", ss)}
    return bool(owners) and owners <= set(_namespace_pids(jump.pid))


def test_proxycommand_reaches_a_host_through_a_jump_host(fleet, tmp_path):
    jump, target = fleet.hosts[0], fleet.hosts[1]
    proxy = (f"ssh -i {fleet.client_key} -o UserKnownHostsFile={fleet.known_hosts} -o StrictHostKeyChecking=yes "
             f"-o BatchMode=yes -p {jump.port} -W %h:%p root@{jump.address}")  # fmt: skip
    args = shlex.quote(f'-o ProxyCommand="{proxy}"')
    (tmp_path / "hosts").write_text(
        f"[behind]\n{target.name} ansible_host={target.address} ansible_port={target.port} ansible_user=root "
        f"ansible_ssh_private_key_file={fleet.client_key} ansible_ssh_common_args={args}\n"
    )
    inv = load_inventory(tmp_path / "hosts")
    assert inv.hosts[target.name].settings.proxy_command == proxy
    before = logins(jump)
    with open_connector(inv.hosts[target.name], options(fleet, inv)) as c:
        assert c.run("numactl --hardware | head -n 1").stdout == "available: 8 nodes (0-7)\n"
        assert owned_by(jump, target)
    assert logins(jump) == before + 1


def test_dash_j_in_extra_args_with_legacy_aliases_and_a_quoted_port(fleet, tmp_path):
    jump, target = fleet.hosts[0], fleet.hosts[1]
    (tmp_path / "inventory.yml").write_text(f"""
all:
  vars: {{ansible_ssh_user: root, ansible_private_key_file: "{fleet.client_key}"}}
  hosts:
    {jump.name}: {{ansible_ssh_host: {jump.address}, ansible_ssh_port: "{jump.port}"}}
    {target.name}:
      ansible_ssh_host: {target.address}
      ansible_ssh_port: "{{{{ target_port }}}}"
      target_port: "{target.port}"
      ansible_ssh_extra_args: "-J root@{jump.name}"
""")
    inv = load_inventory(tmp_path / "inventory.yml")
    h = inv.hosts[target.name]
    assert (h.address, h.port, h.user, h.proxy_jump) == (target.address, target.port, "root", f"root@{jump.name}")
    before = logins(jump)
    with open_connector(h, options(fleet, inv)) as c:
        assert c.run("numactl --hardware | head -n 1").stdout == "available: 8 nodes (0-7)\n"
        assert owned_by(jump, target)
    assert logins(jump) == before + 1


@pytest.mark.parametrize("var,value,message", [
    ("ansible_connection", "docker", "connection type 'docker' is not supported"),
    ("ansible_ssh_common_args", "-o ForwardX11=yes", "ssh option ForwardX11=yes is not supported"),
    ("ansible_ssh_extra_args", "-o StrictHostKeyChecking=no", "host keys are always checked"),
    ("ansible_ssh_common_args", "-F ./cfg", "ssh option '-F' is not supported"),
    ("ansible_port", "'22x'", "'22x' is not a port number"),
    ("ansible_become_method", "su", "become method 'su' is not supported"),
])
def test_what_cannot_be_honoured_is_an_error_naming_it(tmp_path, var, value, message):
    (tmp_path / "hosts").write_text(f"[web]\nw1 ansible_become=true {var}={shlex.quote(value)}\n")
    with pytest.raises(InventoryError) as e:
        load_inventory(tmp_path / "hosts")
    (line,) = e.value.lines()
    assert line.startswith(f"{tmp_path / 'hosts'}:2:") and f"$.web.hosts.w1.{var}: host w1: {var}: " in line and message in line


def test_options_that_change_nothing_are_accepted_and_first_value_wins(tmp_path):
    (tmp_path / "hosts").write_text(
        "[web]\nw1 ansible_ssh_common_args='-o ControlMaster=auto -o ControlPersist=60s -o Port=2201 -o User=a -i k1' "
        "ansible_ssh_extra_args='-o Port=2202 -l b -J j1 -o ProxyCommand=\"nc %h %p\"'\n"
        "w2 ansible_port=2203 ansible_ssh_common_args='-p 2204 -o ProxyCommand=\"nc %h %p\" -J j2'\n"
    )
    inv = load_inventory(tmp_path / "hosts")
    w1, w2 = inv.hosts["w1"].settings, inv.hosts["w2"].settings
    assert (w1.port, w1.user, w1.key_file, w1.proxy_jump, w1.proxy_command) == (2201, "a", str(tmp_path / "k1"), "j1", None)
    assert (w2.port, w2.proxy_jump, w2.proxy_command) == (2203, None, "nc %h %p")  # the var beats -p; ProxyCommand came first
