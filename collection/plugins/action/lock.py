"""coffers.numa.lock: the host's lock, the one `apply`, `tune` and `bench` hold while they
change it (coffers_provision/hostlock.py, docs/apply.md), taken and given back by an
ansible-playbook run (docs/ansible.md).

`state: held` takes `<state_dir>/lock.json` naming this controller, the ansible-playbook
process (playbook_pid), its start time and the command `ansible-playbook`, or fails the
host with `apply`'s refusal naming the holder; a provably dead holder's lock (a killed
run of this controller) is taken over, as `apply` takes it over. The holder it took is
returned as `holder`. `state: released` gives that holder's lock back (only while the
lock still names it). Check mode changes nothing, so it takes no lock, as `apply --check`.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.coffers.numa.plugins.plugin_utils.controller import AnsibleConnector, inventory_host, playbook_pid

from coffers_provision.deployment.host import state_dir_of
from coffers_provision.errors import CoffersError
from coffers_provision.hostlock import LOCK, acquire, parse_holder, release

COMMAND = "ansible-playbook"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    ARGS = {"state": {"choices": ["held", "released"], "default": "held"}, "holder": {"type": "str"}}

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        _, args = self.validate_argument_spec(self.ARGS, required_if=[("state", "released", ("holder",))])
        if self._task.check_mode:
            return {**result, "skipped": True, "msg": "check mode changes nothing: no lock taken"}
        conn = AnsibleConnector(self, task_vars["inventory_hostname"])
        try:
            state_dir = state_dir_of(inventory_host(task_vars))
            if args["state"] == "held":
                mine = acquire(conn, state_dir, COMMAND, playbook_pid())
                return {**result, "changed": False, "holder": mine.text(), "msg": f"{state_dir}/{LOCK} held by {mine.describe()}"}
            holder = parse_holder(args["holder"])
            if holder is None:
                return {**result, "failed": True, "msg": "holder: not the holder that state=held returned"}
            release(conn, state_dir, holder)
        except CoffersError as e:
            return {**result, "failed": True, "msg": str(e)}
        return {**result, "changed": False, "msg": f"{state_dir}/{LOCK} given back"}
