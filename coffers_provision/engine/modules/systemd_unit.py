"""`systemd_unit`: install a unit (and, for a template unit, one drop-in per instance),
verify it on the host, then daemon-reload, enable and start.

- Verification runs `systemd-analyze verify` on a staged copy of the whole unit family
  before anything is installed; any output at all (warnings too) fails the task.
- daemon-reload runs, and reports changed, only when a file changed or systemd says a
  unit needs it (NeedDaemonReload=yes, e.g. after a run killed between write and reload).
- On a host where systemd is not PID 1 the files are still installed and verified, and
  each systemctl step is skipped with that reason.
- Instances of a template unit that are no longer wanted are stopped, disabled and their
  drop-ins removed.
"""

from __future__ import annotations

import re
import shlex

from ..result import Status, Step
from ..state import Needs, PathState
from . import NOT_BOOTED, SYSTEMD_BOOTED, Context, Outcome, TaskFailed, skipped, write_file
from .template import render

DROPIN = "50-coffers.conf"
_INSTANCE = re.compile(r"^[A-Za-z0-9:_.\-]+$")
STATES = ("started", "stopped", "restarted", "installed", "absent")


def _unit_dir(args: dict, ctx: Context) -> str:
    return str(args.get("unit_dir") or ctx.vars.get("unit_dir", "/etc/systemd/system"))


def _is_template(name: str) -> bool:
    return "@." in name


def _instances(args: dict) -> list[dict]:
    raw = args.get("instances")
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(i, dict) and "instance" in i for i in raw):
        raise TaskFailed("instances must be a list of mappings, each with an `instance` name")
    for item in raw:
        if not _INSTANCE.match(str(item["instance"])):
            raise TaskFailed(f"instance name {item['instance']!r} is not a valid unit instance name")
    return raw


def _dropin_dir(unit_dir: str, unit: str) -> str:
    return f"{unit_dir}/{unit}.d"


def _listing(unit_dir: str, name: str) -> str:
    """A read-only command listing the instances that carry our drop-in."""
    prefix = name.split("@", 1)[0]
    return (
        f"cd -- {shlex.quote(unit_dir)} 2>/dev/null || exit 0; "
        f"for d in {shlex.quote(prefix)}@*.service.d; do [ -f \"$d\"/{DROPIN} ] && printf '%s\\n' \"$d\"; done; exit 0"
    )


def _units(args: dict) -> list[str]:
    """The units systemctl acts on: the unit itself, or each wanted instance of a template."""
    name = args["name"]
    if _is_template(name):
        prefix, suffix = name.split("@.", 1)
        return [f"{prefix}@{i['instance']}.{suffix}" for i in _instances(args)]
    return [name]


def _q(units: list[str]) -> str:
    return " ".join(shlex.quote(u) for u in units)


def _systemctl_query(what: str, units: list[str]) -> str:
    """A read-only systemctl query, answered only where systemd runs (its answer is unused elsewhere)."""
    return f"{SYSTEMD_BOOTED} || exit 0; systemctl {what} {_q(units)}"


def needs(args: dict, ctx: Context) -> Needs:
    unit_dir, name = _unit_dir(args, ctx), args["name"]
    out = Needs(stat={unit_dir}, hash={f"{unit_dir}/{name}"}, capture={SYSTEMD_BOOTED})  # small files, compared
    units = _units(args)
    if _is_template(name):
        out.capture.add(_listing(unit_dir, name))
        out.stat |= {_dropin_dir(unit_dir, u) for u in units}
        out.hash |= {f"{_dropin_dir(unit_dir, u)}/{DROPIN}" for u in units}
    elif args.get("state") == "absent":  # prepare looks for a drop-in to remove
        out.stat |= {f"{_dropin_dir(unit_dir, u)}/{DROPIN}" for u in units}
    if units:
        out.capture |= {_systemctl_query(w, units) for w in ("is-enabled", "is-active", "show -p NeedDaemonReload --value")}
    return out


