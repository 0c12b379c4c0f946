"""Encryption of secrets at rest (design-notes D3.4; R2.6).

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
import re
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
    "key_file_exists",
    "load_key_file",
    "make_private_directory",
    "mask",
]

FORMAT_VERSION = "v1"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_MASK = "••••"
_KEY_HINT = "a key is 32 random bytes in base64; `tether keys generate` prints one"


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
            hint=_KEY_HINT,
        ) from exc
    if len(raw) != _KEY_BYTES:
        raise ConfigurationError(
            f"an encryption key decodes to {len(raw)} bytes; 32 are required",
            hint=_KEY_HINT,
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
                hint="set TETHER_ENCRYPTION_KEYS, or leave it unset to use the key "
                "file (TETHER_KEY_FILE)",
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


_KEY_TEXT = re.compile(r"[A-Za-z0-9_+/-]+=*")
_RESTORE_HINT = (
    "restore {path} from a backup (or put its keys in TETHER_ENCRYPTION_KEYS); "
    "only if nothing was ever stored with it, delete it and Tether creates a new key"
)


def _key_file_error(path: Path, problem: str) -> ConfigurationError:
    # Never generate a key over a damaged file: every grant sealed with it would be lost.
    return ConfigurationError(
        f"key file {path} {problem}", hint=_RESTORE_HINT.format(path=path)
    )


def _check_permissions(path: Path) -> None:
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise _key_file_error(path, "is not a regular file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"key file {path} is readable or writable by other users "
            f"(mode {stat.S_IMODE(mode):04o})",
            hint=f"run `chmod 600 {path}`",
        )


def _read_keys(path: Path) -> list[str]:
    """The keys of a key file, checked line by line.

    Raises:
        ConfigurationError: The file is unreadable, not ASCII, holds no key, or a line
            is not a base64 32-byte key (a truncated or garbled file).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read key file {path}: {exc.strerror or exc}",
            hint=f"check that {path} exists and belongs to this user",
        ) from exc
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise _key_file_error(path, "is damaged (it holds non-ASCII bytes)") from exc
    keys = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if _KEY_TEXT.fullmatch(line) is None:
            raise _key_file_error(path, f"is damaged (line {number} is not base64)")
        try:
            _decode_key(line)
        except ConfigurationError as exc:
            raise _key_file_error(
                path, f"is damaged or truncated (line {number}: {exc.message})"
            ) from exc
        keys.append(line)
    if not keys:
        raise _key_file_error(path, "is empty or holds no key")
    return keys


def _fsync_directory(directory: Path) -> None:
    # Makes the new directory entry durable (POSIX: fsync of the file is not enough).
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temporary(path: Path, keys: Iterable[str]) -> Path:
    """Write ``keys`` to a new 0600 file beside ``path``, flushed to disk."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(
                "# Tether encryption keys, newest first. Keep this file secret.\n"
            )
            for key in keys:
                handle.write(key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _create_key_file(path: Path) -> None:
    """Create ``path`` with one new key unless it exists; never partially visible.

    The key is written and fsynced under a temporary name, then hard-linked to ``path``:
    ``link`` fails if ``path`` exists, so of several processes starting at once exactly
    one key wins and the others read it, and no reader ever sees an empty or partial
    file. The directory is fsynced so the new name survives a crash.
    """
    make_private_directory(path.parent)
    tmp = _write_temporary(path, [generate_key()])
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process won the race; its key is complete
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create key file {path}: {exc.strerror or exc} "
            "(the file system must support hard links)",
            hint="set TETHER_KEY_FILE to a path on a local file system, or set "
            "TETHER_ENCRYPTION_KEYS",
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def make_private_directory(directory: Path) -> None:
    """Create ``directory`` (and missing parents) with mode 0700.

    An existing directory is left as it is: it may be shared (``/var/lib``) and is the
    operator's to set; the files Tether puts in it are 0600.
    """
    if directory.is_dir():
        return
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create directory {directory}: {exc.strerror or exc}",
            hint="set TETHER_HOME to a folder this user can write",
        ) from exc
    with contextlib.suppress(OSError):  # mkdir applies the umask; 0700 is the floor
        directory.chmod(0o700)


def key_file_exists(path: str | os.PathLike[str]) -> bool:
    """Whether a key file is present (even an empty or damaged one)."""
    return os.path.lexists(path)


def load_key_file(path: str | os.PathLike[str], *, create: bool = True) -> KeyRing:
    """Load a key ring from a file of base64 keys (one a line, newest first).

    A missing file is created with one new key and mode 0600 when ``create`` is set.
    Creation is crash-safe and race-free (:func:`_create_key_file`): of several
    processes starting at once, all end up with the same key. An existing file is never
    replaced, even when it is empty or damaged.

    Raises:
        ConfigurationError: The file is missing (and ``create`` is off), is readable by
            group or others, is empty, truncated or not ASCII, or holds a malformed key.
    """
    file = Path(path)
    if not key_file_exists(file):
        if not create:
            raise ConfigurationError(
                f"key file {file} does not exist",
                hint=_RESTORE_HINT.format(path=file),
            )
        _create_key_file(file)
    _check_permissions(file)
    return KeyRing.from_string(",".join(_read_keys(file)))


def add_key_to_file(path: str | os.PathLike[str]) -> KeyRing:
    """Prepend a new key to a key file, keeping the old ones for decryption.

    The new file is written and fsynced under a temporary name and renamed over the old
    one, so a crash leaves either the old or the new file, never a partial one. Run
    :func:`tether.store.rotate.rotate_keys` afterwards; once it reports no remaining
    work, the old keys may be removed from the file.

    Raises:
        ConfigurationError: As :func:`load_key_file`; a missing file is an error.
    """
    file = Path(path)
    if not key_file_exists(file):
        raise ConfigurationError(
            f"key file {file} does not exist",
            hint="run any command once (e.g. `tether servers list`) to create it",
        )
    _check_permissions(file)
    keys = [generate_key(), *_read_keys(file)]
    tmp = _write_temporary(file, keys)
    try:
        os.replace(tmp, file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(file.parent)
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
