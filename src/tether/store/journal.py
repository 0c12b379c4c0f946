"""The sealed token journal: tokens an AS issued, kept until the store has them (DUR-1).

The moment a token endpoint answers a refresh or a connect's code exchange, the hub
appends one record to this file, *before* it writes the store; once the store holds the
tokens, the record is settled (removed). A process killed between the answer and the
commit, or a store that stays unwritable after the retries, leaves the record pending,
and the next start (or the next refresh of that connection) replays it (DUR-2).

File format, one line per pending record::

    P <record id> <base64url(JSON header)> <sealed body>

* The header names the connection (``{"k": kind, "s": server_id, "u": subject}``), so
  the record can be opened and replayed without a lookup table.
* The body is the record's JSON (used refresh token, token fields, epoch, time), sealed
  with the store's :class:`~tether.store.crypto.KeyRing` (AES-256-GCM) with the record id,
  kind and connection identity as associated data: a record copied to another connection
  or edited fails to open (design-notes D3.4).

I/O rules (DUR-3):

1. An append is one ``write(2)`` of one newline-framed line to a descriptor opened with ``O_APPEND``
   and mode 0600, under a shared ``flock``: concurrent appenders (several processes on
   one database) never interleave, and the line is in the page cache, which survives a
   SIGKILL of the process, when ``write`` returns.
2. No ``fsync``: the journal closes the process-death window (kill -9, OOM kill, a
   crash), which the page cache covers; an fsync would add milliseconds to every
   refresh on a loaded disk. A power loss or kernel crash in the same few
   milliseconds is not covered (the SQL store's own commit decides then).
3. Settling rewrites the file without the record under an exclusive ``flock`` and
   renames it into place (atomic); an appender that raced the rename notices the
   replaced inode and appends to the new file.
4. A line that does not parse (cut by a full disk) or does not open (another key) is
   logged and kept, never replayed blindly and never silently dropped.

Memory stores have no journal (nothing survives their process anyway).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from tether.errors import ConfigurationError, DecryptionError, StorageError
from tether.store.crypto import KeyRing, SecretRef, make_private_directory

__all__ = [
    "JournalRecord",
    "Kind",
    "TokenJournal",
    "decode_line",
    "encode_line",
    "journal_location",
    "journal_path_for",
]

logger = logging.getLogger(__name__)

Kind = Literal["refresh", "connect"]
_KINDS = ("refresh", "connect")
_PENDING = "P"
_SUFFIX = ".token-journal"


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """Tokens an AS issued for one connection, not yet known to be stored.

    Attributes:
        id: Random record id (bound into the seal).
        kind: ``refresh`` (a refresh-token grant) or ``connect`` (a code exchange).
        server_id: The server.
        subject: The connection subject.
        created_at: When the answer arrived (the change's ``now``).
        used_refresh_token: For ``refresh``: the refresh token that was sent; the
            replay applies only over a grant still holding it.
        grant_epoch: The server's grant epoch the tokens belong to.
        fields: The connection fields to write (JSON-safe; holds the tokens).
    """

    id: str
    kind: Kind
    server_id: str
    subject: str
    created_at: datetime
    used_refresh_token: str | None = field(repr=False, default=None)
    grant_epoch: int = 0
    fields: dict[str, Any] = field(repr=False, default_factory=dict)

    @staticmethod
    def new_id() -> str:
        """A fresh random record id."""
        return secrets.token_hex(8)


def _ref(record_id: str, kind: str, server_id: str, subject: str) -> SecretRef:
    return SecretRef("journal", (record_id, kind, server_id, subject), "tokens")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_line(ring: KeyRing, record: JournalRecord) -> bytes:
    """The journal line for ``record`` (pure: sealing aside, no I/O)."""
    header = {"k": record.kind, "s": record.server_id, "u": record.subject}
    body = {
        "t": record.created_at.isoformat(),
        "r": record.used_refresh_token,
        "e": record.grant_epoch,
        "f": record.fields,
    }
    sealed = ring.encrypt(
        json.dumps(body, separators=(",", ":")),
        _ref(record.id, record.kind, record.server_id, record.subject),
    )
    head = _b64(json.dumps(header, separators=(",", ":")).encode())
    return f"{_PENDING} {record.id} {head} {sealed}\n".encode()


def decode_line(ring: KeyRing, line: str) -> JournalRecord:
    """Open one journal line.

    Raises:
        ValueError: The line is not a journal record (cut or edited).
        DecryptionError: The seal does not open with this key ring for this identity.
    """
    parts = line.strip().split(" ")
    if len(parts) != 4 or parts[0] != _PENDING:
        raise ValueError("not a journal record")
    _, record_id, head, sealed = parts
    try:
        header = json.loads(_unb64(head))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a journal header that does not parse") from exc
    if not isinstance(header, dict) or header.get("k") not in _KINDS:
        raise ValueError("a journal header of an unknown kind")
    kind, server_id, subject = header["k"], str(header["s"]), str(header["u"])
    body = json.loads(ring.decrypt(sealed, _ref(record_id, kind, server_id, subject)))
    return JournalRecord(
        id=record_id,
        kind=kind,
        server_id=server_id,
        subject=subject,
        created_at=datetime.fromisoformat(body["t"]),
        used_refresh_token=body["r"],
        grant_epoch=int(body["e"]),
        fields=dict(body["f"]),
    )


def journal_path_for(database_path: Path) -> Path:
    """Where a SQLite database's journal lives: beside it, ``<file>.token-journal``.

    Not ``-journal``: that name is SQLite's own rollback journal.
    """
    return database_path.with_name(database_path.name + _SUFFIX)


def journal_location(
    database_url: str, given: str | os.PathLike[str] | None = None
) -> Path | None:
    """Where the journal for ``database_url`` lives, if anywhere (DUR-1).

    ``given`` wins; else beside a SQLite file; memory stores and other databases
    without a given path have none.
    """
    if database_url.startswith("memory:"):
        return None
    if given is not None:
        return Path(given)
    from tether.store.database import sqlite_path

    database = sqlite_path(database_url)
    return None if database is None else journal_path_for(database)


class TokenJournal:
    """The append-only journal file of one data directory (see the module rules)."""

    def __init__(self, path: str | os.PathLike[str], ring: KeyRing) -> None:
        self.path = Path(path)
        self._ring = ring

    def __repr__(self) -> str:
        return f"TokenJournal({str(self.path)!r})"

    def append(self, record: JournalRecord) -> None:
        """Append ``record`` with one ``write(2)`` (rule 1).

        Raises:
            StorageError: The file cannot be written (the caller goes on to the store).
        """
        # a leading newline ends a line a full disk cut short, so it cannot swallow
        # this record (blank lines are skipped)
        line = b"\n" + encode_line(self._ring, record)
        try:
            if not self.path.parent.is_dir():  # a first use (PostgreSQL's home)
                make_private_directory(self.path.parent)
            with self._locked(fcntl.LOCK_SH, create=True) as fd:
                written = os.write(fd, line)
        except (OSError, ConfigurationError) as exc:
            problem = exc.strerror if isinstance(exc, OSError) else exc.message
            raise StorageError(
                f"the token journal {self.path} cannot be written: {problem}",
                hint="check the data directory's free space and permissions",
            ) from exc
        if written != len(line):
            raise StorageError(f"the token journal {self.path} took a partial write")

    def settle(self, record_id: str) -> None:
        """Remove a record the store now holds (rule 3); a failure only logs."""
        try:
            self._rewrite(drop={record_id})
        except OSError as exc:
            # still pending: the replay finds the store ahead and discards it
            logger.warning(
                "token journal %s: record %s not settled: %s",
                self.path,
                record_id,
                exc.strerror,
            )

    def pending(
        self, server_id: str | None = None, subject: str | None = None
    ) -> list[JournalRecord]:
        """The records still pending, oldest first, optionally of one connection.

        Lines that do not parse or open are logged and skipped (rule 4).
        """
        records = []
        for line in self._lines():
            try:
                record = decode_line(self._ring, line)
            except (ValueError, KeyError, TypeError, DecryptionError) as exc:
                logger.warning(
                    "token journal %s: a record cannot be read (%s); it is kept",
                    self.path,
                    exc,
                )
                continue
            if server_id is not None and record.server_id != server_id:
                continue
            if subject is not None and record.subject != subject:
                continue
            records.append(record)
        return records

    def _lines(self) -> list[str]:
        try:
            text = self.path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(
                f"the token journal {self.path} cannot be read: {exc.strerror}",
                hint="check the data directory's permissions",
            ) from exc
        return [line for line in text.splitlines() if line.strip()]

    @contextlib.contextmanager
    def _locked(self, how: int, *, create: bool) -> Iterator[int]:
        """A descriptor on the current journal inode, ``flock``ed with ``how``."""
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        while True:
            fd = os.open(self.path, flags, 0o600)
            try:
                fcntl.flock(fd, how)
                try:
                    current = os.stat(self.path).st_ino
                except FileNotFoundError:
                    current = -1
                if os.fstat(fd).st_ino == current:
                    yield fd
                    return
            finally:
                os.close(fd)
            # a settle renamed a new file into place meanwhile: use that one

    def _rewrite(self, drop: set[str]) -> None:
        if not self.path.exists():
            return
        with self._locked(fcntl.LOCK_EX, create=False):
            lines = self._lines()
            kept = [line for line in lines if _record_id(line) not in drop]
            if len(kept) == len(lines):
                return
            temporary = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(
                temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
            )
            try:
                os.write(fd, "".join(f"{line}\n" for line in kept).encode())
            finally:
                os.close(fd)
            os.replace(temporary, self.path)


def _record_id(line: str) -> str | None:
    parts = line.split(" ", 2)
    return parts[1] if len(parts) >= 2 else None
