#!/usr/bin/python
"""Gather a host's NUMA facts on the host itself, with the standard library only.

The probe script and its parsers are coffers_provision's own (facts/gather.py and what it
imports), copied into module_utils when the collection is built: `probe` and this module
run the same script and parse its output with the same code.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: numa_facts
short_description: The host's NUMA topology, CPUs and system facts, as `coffers-provision probe` gathers them
description:
  - Runs coffers-provision's probe script on the host and parses it with the same parsers.
  - Returns C(facts), the document schemas/facts.schema.json describes.
options:
  host:
    description: The name the facts are recorded under (the inventory hostname).
    type: str
    required: true
  prefix:
    description: The install prefix whose file system the disk fact measures.
    type: str
    default: /usr/local
"""

RETURN = r"""
facts:
  description: The facts document (schemas/facts.schema.json).
  returned: success
  type: dict
"""

import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.coffers.numa.plugins.module_utils.coffers_facts.errors import CoffersError
from ansible_collections.coffers.numa.plugins.module_utils.coffers_facts.facts.gather import (
    PROBE_TIMEOUT_S, assemble, probe_script, split_sections)


def main() -> None:
    module = AnsibleModule(argument_spec={"host": {"type": "str", "required": True},
                                          "prefix": {"type": "str", "default": "/usr/local"}},
                           supports_check_mode=True)
    host, prefix = module.params["host"], module.params["prefix"]
    try:
        proc = subprocess.run(["/bin/sh", "-c", probe_script(prefix)], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        module.fail_json(msg=f"{host}: the probe script ran over {PROBE_TIMEOUT_S:.0f} s")
    if proc.returncode != 0:
        module.fail_json(msg=f"{host}: probe script exited {proc.returncode}: {proc.stderr.strip()[:500]}")
    try:
        facts = assemble(split_sections(proc.stdout), host=host, prefix=prefix)
    except CoffersError as e:
        module.fail_json(msg=str(e))
    module.exit_json(changed=False, facts=facts)


if __name__ == "__main__":
    main()
