"""The engine on this machine, through the local connector, against temp directories.

Real parts: files are written through LocalConnector.put, gcc compiles, systemd-analyze
verifies. systemd is not PID 1 here, so systemctl steps must be skipped with a reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from pathlib import Path

import pytest

from coffers_provision.connect.local import LocalConnector
from coffers_provision.engine import handlers as pending
from coffers_provision.engine.modules import NOT_BOOTED
from coffers_provision.engine.result import Status
from coffers_provision.engine.role import RoleError, load_play
from coffers_provision.engine.runner import Options, play_vars, run_play
from coffers_provision.engine.state import HostState, Needs

HELLO_C = "#include <stdio.h>\n#include <numa.h>\nint main(void) { printf(\"%d\\n\", numa_available() >= 0); return 0; }\n"


def write_role(base: Path, name: str, *, tasks: str, handlers: str = "", defaults: str = "",
               templates: dict[str, str] | None = None, files: dict[str, str] | None = None) -> Path:
    role = base / name
    (role / "templates").mkdir(parents=True, exist_ok=True)
    (role / "files").mkdir(exist_ok=True)
    (role / "tasks.yml").write_text(textwrap.dedent(tasks))
    if handlers:
        (role / "handlers.yml").write_text(textwrap.dedent(handlers))
    if defaults:
        (role / "defaults.yml").write_text(textwrap.dedent(defaults))
    for n, text in (templates or {}).items():
        (role / "templates" / n).write_text(text)
    for n, text in (files or {}).items():
        (role / "files" / n).write_text(text)
    return role


@pytest.fixture
def demo(tmp_path: Path):
    """A role using every module, rooted in tmp_path/root; returns a run(**vars) function."""
    roles = tmp_path / "roles"
    root = tmp_path / "root"
    (root / "proc" / "kernel").mkdir(parents=True)
    (root / "proc" / "kernel" / "numa_balancing").write_text("1\n")
    write_role(
        roles, "demo",
        defaults=f"""\
            root: {root}
            greeting: hello
            fail_now: false
            conf_dir: "{{{{ root }}}}/etc/demo"
            cflags: ["-O2", "-Wall", "-Wextra", "-Werror"]
        """,
        tasks="""\
            - name: "{{ item }}"
              file: {path: "{{ item }}", mode: "0755"}
              loop: ["{{ conf_dir }}", "{{ root }}/bin", "{{ root }}/units", "{{ root }}/state", "{{ root }}/sysctl.d"]
            - name: config
              template: {src: demo.conf.j2, dest: "{{ conf_dir }}/demo.conf", mode: "0640"}
              notify: restart demo
            - name: static file
              copy: {src: hello.c, dest: "{{ root }}/hello.c"}
            - name: build hello
              build: {sources: [hello.c], output: "{{ root }}/bin/hello", cflags: "{{ cflags }}", stamp_dir: "{{ root }}/state"}
            - name: marker
              command: {argv: [sh, -c, 'printf %s "$1" > "$2"', sh, "{{ greeting }}", "{{ root }}/marker"], creates: "{{ root }}/marker"}
            - name: sysctl
              sysctl: {file: "{{ root }}/sysctl.d/90-demo.conf", settings: {kernel.numa_balancing: 0}, proc_root: "{{ root }}/proc"}
            - name: unit
              systemd_unit: {name: demo.service, src: demo.service.j2, unit_dir: "{{ root }}/units"}
              notify: restart demo
            - name: maybe fail
              command: {argv: ["false"]}
              when: fail_now
        """,
        handlers="""\
            - name: restart demo
              command: {argv: [sh, -c, 'echo restarted >> "$1"', sh, "{{ root }}/restarts"]}
        """,
        templates={
            "demo.conf.j2": "greeting = {{ greeting }}\n",
            "demo.service.j2": "[Unit]\nDescription=demo\n[Service]\nExecStart={{ root }}/bin/hello {{ greeting | systemd_quote }}\n"
                               "[Install]\nWantedBy=multi-user.target\n",
        },
        files={"hello.c": HELLO_C},
    )
    (roles / "site.yml").write_text("- role: demo\n")
    play = load_play(roles / "site.yml")

    def run(check: bool = False, diff: bool = False, **host_vars):
        variables = play_vars(play, {"state_dir": str(root / "state"), **host_vars})
        return run_play("local", LocalConnector(), play, variables, Options(check=check, diff=diff))

    run.root = root
    run.roles = roles
    return run


def tree_hash(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root: content hash and mode (directories by mode only)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            out[str(p.relative_to(root))] = (digest, st.st_mode)
    return out


def by_task(report) -> dict[str, Status]:
    return {r.task: r.status for r in report.results}


def test_apply_then_reapply_changes_nothing(demo):
    first = demo()
    assert first.counts()["failed"] == 0, [r.message for r in first.results if r.status is Status.FAILED]
    assert first.counts()["changed"] == 12  # 5 dirs, config, file, build, marker, sysctl, unit, handler
    assert (demo.root / "etc/demo/demo.conf").read_text() == "greeting = hello\n"
    assert oct((demo.root / "etc/demo/demo.conf").stat().st_mode & 0o777) == "0o640"
    assert (demo.root / "proc/kernel/numa_balancing").read_text() == "0\n"
    assert os.access(demo.root / "bin/hello", os.X_OK)
    assert (demo.root / "restarts").read_text() == "restarted\n"
    second = demo()
    assert second.counts() == {"ok": 11, "changed": 0, "skipped": 1, "failed": 0, "unreachable": 0}
    assert (demo.root / "restarts").read_text() == "restarted\n"  # no change, no restart


def test_systemctl_steps_are_skipped_with_the_reason(demo):
    report = demo()
    unit = next(r for r in report.results if r.task == "unit")
    assert unit.status is Status.CHANGED
    steps = {s.name: s for s in unit.steps}
    assert steps["verify"].status is Status.OK
    for verb in ("daemon-reload", "enable", "start"):
        assert steps[verb].status is Status.SKIPPED and steps[verb].message == NOT_BOOTED
    assert (demo.root / "units/demo.service").exists()


def test_check_mode_changes_no_byte_and_tells_the_truth(demo):
    demo()
    before = tree_hash(demo.root)
    check = demo(check=True, greeting="bonjour", cflags=["-O3", "-Wall"])
    assert tree_hash(demo.root) == before
    would = {t for t, s in by_task(check).items() if s is Status.CHANGED}
    assert would == {"config", "build hello", "unit", "restart demo"}
    real = demo(greeting="bonjour", cflags=["-O3", "-Wall"])
    assert {t for t, s in by_task(real).items() if s is Status.CHANGED} == would
    assert demo(check=True, greeting="bonjour", cflags=["-O3", "-Wall"]).counts()["changed"] == 0


@pytest.mark.parametrize("check", [False, True])
def test_a_guard_stops_the_play_before_any_task_and_reads_from_the_batch(demo, check):
    """The guard sees the host's state from the play's one round trip (what it asked for in
    `needs` too), and its answer fails the host with nothing written, in --check as well."""
    demo()
    before = tree_hash(demo.root)
    probe = str(demo.root / "marker")
    seen = []

    def guard(state: HostState) -> str | None:
        seen.append((state.read(probe), state.round_trips))
        return "node 1 is short"

    play = load_play(demo.roles / "site.yml")
    variables = play_vars(play, {"state_dir": str(demo.root / "state"), "greeting": "changed"})
    state = HostState(LocalConnector())
    report = run_play("local", LocalConnector(), play, variables, Options(check=check), state=state, needs=Needs(read={probe}), guard=guard)
    assert seen == [(b"hello", 1)] and state.round_trips == 1
    assert report.error == "node 1 is short" and report.failed and report.results == []
    assert tree_hash(demo.root) == before
    passed = run_play("local", LocalConnector(), play, variables, Options(check=True), guard=lambda state: None)
    assert passed.error is None and by_task(passed)["config"] is Status.CHANGED


def test_check_on_a_fresh_host_writes_nothing(demo):
    check = demo(check=True)
    assert not demo.root.joinpath("etc").exists() and not demo.root.joinpath("bin").exists()
    statuses = by_task(check)
    assert statuses["config"] is Status.CHANGED and statuses["build hello"] is Status.CHANGED
    # the unit cannot be verified before the binary exists: said so, not faked
    unit = next(r for r in check.results if r.task == "unit")
    assert unit.status is Status.SKIPPED and "not made in --check" in unit.message


def test_diff_shows_the_exact_change(demo):
    demo()
    report = demo(diff=True, greeting="hi there")
    config = next(r for r in report.results if r.task == "config")
    assert "-greeting = hello\n+greeting = hi there\n" in config.diff
    unit = next(r for r in report.results if r.task == "unit")
    assert f'-ExecStart={demo.root}/bin/hello "hello"\n+ExecStart={demo.root}/bin/hello "hi there"\n' in unit.diff
    assert next(r for r in report.results if r.task == "static file").diff == ""


def test_a_failing_task_keeps_the_restart_for_the_next_run(demo):
    demo()
    failed = demo(greeting="changed", fail_now=True)
    assert by_task(failed)["maybe fail"] is Status.FAILED
    assert "restart demo" not in by_task(failed)  # handlers do not run after a failure
    record = json.loads((demo.root / "state" / pending.FILE).read_text())
    assert record == {"pending": ["restart demo"]}
    assert (demo.root / "restarts").read_text() == "restarted\n"
    # nothing changes on the next run, yet the recorded restart is carried out
    again = demo(greeting="changed")
    assert by_task(again)["restart demo"] is Status.CHANGED
    assert (demo.root / "restarts").read_text() == "restarted\nrestarted\n"
    assert not (demo.root / "state" / pending.FILE).exists()
    assert "restart demo" not in by_task(demo(greeting="changed"))


def test_hostile_values_are_quoted(demo, tmp_path):
    canary = tmp_path / "pwned"
    hostile = f'x"; touch {canary}; echo "$(touch {canary})`touch {canary}` %n $HOME \\'
    report = demo(greeting=hostile)
    assert report.counts()["failed"] == 0, [r.message for r in report.results]
    assert not canary.exists()
    assert (demo.root / "marker").read_text() == hostile
    assert (demo.root / "etc/demo/demo.conf").read_text() == f"greeting = {hostile}\n"
    # inventory values are data, never templates
    demo2 = demo(greeting="{{ 7 * 7 }}")
    assert (demo.root / "etc/demo/demo.conf").read_text() == "greeting = {{ 7 * 7 }}\n"
    assert demo2.counts()["failed"] == 0


def test_a_newline_cannot_smuggle_a_unit_setting(demo):
    report = demo(greeting="x\nExecStartPre=/bin/rm -rf /")
    unit = next(r for r in report.results if r.task == "unit")
    assert unit.status is Status.FAILED and "control character" in unit.message
    assert not (demo.root / "units/demo.service").exists()


def test_build_rebuilds_only_when_inputs_change(demo):
    demo()
    binary = demo.root / "bin/hello"
    mtime = binary.stat().st_mtime_ns
    assert by_task(demo())["build hello"] is Status.OK
    assert binary.stat().st_mtime_ns == mtime
    report = demo(cflags=["-O3", "-Wall"])
    build = next(r for r in report.results if r.task == "build hello")
    assert build.status is Status.CHANGED and "flags changed" in build.message
    (demo.roles / "demo/files/hello.c").write_text(HELLO_C.replace("int main", "/* v2 */ int main"))
    rebuilt = next(r for r in demo(cflags=["-O3", "-Wall"]).results if r.task == "build hello")
    assert rebuilt.status is Status.CHANGED and "sources changed" in rebuilt.message


def test_mode_drift_is_repaired(demo):
    demo()
    conf = demo.root / "etc/demo/demo.conf"
    conf.chmod(0o666)
    report = demo()
    assert by_task(report)["config"] is Status.CHANGED
    assert conf.stat().st_mode & 0o777 == 0o640
    assert (demo.root / "restarts").read_text().count("restarted") == 2


def test_unit_that_fails_verification_is_not_installed(tmp_path):
    roles = tmp_path / "roles"
    write_role(roles, "u", tasks=f"""\
        - name: unit
          systemd_unit: {{name: bad.service, src: bad.service.j2, unit_dir: "{tmp_path}"}}
    """, templates={"bad.service.j2": "[Service]\nExecStart=/bin/true\nNoSuchSetting=1\n"})
    (roles / "site.yml").write_text("- role: u\n")
    play = load_play(roles / "site.yml")
    report = run_play("local", LocalConnector(), play, play_vars(play, {"state_dir": str(tmp_path / "s")}))
    assert report.results[0].status is Status.FAILED
    assert "Unknown key name 'NoSuchSetting'" in report.results[0].message or "NoSuchSetting" in report.results[0].message
    assert not (tmp_path / "bad.service").exists()


def test_bad_role_files_name_file_line_and_column(tmp_path):
    roles = tmp_path / "roles"
    write_role(roles, "r", tasks="""\
        - name: ok
          file: {path: /tmp/x}
        - name: typo
          copy: {dest: /tmp/y, content: "", mode: 0755}
        - name: two modules
          file: {path: /tmp/z}
          command: {argv: ["true"]}
        - name: missing template
          template: {src: nope.j2, dest: /tmp/w}
    """)
    (roles / "site.yml").write_text("- role: r\n")
    with pytest.raises(RoleError) as e:
        load_play(roles / "site.yml")
    text = str(e.value)
    tasks = roles / "r" / "tasks.yml"
    assert f"{tasks}:4:43: $[1].copy.mode: expected string, got number 493" in text
    assert f"{tasks}:5:3: $[2]: a task names exactly one module" in text
    assert f"{tasks}:9:19: $[3].template.src: no such file: r/templates/nope.j2" in text


def test_notify_must_name_a_handler(tmp_path):
    roles = tmp_path / "roles"
    write_role(roles, "r", tasks="- name: t\n  file: {path: /tmp/x}\n  notify: nobody\n")
    (roles / "site.yml").write_text("- role: r\n")
    with pytest.raises(RoleError, match="no handler named 'nobody'"):
        load_play(roles / "site.yml")


def test_shipped_roles_load():
    from coffers_provision.deployment.apply import default_play_file

    play = load_play(default_play_file())
    assert [pr.role.name for pr in play.roles] == ["numa_facts", "native_tools", "llama_build", "tuning", "inference_service"]
    assert "restart llama-server" in play.handlers
    load_play(default_play_file().parent / "bench.yml")


def test_diff_never_shows_no_log_values(demo):
    """The play's `no_log_values` (apply passes the service environment) may be tokens:
    --diff masks them wherever they appear."""
    token = "s3cr3t-t0ken-value"
    demo()
    report = demo(diff=True, greeting=token, no_log_values=[token])
    config = next(r for r in report.results if r.task == "config")
    assert "+greeting = ********\n" in config.diff
    assert all(token not in (r.diff or "") for r in report.results)
    assert (demo.root / "etc" / "demo" / "demo.conf").read_text() == f"greeting = {token}\n"  # written as given
