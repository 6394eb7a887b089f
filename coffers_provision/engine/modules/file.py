"""`file`: a directory with its mode and owner, or a path that must be absent."""

from __future__ import annotations

from ...engine.diff import attr_diff
from ..result import Status, Step
from ..state import Needs, PathState
from . import Context, Outcome, TaskFailed, _owner_matches, parse_mode


def needs(args: dict, ctx: Context) -> Needs:
    return Needs(stat={args["path"]})


def prepare(args: dict, ctx: Context) -> Outcome:
    path = args["path"]
    st = ctx.state.stat(path)
    if args.get("state", "directory") == "absent":
        if st is None:
            return Outcome([Step(f"remove {path}", Status.OK)])
        return Outcome(
            [Step(f"remove {path}", Status.CHANGED, st.kind)],
            actions=[lambda: ctx.run(["rm", "-rf", "--", path])],
            diff=f"{path}: remove ({st.kind})\n" if ctx.want_diff else "",
            effects={path: None},
            contents={path: None},
        )

    mode, owner, group = parse_mode(args.get("mode")), args.get("owner"), args.get("group")
    if st is not None and st.kind != "dir":
        raise TaskFailed(f"{path} exists and is not a directory ({st.kind})")
    steps, actions, diff = [], [], ""
    if st is None:
        steps.append(Step(f"mkdir {path}", Status.CHANGED))
        argv = ["mkdir", "-p"] + (["-m", f"{mode:04o}"] if mode is not None else []) + ["--", path]
        actions.append(lambda: ctx.run(argv))
        diff += f"{path}: create directory\n"
    if mode is not None and (st is None or st.mode != mode):
        if st is not None:
            steps.append(Step(f"chmod {path}", Status.CHANGED, f"{st.mode:04o} -> {mode:04o}"))
            diff += attr_diff(path, "mode", f"{st.mode:04o}", f"{mode:04o}")
        # mkdir -m does not set the mode of parents it creates, nor beat the umask for setgid bits
        actions.append(lambda: ctx.run(["chmod", f"{mode:04o}", "--", path]))
    if (owner or group) and (st is None or not (_owner_matches(owner, st.user, st.uid) and _owner_matches(group, st.group, st.gid))):
        spec = f"{owner or ''}:{group or ''}".rstrip(":")
        if st is not None:
            steps.append(Step(f"chown {path}", Status.CHANGED, f"{st.user}:{st.group} -> {spec}"))
            diff += attr_diff(path, "owner", f"{st.user}:{st.group}", spec)
        actions.append(lambda: ctx.run(["chown", spec, "--", path]))
    if not steps:
        return Outcome([Step(f"directory {path}", Status.OK)])
    after = PathState(
        "dir", mode if mode is not None else (st.mode if st else 0o755),
        st.uid if st else 0, st.gid if st else 0, owner or (st.user if st else "root"), group or (st.group if st else "root"),
    )
    return Outcome(steps, actions=actions, diff=diff if ctx.want_diff else "", effects={path: after})