def _stale(args: dict, ctx: Context, unit_dir: str) -> list[str]:
    if not _is_template(args["name"]):
        return []
    present = [d[: -len(".d")] for d in ctx.state.capture(_listing(unit_dir, args["name"])).stdout.split()]
    wanted = set(_units(args)) if args.get("state", "started") != "absent" else set()
    return sorted(u for u in present if u not in wanted)


def _verify(ctx: Context, files: dict[str, bytes], unit_dir: str, units: list[str]) -> None:
    """Verify the unit family from a staging directory, before it is installed."""
    stage = ctx.run(["mktemp", "-d", "/tmp/coffers-verify.XXXXXXXX"]).stdout.strip()
    try:
        for path, data in files.items():
            rel = path[len(unit_dir) + 1:]
            if "/" in rel:
                ctx.run(["mkdir", "-p", "--", f"{stage}/{rel.rsplit('/', 1)[0]}"])
            ctx.conn.put(data, f"{stage}/{rel}", mode=0o644)
        argv = ["env", f"SYSTEMD_UNIT_PATH={stage}:", "systemd-analyze", "verify", "--man=no", *units]
        result = ctx.conn.run(argv, timeout=120)
    finally:
        ctx.conn.run(["rm", "-rf", "--", stage])
    if result.rc == 127:
        raise TaskFailed("systemd-analyze is not installed on the host (needed to verify units)")
    found = (result.stderr + result.stdout).strip()
    if not result.ok or found:
        raise TaskFailed(f"systemd-analyze verify {' '.join(units)} (warnings count as failures):\n{found}")


def _state_lines(ctx: Context, what: str, units: list[str]) -> dict[str, str]:
    lines = ctx.state.capture(_systemctl_query(what, units)).stdout.splitlines()
    return dict(zip(units, lines + [""] * (len(units) - len(lines))))


