"""The fleet inventory, read as ansible-core reads it (docs/inventory.md).

Sources: YAML, INI, the JSON that `ansible-inventory --list` and inventory scripts print,
executable scripts, directories of these, several at once. Each host's vars follow
ansible-core's precedence; `coffers:` merges key by key (merge.py). Modules, one job each:

  load.py          sources -> hosts with resolved vars (the precedence)
  sources.py       which reader a file needs; directories in ansible-core's order
  yaml_source.py, ini_source.py, script_source.py   the readers
  data.py          what readers build: groups, hosts, inline vars, with positions
  vars_files.py    group_vars/ and host_vars/
  files.py         one YAML/JSON file: positions, `!vault`, `!unsafe`, encrypted files
  model.py         Host, Inventory, lazily rendered HostVars
  templating.py    `{{ }}` in values; connection.py the connection vars
  ranges.py        host keys: ranges and ports; patterns.py `--limit` patterns
  listing.py       the resolved inventory in ansible-inventory's shapes
"""

from .connection import Become, Connection, proxy_jump_of
from .load import load_inventory
from .merge import MERGED_VARS, deep_merge, merge_vars
from .model import Host, HostVars, Inventory, InventoryError, PatternError, VaultValue, secrets_of
from .patterns import match_pattern, split_pattern
from .ranges import expand as expand_hosts

__all__ = [
    "Become", "Connection", "Host", "HostVars", "Inventory", "InventoryError", "MERGED_VARS", "PatternError",
    "VaultValue", "deep_merge", "expand_hosts", "load_inventory", "match_pattern", "merge_vars", "proxy_jump_of",
    "secrets_of", "split_pattern",
]  # fmt: skip
