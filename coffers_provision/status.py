"""Named exit statuses shared by every command."""

from enum import IntEnum


class ExitStatus(IntEnum):
    SUCCESS = 0
    ERROR = 1  # bad input: inventory, numactl text, GGUF, shard map, or a local error
    USAGE = 2  # bad command-line flags (argparse's own convention)
    HOSTS_FAILED = 3  # every host was reached, some task failed on at least one
    HOSTS_UNREACHABLE = 4  # at least one host could not be reached (takes precedence)
    INTERRUPTED = 130


def fleet_status(failed: int, unreachable: int) -> ExitStatus:
    """The exit status of a fan-out run from its per-host outcome counts."""
    if unreachable:
        return ExitStatus.HOSTS_UNREACHABLE
    if failed:
        return ExitStatus.HOSTS_FAILED
    return ExitStatus.SUCCESS
