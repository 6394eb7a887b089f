"""coffers.numa.deployment: the host's deployment description and the play's steps,
computed on the controller by coffers_provision itself (docs/ansible.md).

The host's vars are read from the same inventory sources ansible-playbook was given, by
coffers_provision's own reader, so the host is described exactly as `apply` describes it:
`deployment_for` (the function `plan` and `apply` call) plans it from the facts
`numa_facts` gathered and the model's header, read over Ansible's own connection. The
play's steps (engine/manifest.py) carry the exact bytes of every file the project's roles
write; the `serve` role writes them with ansible.builtin modules. This plugin only reads
the host. Like `apply`, it fails the host before any change when a server would (re)start
on a node whose live memory cannot take the plan (deployment/budget.py).
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.coffers.numa.plugins.plugin_utils.controller import AnsibleConnector, describe_host

from coffers_provision.deployment import budget
from coffers_provision.deployment.apply import record
from coffers_provision.deployment.verify import RESTART_HANDLER
from coffers_provision.engine.manifest import compile_play
from coffers_provision.engine.state import HostState
from coffers_provision.errors import CoffersError


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("facts", "play", "bench_results", "tune_results", "model_cache"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        conn = AnsibleConnector(self, task_vars["inventory_hostname"])
        try:
            d = describe_host(self, task_vars, self._task.args, conn)
            state = HostState(conn)
            steps = compile_play(d.host.name, d.play, d.variables, state, budget.needs(d.deployment, d.variables))
            refused = budget.guard(conn, d.deployment, d.variables)(state)
        except CoffersError as e:
            return {**result, "failed": True, "msg": str(e)}
        if refused:
            return {**result, "failed": True, "msg": refused}
        secrets = [str(s) for s in d.variables["no_log_values"] if len(str(s)) >= 4]
        for item in steps["files"] + [f for unit in steps["units"] for f in unit["files"]]:
            item["secret"] = any(s in (item["content"] or "") for s in secrets)
        result.update(changed=False, deployment=d.deployment.to_json(mask=True), record=record(d.deployment), steps=steps,
                      restart_handler=RESTART_HANDLER)
        if secrets:
            result["_ansible_no_log"] = True  # the steps carry the secrets the files need
        return result
