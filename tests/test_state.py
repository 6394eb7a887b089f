"""The one-round-trip state gather (engine/state.py) stays honest at scale: among many
managed files, exactly the one that drifted is reported, and a play with nothing to do
asks the host once. Real files and a real shell (LocalConnector); the connector only
counts the commands it is given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coffers_provision.connect.local import LocalConnector
from coffers_provision.engine.modules import sha256
from coffers_provision.engine.result import Status
from coffers_provision.engine.role import load_play
from coffers_provision.engine.runner import Options, play_vars, run_play
from coffers_provision.engine.state import HostState, Needs

from .test_engine import write_role

COUNT = 120
ODD = ("with space", "back\\slash", "new\nline", "-dash", "quote'd")


class Counting(LocalConnector):
    def __init__(self) -> None:
        super().__init__("local")
        self.commands = 0

    def run(self, command, *, timeout=None, stdin=None):
        self.commands += 1
        return super().run(command, timeout=timeout, stdin=stdin)


def names() -> list[str]:
    return [f"f{i:03d}" for i in range(COUNT)] + list(ODD)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, bytes]:
    out = {}
    for i, name in enumerate(names()):
        p = tmp_path / name
        p.write_bytes(f"content {i}\n".encode())
        p.chmod(0o644)
        out[str(p)] = p.read_bytes()
    return out


def gather(paths: list[str]) -> tuple[HostState, Counting]:
    conn = Counting()
    state = HostState(conn)
    state.prefetch(Needs(hash=set(paths)))
    return state, conn


def test_one_command_answers_every_path(files, tmp_path):
    missing = str(tmp_path / "not there")
    state, conn = gather([*files, missing, str(tmp_path)])
    assert conn.commands == 1 and state.round_trips == 1
    for path, data in files.items():
        st = state.stat(path)
        assert st is not None and st.kind == "file" and st.mode == 0o644 and st.sha256 == sha256(data), path
    assert state.stat(missing) is None
    assert state.stat(str(tmp_path)).kind == "dir" and state.stat(str(tmp_path)).sha256 is None
    assert conn.commands == 1  # every lookup was answered by the batch


@pytest.mark.parametrize("victim", [0, COUNT // 2, COUNT - 1, COUNT + 1, COUNT + 2])
def test_exactly_the_tampered_file_differs(files, victim):
    paths = list(files)
    target = Path(paths[victim])
    target.write_bytes(target.read_bytes() + b"x")
    other = Path(paths[(victim + 7) % len(paths)])
    other.chmod(0o600)
    state, _ = gather(paths)
    content = {p for p, data in files.items() if state.stat(p).sha256 != sha256(data)}
    modes = {p for p in files if state.stat(p).mode != 0o644}
    assert content == {str(target)}
    assert modes == {str(other)}


def test_a_noop_play_over_many_files_is_one_command_and_reports_only_the_drift(tmp_path):
    """copy + template over COUNT files, a unit and a build stamp: a re-run asks once, and
    after one file's content, another's mode, the unit and the build's source are changed,
    exactly those tasks say changed (in --check, so nothing is repaired)."""
    root = tmp_path / "root"
    items = [f"{i:03d}" for i in range(COUNT)]
    files = {f"src{i}.txt": f"source {i}\n" for i in items}
    write_role(
        tmp_path / "roles", "many",
        defaults=f"root: {root}\nitems: {items}\n",
        tasks="""\
            - name: dirs
              file: {path: "{{ item }}", mode: "0755"}
              loop: ["{{ root }}", "{{ root }}/copied", "{{ root }}/rendered", "{{ root }}/units", "{{ root }}/state", "{{ root }}/bin"]
            - name: "copy {{ item }}"
              copy: {src: "src{{ item }}.txt", dest: "{{ root }}/copied/{{ item }}", mode: "0644"}
              loop: "{{ items }}"
            - name: "render {{ item }}"
              template: {src: one.j2, dest: "{{ root }}/rendered/{{ item }}", mode: "0644"}
              loop: "{{ items }}"
            - name: unit
              systemd_unit: {name: many.service, src: many.service.j2, unit_dir: "{{ root }}/units"}
            - name: build
              build: {sources: [tool.c], output: "{{ root }}/bin/tool", stamp_dir: "{{ root }}/state"}
        """,
        templates={"one.j2": "under {{ root }}\n",
                   "many.service.j2": "[Unit]\nDescription=many\n[Service]\nExecStart=/bin/true\n"},
        files={**files, "tool.c": "int main(void) { return 0; }\n"},
    )
    (tmp_path / "roles" / "site.yml").write_text("- role: many\n")
    play = load_play(tmp_path / "roles" / "site.yml")

    def run(check: bool) -> tuple[dict[str, Status], int]:
        conn = Counting()
        variables = play_vars(play, {"state_dir": str(root / "state")})
        report = run_play("local", conn, play, variables, Options(check=check))
        assert report.counts()["failed"] == 0, [r.message for r in report.results if r.status is Status.FAILED]
        return {r.task: r.status for r in report.results}, conn.commands

    run(check=False)
    statuses, commands = run(check=False)
    assert commands == 1
    assert {t for t, s in statuses.items() if s is Status.CHANGED} == set()

    (root / "copied" / "057").write_text("edited by hand\n")
    os.chmod(root / "rendered" / "101", 0o600)
    (root / "units" / "many.service").write_text("[Service]\nExecStart=/bin/false\n")
    (tmp_path / "roles" / "many" / "files" / "tool.c").write_text("int main(void) { return 1; }\n")
    play = load_play(tmp_path / "roles" / "site.yml")
    statuses, _ = run(check=True)  # the changed unit is verified on the host: more commands
    assert {t for t, s in statuses.items() if s is Status.CHANGED} == {"copy 057", "render 101", "unit", "build"}


def test_reads_and_commands_keep_every_byte_and_status(tmp_path):
    """Many files read and commands captured in the one answer: binary bytes, lines that
    look like the framing, empty files, missing ones, exit statuses and stderr."""
    blobs = {str(tmp_path / f"r{i}"): bytes([i % 256]) * i + b"\n0 fake boundary\n\x00\xff" for i in range(40)}
    for path, data in blobs.items():
        Path(path).write_bytes(data)
    (tmp_path / "empty").write_bytes(b"")
    missing = str(tmp_path / "missing")
    commands = {f"echo out{i}; echo err{i} >&2; exit {i % 4}": (i % 4, f"out{i}\nerr{i}") for i in range(30)}
    conn = Counting()
    state = HostState(conn)
    state.prefetch(Needs(read={*blobs, str(tmp_path / "empty"), missing}, capture=set(commands)))
    assert conn.commands == 1
    assert {p: state.read(p) for p in blobs} == blobs
    assert state.read(str(tmp_path / "empty")) == b"" and state.read(missing) is None
    for cmd, (rc, text) in commands.items():
        assert (state.capture(cmd).rc, state.capture(cmd).stdout) == (rc, text), cmd
    assert conn.commands == 1


def test_an_absent_unit_is_checked_in_the_one_command(tmp_path):
    """A unit that must stay absent (the front-end where there is none): its file and its
    drop-in are part of the batch, so making sure costs no second command."""
    root = tmp_path / "root"
    (root / "units").mkdir(parents=True)
    write_role(
        tmp_path / "roles", "absent",
        defaults=f"root: {root}\n",
        tasks="""\
            - name: gone
              systemd_unit: {name: gone.service, src: gone.service.j2, state: absent, unit_dir: "{{ root }}/units"}
        """,
        templates={"gone.service.j2": "[Service]\nExecStart=/bin/true\n"},
    )
    (tmp_path / "roles" / "site.yml").write_text("- role: absent\n")
    play = load_play(tmp_path / "roles" / "site.yml")
    conn = Counting()
    report = run_play("local", conn, play, play_vars(play, {"state_dir": str(root / "state")}), Options(check=True))
    assert {r.task: r.status for r in report.results} == {"gone": Status.OK}
    assert conn.commands == 1


def test_only_the_files_a_task_compares_are_hashed(files, tmp_path):
    """A path asked for its stat alone (a unit's needs_files: the model, the server binary)
    is not hashed, so a no-op apply never reads a 400 GB model; asking for its hash later
    costs one more round trip, and a path asked both ways is hashed."""
    paths = list(files)
    compared, existing, both = paths[:3], paths[3:6], paths[6]
    conn = Counting()
    state = HostState(conn)
    state.prefetch(Needs(stat={*existing, both}, hash={*compared, both}))
    assert conn.commands == 1
    assert all(state.stat(p).sha256 == sha256(files[p]) for p in [*compared, both])
    assert all(state.stat(p).kind == "file" and state.stat(p).sha256 is None for p in existing)
    assert conn.commands == 1
    assert state.stat(existing[0], hashed=True).sha256 == sha256(files[existing[0]])
    assert conn.commands == 2
