"""Reading one YAML or JSON file of inventory data, with positions.

Two tags as Ansible writes them: `!vault |` (an encrypted value, kept encrypted until it
is read) and `!unsafe` (text never rendered as a template). A whole file encrypted with
ansible-vault is decrypted first, with the run's vault password.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..schema import Diagnostic, Located, YamlError, load_yaml
from ..vault import VaultError, VaultSecret, decrypt, is_encrypted
from .model import InventoryError, VaultValue
from .templating import Unsafe

PASSWORD_HINT = "pass --vault-password-file FILE (or set ANSIBLE_VAULT_PASSWORD_FILE)"


class InventoryLoader(yaml.SafeLoader):
    """SafeLoader plus `!vault` and `!unsafe`."""


def _vault(loader: yaml.SafeLoader, node: yaml.Node) -> VaultValue:
    return VaultValue(loader.construct_scalar(node))  # type: ignore[arg-type]


def _unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Unsafe:
    return Unsafe(loader.construct_scalar(node))  # type: ignore[arg-type]


InventoryLoader.add_constructor("!vault", _vault)
InventoryLoader.add_constructor("!unsafe", _unsafe)


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise InventoryError([Diagnostic(str(path), 1, 1, "$", f"cannot read: {e.strerror}")]) from None
    except UnicodeDecodeError:
        raise InventoryError([Diagnostic(str(path), 1, 1, "$", "not UTF-8 text")]) from None


def decrypted(path: Path, text: str, secret: VaultSecret | None) -> str:
    """The plaintext of a vault-encrypted file (or the text itself when it is not encrypted)."""
    if not is_encrypted(text):
        return text
    if secret is None:
        raise InventoryError([Diagnostic(str(path), 1, 1, "$", f"the file is vault-encrypted and no vault password was given: {PASSWORD_HINT}")])
    try:
        return decrypt(text, secret, what=str(path))
    except VaultError as e:
        raise InventoryError([Diagnostic(str(path), 1, 1, "$", str(e).removeprefix(f"{path}: "))]) from None


def load(path: Path, secret: VaultSecret | None, text: str | None = None) -> Located:
    """One YAML/JSON document with positions; raises InventoryError on a syntax error."""
    text = decrypted(path, read_text(path) if text is None else text, secret)
    try:
        return load_yaml(path, text, loader=InventoryLoader)
    except YamlError as e:
        raise InventoryError([e.diagnostic]) from None
