"""Remote header-only reads over real SSH (the sshd test fleet), and per-host plans from them."""

from __future__ import annotations

import json

import pytest

from coffers_provision import modelgen
from coffers_provision.cli import main
from coffers_provision.connect import ConnectOptions, open_connector
from coffers_provision.inventory import load_inventory
from coffers_provision.model import GGUFError, read_layout, read_remote_layout

pytestmark = pytest.mark.fleet

REMOTE = "/opt/models/llama-70b.gguf"


class Counted:
    """A live connector, counting the payload bytes its reads bring back."""

    def __init__(self, conn):
        self.conn, self.host, self.bytes, self.reads = conn, conn.host, 0, 0

    def stat(self, path):
        return self.conn.stat(path)

    def read(self, path, offset=0, length=None):
        data = self.conn.read(path, offset, length)
        self.bytes += len(data)
        self.reads += 1
        return data


@pytest.fixture(scope="module")
def remote_model(fleet):
    host = fleet.host("p9")
    spec = modelgen.llama70b_spec()
    modelgen.vocab_spec(spec, 128256)
    path = host.inside(REMOTE)
    path.parent.mkdir(parents=True, exist_ok=True)
    modelgen.write_header_only(path, spec)
    yield host, path
    path.unlink(missing_ok=True)


def test_remote_read_transfers_only_the_header(fleet, remote_model):
    host, local_path = remote_model
    inv = load_inventory(fleet.inventory)
    options = ConnectOptions(known_hosts=fleet.known_hosts, inventory=inv.hosts)
    with open_connector(inv.hosts[host.name], options) as conn:
        counted = Counted(conn)
        lay = read_remote_layout(counted, REMOTE)
    local = read_layout(local_path)
    assert lay.tensors == local.tensors and lay.layers == tuple(range(80))
    assert lay.source == f"{host.name}:{REMOTE}"
    assert counted.bytes == lay.header_bytes_read
    assert lay.data_offset - 32 <= counted.bytes <= 2 * lay.data_offset  # the header, never the weights
    assert counted.bytes < lay.file_size / 10000 and counted.reads <= 4


def test_inspect_and_plan_through_the_inventory(fleet, remote_model, tmp_path, capsys):
    host, _ = remote_model
    inv = fleet.write_inventory(tmp_path / "inv.yml", hosts=[host], coffers={"model": REMOTE})
    kh = str(fleet.known_hosts)
    assert main(["model", "inspect", f"{host.name}:{REMOTE}", "--inventory", str(inv), "--known-hosts", kh, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["block_count"] == 80 and len(doc["layers"]) == 81 and doc["header_bytes_read"] < 8 * 2**20

    facts = tmp_path / "facts"
    assert main(["probe", str(inv), "--known-hosts", kh, "--facts-dir", str(facts)]) == 0
    capsys.readouterr()
    assert main(["plan", str(inv), "--known-hosts", kh, "--facts-dir", str(facts), "--json"]) == 0
    p = json.loads(capsys.readouterr().out)["hosts"][host.name]
    assert set(p["node_bytes"]) == {"0", "8"}  # the GPU-memory nodes stay unused without measurements
    (inst,) = p["instances"]
    assert inst["threads"] == 32 and inst["threads_batch"] == 128  # SMT4 from the host's sysfs siblings


def test_a_split_model_is_read_from_any_part_over_sftp(fleet, tmp_path):
    host = fleet.host("p9")
    remote = "/opt/models/split/llama-70b.gguf"
    local = host.inside(remote)
    local.parent.mkdir(parents=True, exist_ok=True)
    spec = modelgen.llama70b_spec()
    modelgen.vocab_spec(spec, 128256)
    paths = modelgen.split_paths(local, 3)
    try:
        modelgen.write_header_only(local, spec, parts=3)
        inv = load_inventory(fleet.inventory)
        options = ConnectOptions(known_hosts=fleet.known_hosts, inventory=inv.hosts)
        with open_connector(inv.hosts[host.name], options) as conn:
            counted = Counted(conn)
            lay = read_remote_layout(counted, "/opt/models/split/llama-70b-00002-of-00003.gguf")
            paths[2].unlink()
            with pytest.raises(GGUFError, match=r"llama-70b-00003-of-00003\.gguf: part 3 of 3 of .*: no such file"):
                read_remote_layout(conn, "/opt/models/split/llama-70b-00001-of-00003.gguf")
        assert [p.source for p in lay.parts] == [f"{host.name}:/opt/models/split/{p.name}" for p in paths]
        assert lay.layers == tuple(range(80)) and lay.total_bytes == sum(modelgen.tensor_bytes(s, q) for _, s, q in spec.tensors)
        assert counted.bytes == lay.header_bytes_read < 3 * lay.data_offset  # three headers, never the weights
    finally:
        for p in paths:
            p.unlink(missing_ok=True)
