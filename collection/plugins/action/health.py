"""coffers.numa.health: after the play, the same health wait and short completion as
`apply` (deployment/verify.py): /health until 200, then one completion, asked from the
host itself. Where systemd is not PID 1 every instance's exact command runs transiently,
as `apply` runs it there. A server that does not come up fails the host with the last
lines of its journal (or log)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.coffers.numa.plugins.plugin_utils.controller import AnsibleConnector, describe_host

from coffers_provision.deployment import verify
from coffers_provision.engine.result import Status
from coffers_provision.engine.state import HostState
from coffers_provision.errors import CoffersError


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("facts", "play", "bench_results", "tune_results", "model_cache", "restarted", "missing"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        conn = AnsibleConnector(self, (task_vars or {})["inventory_hostname"])
        try:
            d = describe_host(self, task_vars or {}, args, conn)
            results = verify.check(conn, HostState(conn), d.deployment, d.variables,
                                   restarted=bool(args.get("restarted")), missing=args.get("missing") or None)
        except CoffersError as e:
            return {**result, "failed": True, "msg": str(e)}
        failed = [r for r in results if r.status is Status.FAILED]
        result.update(changed=False, health=[{"task": r.task, "status": r.status.value, "message": r.message} for r in results])
        if failed:
            result.update(failed=True, msg=failed[0].message)
        else:
            result["msg"] = "; ".join(r.message for r in results) or "no restart: nothing to ask"
        return result
