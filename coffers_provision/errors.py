"""The one exception base: every error the tool raises on purpose carries its exit status.

`cli.main` is the one place that turns a `CoffersError` into a one-line message and an
exit code; anything else escaping a command is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Iterable

from .status import ExitStatus


class CoffersError(Exception):
    """A failure the user can act on; the message names the file, host or variable."""

    status: ExitStatus = ExitStatus.ERROR

    def lines(self) -> list[str]:
        """What to print on stderr, one problem a line."""
        return [f"error: {self}"]


class DiagnosticsError(CoffersError):
    """Problems with positions, printed bare as FILE:LINE:COL lines that editors can parse."""

    def __init__(self, diagnostics: Iterable[object]):
        self.diagnostics = sorted(diagnostics)  # type: ignore[type-var]
        super().__init__("\n".join(map(str, self.diagnostics)))

    def lines(self) -> list[str]:
        return [str(d) for d in self.diagnostics]


class UnreachableError(CoffersError):
    """A host could not be reached or authenticated."""

    status = ExitStatus.HOSTS_UNREACHABLE


class HostError(CoffersError):
    """A host was reached but a step on it failed."""

    status = ExitStatus.HOSTS_FAILED


class ProbeError(HostError):
    """The host answered, but with something the tool cannot read (facts or state)."""
