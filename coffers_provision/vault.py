"""Vault-encrypted text in the format ansible-vault documents (`$ANSIBLE_VAULT;1.1;AES256`).

The envelope is one header line, then the hex of `hex(salt) \\n hex(hmac) \\n hex(ciphertext)`
wrapped at 80 columns. PBKDF2-HMAC-SHA256 (10,000 rounds) of the password and salt gives
80 bytes: the AES-256 key, the HMAC-SHA256 key and the CTR nonce; the plaintext is PKCS#7
padded to the AES block. The HMAC is checked (in constant time) before anything is
decrypted, so a wrong password is told apart from damaged text.
"""

from __future__ import annotations

import binascii
import hmac
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import CoffersError

HEADER = "$ANSIBLE_VAULT"
ENV_PASSWORD_FILE = "ANSIBLE_VAULT_PASSWORD_FILE"
_ROUNDS = 10000


class VaultError(CoffersError):
    """Encrypted text that cannot be read: no password, a wrong one, or damaged text."""


@dataclass(frozen=True)
class VaultSecret:
    """A vault password and where it came from (for messages; the password is never shown)."""

    password: bytes
    source: str

    def __repr__(self) -> str:
        return f"VaultSecret(source={self.source!r})"


def is_encrypted(text: str | bytes) -> bool:
    head = text.lstrip()[: len(HEADER)]
    return (head.decode(errors="replace") if isinstance(head, bytes) else head) == HEADER


def read_password_file(path: str | Path) -> VaultSecret:
    """The password in `path` (surrounding whitespace removed); an executable file is run and its output used."""
    path = Path(path).expanduser()
    try:
        if os.access(path, os.X_OK) and path.is_file():
            proc = subprocess.run([str(path)], capture_output=True, timeout=60)
            if proc.returncode != 0:
                raise VaultError(f"{path}: vault password script exited {proc.returncode}")
            data = proc.stdout
        else:
            data = path.read_bytes()
    except OSError as e:
        raise VaultError(f"{path}: cannot read the vault password file: {e.strerror}") from None
    password = data.strip()
    if not password:
        raise VaultError(f"{path}: the vault password file is empty")
    return VaultSecret(password, str(path))


def default_secret(password_file: str | Path | None = None) -> VaultSecret | None:
    """The password from `--vault-password-file`, else from $ANSIBLE_VAULT_PASSWORD_FILE, else None."""
    chosen = password_file or os.environ.get(ENV_PASSWORD_FILE)
    return read_password_file(chosen) if chosen else None


def _keys(password: bytes, salt: bytes) -> tuple[bytes, bytes, bytes]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    derived = PBKDF2HMAC(algorithm=hashes.SHA256(), length=80, salt=salt, iterations=_ROUNDS).derive(password)
    return derived[:32], derived[32:64], derived[64:]


def decrypt(vaulttext: str, secret: VaultSecret, *, what: str) -> str:
    """The plaintext of one envelope; `what` names it in errors (a file, or a file and var)."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    lines = vaulttext.strip().splitlines()
    header = lines[0].strip().split(";") if lines else []
    if len(header) < 3 or header[0] != HEADER or header[1] not in ("1.1", "1.2"):
        raise VaultError(f"{what}: not vault text (expected a '{HEADER};1.1;AES256' header)")
    if header[2].strip() != "AES256":
        raise VaultError(f"{what}: unsupported vault cipher {header[2].strip()!r} (only AES256)")
    try:
        inner = binascii.unhexlify("".join(line.strip() for line in lines[1:]))
        salt_hex, mac_hex, body_hex = inner.split(b"\n", 2)
        salt, mac, body = binascii.unhexlify(salt_hex), binascii.unhexlify(mac_hex), binascii.unhexlify(body_hex.strip())
    except (binascii.Error, ValueError):
        raise VaultError(f"{what}: damaged vault text (bad hex)") from None
    key, mac_key, nonce = _keys(secret.password, salt)
    if not hmac.compare_digest(hmac.new(mac_key, body, "sha256").digest(), mac):
        raise VaultError(f"{what}: the vault password from {secret.source} does not decrypt it (wrong password?)")
    decryptor = Cipher(algorithms.AES(key), modes.CTR(nonce)).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    try:
        unpadder = padding.PKCS7(128).unpadder()
        plain = unpadder.update(padded) + unpadder.finalize()
        return plain.decode()
    except (ValueError, UnicodeDecodeError):
        raise VaultError(f"{what}: damaged vault text (bad padding)") from None


def encrypt(plaintext: str, secret: VaultSecret, *, salt: bytes | None = None) -> str:
    """An envelope ansible-vault can read (for tests and for users making one)."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    salt = salt or os.urandom(32)
    key, mac_key, nonce = _keys(secret.password, salt)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    body = encryptor.update(padded) + encryptor.finalize()
    mac = hmac.new(mac_key, body, "sha256").digest()
    hexed = binascii.hexlify(b"\n".join(binascii.hexlify(x) for x in (salt, mac, body))).decode()
    return f"{HEADER};1.1;AES256\n" + "\n".join(hexed[i : i + 80] for i in range(0, len(hexed), 80)) + "\n"
