"""Encryption of secrets at rest (design.md §3.4; reference-behaviour §2.6).

Every access token, refresh token, client secret, credential value, registration access
token and PKCE verifier is sealed with AES-256-GCM (NIST SP 800-38D) before a backend
stores it. A sealed value is text::

    v1.<key id>.<base64url(nonce || ciphertext || tag)>

* ``v1`` names the format, so a later format can be read side by side.
* ``<key id>`` (8 hex digits derived from the key) says which key of the :class:`KeyRing`
  sealed it. The newest key seals; any key in the ring opens, so keys can be rotated
  (:func:`tether.store.rotate.rotate_keys` re-seals everything with the newest key).
* The nonce is 96 random bits per value.
* The record's identity (:class:`SecretRef`) and the header are bound as associated data,
  so a value copied to another row or column fails to open with
  :class:`~tether.errors.DecryptionError`, which names the record and never the secret.

Keys come from a configured string (:meth:`KeyRing.from_string`) or a key file that is
created on first run with mode 0600 (:func:`load_key_file`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from tether.errors import ConfigurationError, DecryptionError

__all__ = [
    "FORMAT_VERSION",
    "KeyRing",
    "SecretRef",
    "add_key_to_file",
    "generate_key",
    "load_key_file",
    "mask",
]

FORMAT_VERSION = "v1"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_MASK = "••••"


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret lives: bound as associated data, and named in errors.

    Attributes:
        kind: The record type (``"connection"``, ``"credential"``, …).
        key: The record's key parts, e.g. ``(server_id, subject)``.
        field: The secret's field (``"access_token"``).
    """

    kind: str
    key: tuple[str, ...]
    field: str

    @property
    def aad(self) -> bytes:
        """Canonical, unambiguous encoding (a JSON list, so ``:`` in ids is harmless)."""
        return json.dumps([self.kind, *self.key, self.field]).encode()

    def describe(self) -> str:
        """Human-readable name of the record, for error messages."""
        return f"{self.kind} {'/'.join(self.key)} ({self.field})"


def generate_key() -> str:
    """Return a new random 256-bit key, urlsafe-base64 encoded."""
    return base64.urlsafe_b64encode(secrets.token_bytes(_KEY_BYTES)).decode()


def _decode_key(text: str) -> bytes:
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(
            "an encryption key is not valid base64",
            hint="generate one with `tether keys generate`",
        ) from exc
    if len(raw) != _KEY_BYTES:
        raise ConfigurationError(
            f"an encryption key decodes to {len(raw)} bytes; 32 are required",
            hint="generate one with `tether keys generate`",
        )
    return raw


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"tether-key-id:" + key).hexdigest()[:8]


