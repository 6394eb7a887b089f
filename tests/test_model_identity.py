"""The model's identity: each file's sha256, computed on the host once and cached there by
(path, size, mtime); checked against `coffers.model_sha256` before anything restarts.
Real sshd hosts (the fleet)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from coffers_provision import modelgen
from coffers_provision.connect import ConnectOptions, open_connector
from coffers_provision.deployment.identity import CACHE, check_expected, model_sha256
from coffers_provision.inventory import load_inventory
from coffers_provision.planner import PlanError

pytestmark = pytest.mark.fleet

STATE = "/var/lib/coffers"
DIR = "/opt/models/identity"


class Counting:
    """A live connector that counts the model bytes read over SFTP and the hashing commands run."""

    def __init__(self, conn):
        self.conn, self.host, self.read_bytes, self.hashed = conn, conn.host, 0, []

    def stat(self, path):
        return self.conn.stat(path)

    def read(self, path, offset=0, length=None):
        data = self.conn.read(path, offset, length)
        self.read_bytes += len(data)
        return data

    def put(self, data, path, *, mode=0o644):
        return self.conn.put(data, path, mode=mode)

    def run(self, command, **kw):
        if "sha256sum" in " ".join(command):
            self.hashed.append(command)
        return self.conn.run(command, **kw)


@pytest.fixture
def split_model(fleet):
    host = fleet.host("p9")
    local = host.inside(f"{DIR}/m.gguf")
    local.parent.mkdir(parents=True, exist_ok=True)
    modelgen.write_model(local, modelgen.llama_spec(n_layers=2, dim=64, ffn=128), parts=3)
    paths = modelgen.split_paths(local, 3)
    yield host, paths, tuple(f"{DIR}/{p.name}" for p in paths)
    for p in paths:
        p.unlink(missing_ok=True)
    host.inside(f"{STATE}/{CACHE}").unlink(missing_ok=True)


def connect(fleet, host):
    inv = load_inventory(fleet.inventory)
    return open_connector(inv.hosts[host.name], ConnectOptions(known_hosts=fleet.known_hosts, inventory=inv.hosts))


def test_hashed_once_then_from_the_cache(fleet, split_model):
    host, local, remote = split_model
    want = tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p in local)
    with connect(fleet, host) as conn:
        first = Counting(conn)
        assert model_sha256(first, remote, STATE) == want
        assert len(first.hashed) == 1 and first.read_bytes == 0  # hashed on the host, nothing came over SFTP
        cache = json.loads(host.inside(f"{STATE}/{CACHE}").read_text())
        assert {p: v["sha256"] for p, v in cache.items()} == dict(zip(remote, want))

        # Same size, same mtime, other bytes: the cache answers, so nothing was read to hash it.
        st = os.stat(local[1])
        local[1].write_bytes(bytes(st.st_size))
        os.utime(local[1], ns=(st.st_atime_ns, st.st_mtime_ns))
        again = Counting(conn)
        assert model_sha256(again, remote, STATE) == want
        assert again.hashed == [] and again.read_bytes == 0

        # A new mtime: only that part is hashed again.
        os.utime(local[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        third = Counting(conn)
        found = model_sha256(third, remote, STATE)
        assert found[1] == hashlib.sha256(bytes(st.st_size)).hexdigest() and (found[0], found[2]) == (want[0], want[2])
        assert len(third.hashed) == 1 and remote[1] in third.hashed[0][-1] and remote[0] not in third.hashed[0][-1]


def test_check_mode_writes_no_cache_and_a_missing_file_is_named(fleet, split_model):
    host, local, remote = split_model
    with connect(fleet, host) as conn:
        model_sha256(conn, remote, STATE, write=False)
        assert not host.inside(f"{STATE}/{CACHE}").exists()
        with pytest.raises(Exception, match=r"identity/nothere\.gguf: no such file"):
            model_sha256(conn, (f"{DIR}/nothere.gguf",), STATE)


def test_the_inventory_hash_is_checked():
    files, found = ("/m-00001-of-00002.gguf", "/m-00002-of-00002.gguf"), ("a" * 64, "b" * 64)
    check_expected("h", files, found, ["A" * 64, "b" * 64])  # case does not matter
    check_expected("h", files, found, None)
    with pytest.raises(PlanError, match=r"h:/m-00002-of-00002\.gguf is not the model the inventory names: its sha256 is b{64}, coffers.model_sha256 says c{64}"):
        check_expected("h", files, found, ["a" * 64, "c" * 64])
    with pytest.raises(PlanError, match="names 1 hash"):
        check_expected("h", files, found, "a" * 64)


def test_plan_refuses_a_host_whose_model_is_not_the_named_one(fleet, split_model, tmp_path, capsys):
    from coffers_provision.cli import main

    host, local, remote = split_model
    kh = str(fleet.known_hosts)
    want = [hashlib.sha256(p.read_bytes()).hexdigest() for p in local]
    facts = tmp_path / "facts"
    good = fleet.write_inventory(tmp_path / "good.yml", hosts=[host], coffers={"model": remote[0], "model_sha256": want})
    assert main(["probe", str(good), "--known-hosts", kh, "--facts-dir", str(facts)]) == 0
    assert main(["plan", str(good), "--known-hosts", kh, "--facts-dir", str(facts), "--json"]) == 0
    capsys.readouterr()
    bad = fleet.write_inventory(tmp_path / "bad.yml", hosts=[host], coffers={"model": remote[0], "model_sha256": want[:2] + ["0" * 64]})
    assert main(["plan", str(bad), "--known-hosts", kh, "--facts-dir", str(facts)]) != 0
    err = capsys.readouterr().err.replace("\n", "")
    assert f"{remote[2]} is not the model the inventory names" in err and "Traceback" not in err
