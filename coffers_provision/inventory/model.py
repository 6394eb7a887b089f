"""What a loaded inventory is: hosts with their resolved vars, groups, and the errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import CoffersError, DiagnosticsError
from ..schema import Diagnostic, JsonPath, Located
from ..vault import VaultError, VaultSecret, decrypt
from .templating import RenderError, Scope, is_template, render

if TYPE_CHECKING:
    from .connection import Become, Connection


class InventoryError(DiagnosticsError):
    """One or more problems; each is a Diagnostic printed as FILE:LINE:COL: path: message."""


class PatternError(CoffersError, ValueError):
    """A bad or unmatched host pattern."""


@dataclass(frozen=True)
class Origin:
    """Where a value was written: a node of a located document (YAML, INI or JSON)."""

    located: Located
    path: JsonPath

    def diag(self, message: str, *, key: bool = True) -> Diagnostic:
        return self.located.diag(self.path, message, key=key)

    def error(self, message: str) -> InventoryError:
        return InventoryError([self.diag(message)])


@dataclass(frozen=True)
class VaultValue:
    """An inline `!vault` value: decrypted only when read, printed only as its ciphertext."""

    ciphertext: str
    origin: Origin | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, str]:
        return {"__ansible_vault": self.ciphertext}


class HostVars(Mapping[str, Any]):
    """A host's vars after precedence. Reading a var renders its templates and decrypts its
    vault values then (and only that var and what it refers to); `raw` is the value as written."""

    def __init__(self, host: str, raw: dict[str, Any], origins: dict[str, Origin], magic: Mapping[str, Any], secret: VaultSecret | None):
        self.host, self.raw, self.origins, self._magic, self._secret = host, raw, origins, magic, secret
        self._done: dict[str, Any] = {}
        self._busy: list[str] = []
        self._scope = Scope(self.__getitem__, lambda: iter(self.raw), magic)

    def __getitem__(self, key: str) -> Any:
        if key in self._done:
            return self._done[key]
        if key not in self.raw:
            raise KeyError(key)
        if key in self._busy:
            chain = " -> ".join(self._busy[self._busy.index(key) :] + [key])
            raise self._error(key, f"recursive loop in templates: {chain}")
        self._busy.append(key)
        try:
            value = self._resolve(self.raw[key], key)
        finally:
            self._busy.pop()
        self._done[key] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:  # never the values: they may be secrets
        return f"HostVars({self.host!r}, {sorted(self.raw)!r})"

    def _error(self, key: str, message: str) -> InventoryError:
        origin = self.origins.get(key)
        text = f"host {self.host}: var {key}: {message}"
        return origin.error(text) if origin else InventoryError([Diagnostic("<inventory>", 1, 1, "$", text)])

    def _resolve(self, value: Any, key: str) -> Any:
        if isinstance(value, VaultValue):
            return self._resolve(self._decrypt(value, key), key)
        if is_template(value):
            try:
                return render(value, self._scope)
            except RenderError as e:
                raise self._error(key, str(e)) from None
        if isinstance(value, dict):
            return {k: self._resolve(v, key) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v, key) for v in value]
        return value

    def _decrypt(self, value: VaultValue, key: str) -> str:
        if self._secret is None:
            raise self._error(key, "is vault-encrypted and no vault password was given: pass --vault-password-file FILE (or set ANSIBLE_VAULT_PASSWORD_FILE)")
        try:
            return decrypt(value.ciphertext, self._secret, what=f"var {key}")
        except VaultError as e:
            raise self._error(key, str(e).removeprefix(f"var {key}: ")) from None

    def secrets(self) -> list[str]:
        """Every decrypted vault value of this host (for redaction); decrypts them when a password was given."""
        found: list[str] = []

        def walk(value: Any, key: str) -> None:
            if isinstance(value, VaultValue) and self._secret is not None:
                found.append(self._decrypt(value, key))
            elif isinstance(value, dict):
                for v in value.values():
                    walk(v, key)
            elif isinstance(value, list):
                for v in value:
                    walk(v, key)

        for k, v in self.raw.items():
            walk(v, k)
        return found


@dataclass(frozen=True)
class Host:
    name: str
    vars: Mapping[str, Any]
    groups: tuple[str, ...]  # every group but `all`, lowest precedence first
    inventory_dir: Path = Path(".")

    @cached_property
    def settings(self) -> Connection:
        """How to reach the host, from its connection vars (errors name the var and its position)."""
        from .connection import connection_of

        return connection_of(self)

    @property
    def address(self) -> str:
        return self.settings.address

    @property
    def port(self) -> int | None:
        return self.settings.port

    @property
    def user(self) -> str | None:
        return self.settings.user

    @property
    def key_file(self) -> str | None:
        return self.settings.key_file

    @property
    def connection(self) -> str:
        return self.settings.kind

    @property
    def proxy_jump(self) -> str | None:
        return self.settings.proxy_jump

    @property
    def coffers(self) -> dict[str, Any]:
        return dict(self.vars.get("coffers") or {})

    @property
    def become(self) -> Become | None:
        return self.settings.become


def secrets_of(host: Host) -> list[str]:
    """The decrypted vault values of a host's vars (and its become and login passwords), to mask in
    logs, diffs and JSON. Empty for a host whose vars are plain data."""
    found = host.vars.secrets() if isinstance(host.vars, HostVars) else []
    for var in ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password", "ansible_become_password", "ansible_become_pass"):
        value = host.vars.get(var)
        if isinstance(value, str) and value and value not in found:
            found.append(value)
    return found


@dataclass
class Inventory:
    path: Path  # the first source
    hosts: dict[str, Host]
    groups: dict[str, list[str]]  # group -> host names, transitive, inventory order
    group_children: dict[str, list[str]] = field(default_factory=dict)
    group_hosts: dict[str, list[str]] = field(default_factory=dict)  # group -> its own hosts, as listed
    warnings: list[Diagnostic] = field(default_factory=list)
    sources: tuple[Path, ...] = ()

    def select(self, pattern: str | None) -> list[Host]:
        """Hosts matching an Ansible-style pattern, in inventory order (None: every host)."""
        from .patterns import match_pattern

        if pattern is None or pattern.strip() in ("", "all", "*"):
            return list(self.hosts.values())
        names = match_pattern(pattern, self.hosts, self.groups)
        return [h for n, h in self.hosts.items() if n in names]