class KeyRing:
    """Ordered AES-256-GCM keys: the first (newest) seals, any of them opens.

    Args:
        keys: Raw 32-byte keys, newest first.

    Raises:
        ConfigurationError: No keys, a key of the wrong size, or a duplicate key.
    """

    __slots__ = ("_by_id", "_ids")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ConfigurationError(
                "no encryption key configured",
                hint="set TETHER_ENCRYPTION_KEY or let Tether create a key file",
            )
        self._by_id: dict[str, AESGCM] = {}
        self._ids: list[str] = []
        for key in keys:
            if len(key) != _KEY_BYTES:
                raise ConfigurationError("an encryption key must be 32 bytes")
            kid = _key_id(key)
            if kid in self._by_id:
                raise ConfigurationError(f"encryption key {kid} is listed twice")
            self._by_id[kid] = AESGCM(key)
            self._ids.append(kid)

    @classmethod
    def from_string(cls, value: str | SecretStr) -> KeyRing:
        """Build from comma-separated base64 (standard or urlsafe) keys, newest first.

        Raises:
            ConfigurationError: Empty value or a malformed key.
        """
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        parts = [part for part in (p.strip() for p in text.split(",")) if part]
        return cls([_decode_key(part) for part in parts])

    @classmethod
    def generate(cls) -> KeyRing:
        """A ring with one fresh random key (tests, throwaway memory stores)."""
        return cls.from_string(generate_key())

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Key ids, newest first."""
        return tuple(self._ids)

    @property
    def primary_key_id(self) -> str:
        """The id of the key that seals new values."""
        return self._ids[0]

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={self._ids!r})"

    def encrypt(self, plaintext: str, ref: SecretRef) -> str:
        """Seal ``plaintext`` with the newest key, bound to ``ref``."""
        kid = self._ids[0]
        header = f"{FORMAT_VERSION}.{kid}"
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._by_id[kid].encrypt(
            nonce, plaintext.encode(), header.encode() + b"|" + ref.aad
        )
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{header}.{body}"

    def decrypt(self, token: str, ref: SecretRef) -> str:
        """Open a value sealed by :meth:`encrypt` for the same ``ref``.

        Raises:
            DecryptionError: Unknown format or key, tampering, or a value moved from
                another record. The message names the record, never the value.
        """
        version, kid, body = self._split(token, ref)
        aead = self._by_id.get(kid)
        if aead is None:
            raise DecryptionError(
                f"cannot decrypt {ref.describe()}: sealed with key {kid}, "
                "which is not in the key ring",
                hint="add the old key back (after the newest) and run "
                "`tether keys rotate`",
            )
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = aead.decrypt(
                raw[:_NONCE_BYTES],
                raw[_NONCE_BYTES:],
                f"{version}.{kid}".encode() + b"|" + ref.aad,
            )
            return plain.decode()
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise DecryptionError(
                f"cannot decrypt {ref.describe()}: the stored value was altered "
                "or belongs to another record"
            ) from exc

    def needs_rotation(self, token: str) -> bool:
        """Whether ``token`` was sealed by a key other than the newest."""
        parts = token.split(".", 2)
        return len(parts) != 3 or parts[1] != self._ids[0]

    def reseal(self, token: str, ref: SecretRef) -> str | None:
        """Re-seal with the newest key; ``None`` if already sealed by it."""
        if not self.needs_rotation(token):
            return None
        return self.encrypt(self.decrypt(token, ref), ref)

    def encrypt_optional(self, value: SecretStr | None, ref: SecretRef) -> str | None:
        """Seal a possibly absent secret."""
        return None if value is None else self.encrypt(value.get_secret_value(), ref)

    def decrypt_optional(self, token: str | None, ref: SecretRef) -> SecretStr | None:
        """Open a possibly absent secret."""
        return None if token is None else SecretStr(self.decrypt(token, ref))

    @staticmethod
    def _split(token: str, ref: SecretRef) -> tuple[str, str, str]:
        parts = token.split(".", 2)
        if len(parts) != 3 or parts[0] != FORMAT_VERSION:
            raise DecryptionError(
                f"cannot decrypt {ref.describe()}: unknown format "
                f"(expected {FORMAT_VERSION})"
            )
        return parts[0], parts[1], parts[2]


def _check_permissions(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"key file {path} is readable or writable by other users "
            f"(mode {stat.S_IMODE(mode):04o})",
            hint=f"run `chmod 600 {path}`",
        )


def _read_keys(path: Path) -> list[str]:
    lines = path.read_text(encoding="ascii").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _write_new(path: Path, keys: Iterable[str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write("# Tether encryption keys, newest first. Keep this file secret.\n")
        for key in keys:
            handle.write(key + "\n")


def load_key_file(path: str | os.PathLike[str], *, create: bool = True) -> KeyRing:
    """Load a key ring from a file of base64 keys (one a line, newest first).

    A missing file is created with one new key and mode 0600 when ``create`` is set;
    ``O_EXCL`` makes two processes starting at once agree on one key.

    Raises:
        ConfigurationError: The file is missing (and ``create`` is off), is readable by
            group or others, or holds a malformed key.
    """
    file = Path(path)
    if not file.exists():
        if not create:
            raise ConfigurationError(
                f"key file {file} does not exist",
                hint="create it with `tether keys generate` or enable creation",
            )
        file.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process won the race
            _write_new(file, [generate_key()])
    _check_permissions(file)
    return KeyRing.from_string(",".join(_read_keys(file)))


def add_key_to_file(path: str | os.PathLike[str]) -> KeyRing:
    """Prepend a new key to a key file, keeping the old ones for decryption.

    Run :func:`tether.store.rotate.rotate_keys` afterwards; once it reports no
    remaining work, the old keys may be removed from the file.

    Raises:
        ConfigurationError: As :func:`load_key_file`.
    """
    file = Path(path)
    _check_permissions(file)
    keys = [generate_key(), *_read_keys(file)]
    tmp = file.with_name(file.name + ".new")
    tmp.unlink(missing_ok=True)
    _write_new(tmp, keys)
    tmp.replace(file)
    return KeyRing.from_string(",".join(keys))


def mask(value: str | SecretStr | None) -> str:
    """Mask a secret for audit entries and displays.

    At most the last four characters are shown, and only for values of twelve or more
    characters; shorter values are masked entirely. ``None`` stays empty.
    """
    if value is None:
        return ""
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if len(text) < 12:
        return _MASK * 2
    return _MASK + text[-4:]