def prepare(args: dict, ctx: Context) -> Outcome:
    name, unit_dir = args["name"], _unit_dir(args, ctx)
    state = args.get("state", "started")
    if state not in STATES:
        raise TaskFailed(f"state {state!r} is not one of {', '.join(STATES)}")
    enabled = args.get("enabled", True if state == "started" else None)
    units = _units(args)
    unit_file = f"{unit_dir}/{name}"
    if "src" not in args and state != "absent" and ctx.state.stat(unit_file) is None:
        if state in ("restarted", "stopped"):
            return skipped(state.rstrip("ed") if state == "restarted" else "stop", f"{unit_file} is not installed")
        raise TaskFailed(f"{unit_file} is not installed and the task gives no `src`")
    if state == "restarted" and not units:
        return skipped("restart", f"{name}: no instances to restart")
    out = Outcome([])
    booted = ctx.systemd_booted

    # 1. files: render and compare the family; verify it whole if anything changed
    files: dict[str, bytes] = {}
    if state != "absent":
        if "src" in args:
            files[unit_file] = render(ctx, args["src"])
        if _is_template(name) and "dropin_src" in args:
            for item, unit in zip(_instances(args), units):
                files[f"{_dropin_dir(unit_dir, unit)}/{DROPIN}"] = render(ctx, args["dropin_src"], {"instance": item})
    for path, data in files.items():
        directory = path.rsplit("/", 1)[0]
        if ctx.state.stat(directory) is None:
            out.add(Outcome([], actions=[lambda d=directory: ctx.run(["mkdir", "-p", "--", d])],
                            effects={directory: PathState("dir", 0o755, 0, 0, "root", "root")}))
        out.add(write_file(ctx, path, data, mode=0o644, step=f"write {path[len(unit_dir) + 1:]}"))
    files_changed = any(s.status is Status.CHANGED for s in out.steps)
    if files_changed and units:
        _verify(ctx, files, unit_dir, units)
        out.steps.append(Step("verify", Status.OK, "systemd-analyze verify: no warnings"))

    # 2. what goes away: stale instances, or everything for state=absent
    gone = _stale(args, ctx, unit_dir) + (units if state == "absent" else [])
    doomed = [f"{_dropin_dir(unit_dir, u)}/{DROPIN}" for u in gone] + ([unit_file] if state == "absent" else [])
    doomed = [p for p in doomed if ctx.state.stat(p) is not None]
    if state == "absent" and not doomed:
        return Outcome([Step(f"remove {name}", Status.OK, "not installed")])
    if gone:
        live = state == "absent" and booted and any(
            v in ("active", "activating", "enabled") for what in ("is-active", "is-enabled")
            for v in _state_lines(ctx, what, units).values())
        if not booted:
            out.steps.append(Step(f"stop and disable {' '.join(gone)}", Status.SKIPPED, NOT_BOOTED))
        elif doomed or live:
            out.steps.append(Step(f"stop and disable {' '.join(gone)}", Status.CHANGED))
            out.actions.append(lambda: ctx.conn.run(["systemctl", "disable", "--now", *gone]))
    for path in doomed:
        out.steps.append(Step(f"remove {path[len(unit_dir) + 1:]}", Status.CHANGED))
        out.actions.append(lambda p=path: ctx.run(["rm", "-f", "--", p]))
        if path.endswith(DROPIN):
            out.actions.append(lambda p=path: ctx.conn.run(["rmdir", "--", p.rsplit("/", 1)[0]]))
        out.effects[path] = None
        out.diff += f"{path}: remove\n" if ctx.want_diff else ""

    # 3. systemctl: daemon-reload, enable, start (each skipped with the reason without systemd)
    if not booted:
        verbs = ["daemon-reload"]
        if state != "absent":
            verbs += ["enable"] if enabled is True else ["disable"] if enabled is False else []
            verbs += {"started": ["start"], "stopped": ["stop"], "restarted": ["restart"]}.get(state, [])
        out.steps += [Step(v, Status.SKIPPED, NOT_BOOTED) for v in verbs]
    else:
        flagged = bool(units) and "yes" in ctx.state.capture(
            _systemctl_query("show -p NeedDaemonReload --value", units)).stdout.split()
        if files_changed or doomed or flagged:
            out.steps.append(Step("daemon-reload", Status.CHANGED, "" if files_changed or doomed else "systemd asked for it"))
            out.actions.append(lambda: ctx.run(["systemctl", "daemon-reload"]))
        else:
            out.steps.append(Step("daemon-reload", Status.OK, "not needed"))
        if state != "absent" and units:
            is_enabled = _state_lines(ctx, "is-enabled", units)
            if enabled is True:
                _systemctl(out, ctx, "enable", [u for u in units if is_enabled[u] not in ENABLED])
            elif enabled is False:
                _systemctl(out, ctx, "disable", [u for u in units if is_enabled[u] in ("enabled", "enabled-runtime")])
            is_active = _state_lines(ctx, "is-active", units)
            if state == "started":
                _systemctl(out, ctx, "start", [u for u in units if is_active[u] != "active"])
            elif state == "stopped":
                _systemctl(out, ctx, "stop", [u for u in units if is_active[u] in ("active", "activating", "reloading")])
            elif state == "restarted":
                _systemctl(out, ctx, "restart", units)
    out.notify = files_changed
    return out


ENABLED = ("enabled", "enabled-runtime", "static", "alias", "indirect", "generated")


def _systemctl(out: Outcome, ctx: Context, verb: str, units: list[str]) -> None:
    if not units:
        out.steps.append(Step(verb, Status.OK, "nothing to do"))
        return
    out.steps.append(Step(f"{verb} {' '.join(units)}", Status.CHANGED))
    out.actions.append(lambda: _act(ctx, verb, units))


JOURNAL_LINES = 20


def _act(ctx: Context, verb: str, units: list[str]) -> None:
    """systemctl `verb`; a unit that fails to come up is reported with its own last log lines
    (systemctl itself only points at journalctl)."""
    try:
        ctx.run(["systemctl", verb, *units])
    except TaskFailed as e:
        if verb not in ("start", "restart"):
            raise
        tails = [f"--- journalctl -u {u} ---\n{ctx.conn.run(['journalctl', '-u', u, '-n', str(JOURNAL_LINES), '--no-pager', '-o', 'cat'], timeout=30).stdout.strip()}"
                 for u in units]
        raise TaskFailed("\n".join([str(e), *tails])) from None
