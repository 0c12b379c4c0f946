"""Journaling and replaying tokens an AS issued (DUR-1, DUR-2; design-notes D3.3).

The pure half turns connection fields into the JSON-safe form the journal seals and
back, and builds the compare-and-set change a replay applies:

* ``refresh`` records apply only over a grant that still holds the refresh token the
  record says was sent (the same rule as :func:`~tether.hub.grants.refreshed_change`);
* ``connect`` records apply only if nothing wrote the connection since the answer
  arrived and the server's grant epoch is still the record's (a configuration change
  meanwhile invalidated them).

Anything else is *superseded*: a newer state won, and the record is discarded. The I/O
half (:class:`Recovery`) journals, settles and replays through
:meth:`~tether.hub.grants.GrantWriter.apply`, and audits every replay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import SecretStr

from tether.errors import StorageError
from tether.hub.context import HubContext
from tether.hub.grants import Change, GrantWriter, event_change, refreshed_change
from tether.store.base import Connection
from tether.store.journal import JournalRecord, Kind

__all__ = [
    "Recovery",
    "Replayed",
    "from_wire",
    "replay_change",
    "to_wire",
]

logger = logging.getLogger(__name__)

_SECRETS = frozenset({"access_token", "refresh_token", "dpop_key"})
_TIMES = frozenset({"expires_at", "connected_at", "refreshed_at", "retry_at"})
_TUPLES = frozenset({"scopes", "required_scopes"})

Outcome = Literal["applied", "superseded"]


def to_wire(fields: dict[str, object]) -> dict[str, Any]:
    """Connection fields as JSON values (secrets revealed: the journal seals them)."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, SecretStr):
            out[name] = value.get_secret_value()
        elif isinstance(value, datetime):
            out[name] = value.isoformat()
        elif isinstance(value, tuple):
            out[name] = list(value)
        else:
            out[name] = value
    return out


def from_wire(wire: dict[str, Any]) -> dict[str, object]:
    """The inverse of :func:`to_wire`."""
    out: dict[str, object] = {}
    for name, value in wire.items():
        if value is None:
            out[name] = None
        elif name in _SECRETS:
            out[name] = SecretStr(str(value))
        elif name in _TIMES:
            out[name] = datetime.fromisoformat(str(value))
        elif name in _TUPLES:
            out[name] = tuple(str(item) for item in value)
        else:
            out[name] = value
    return out


def replay_change(record: JournalRecord, server_epoch: int | None) -> Change:
    """The compare-and-set change that replays ``record`` (module rules).

    ``server_epoch`` is the server's grant epoch now (``None``: the server is gone).
    """
    fields = from_wire(record.fields)
    now = record.created_at
    if record.kind == "refresh":
        refreshed = refreshed_change(record.used_refresh_token, now, **fields)

        def refresh(current: Connection) -> Connection | None:
            if server_epoch != current.grant_epoch:
                return None
            return refreshed(current)

        return refresh
    authorized = event_change("authorized", now, **fields)

    def connect(current: Connection) -> Connection | None:
        if server_epoch != record.grant_epoch:
            return None
        if current.updated_at is not None and current.updated_at >= now:
            return None  # written since the answer: the commit, or a newer change
        return authorized(current)

    return connect


def _tracked(change: Change, wrote: list[bool]) -> Change:
    """``change``, noting in ``wrote`` whether its last run wrote anything."""

    def tracked(current: Connection) -> Connection | None:
        updated = change(current)
        wrote[:] = [updated is not None]
        return updated

    return tracked


@dataclass(frozen=True, slots=True)
class Replayed:
    """One replayed record: which connection and what happened."""

    server_id: str
    subject: str
    kind: Kind
    outcome: Outcome


class Recovery:
    """Journal tokens before the store has them; replay what a crash left (DUR-2)."""

    def __init__(self, ctx: HubContext, grants: GrantWriter) -> None:
        self._ctx = ctx
        self._grants = grants
        self.replayed: list[Replayed] = []
        """Every replay of this process, in order (for operators and tests)."""

    @property
    def enabled(self) -> bool:
        """Whether this store has a journal (memory stores have none)."""
        return self._ctx.journal is not None

    def journal(
        self,
        kind: Kind,
        conn: Connection,
        now: datetime,
        fields: dict[str, object],
        *,
        used_refresh_token: str | None = None,
        grant_epoch: int | None = None,
    ) -> str | None:
        """Append the answer's tokens; the record id, or ``None`` without a journal.

        Synchronous on purpose: one ``write(2)`` to the page cache, with no await
        between the answer and the append. A journal that cannot be written is
        logged and the store write goes ahead (it is the primary copy).
        """
        journal = self._ctx.journal
        if journal is None:
            return None
        record = JournalRecord(
            id=JournalRecord.new_id(),
            kind=kind,
            server_id=conn.server_id,
            subject=conn.subject,
            created_at=now,
            used_refresh_token=used_refresh_token,
            grant_epoch=conn.grant_epoch if grant_epoch is None else grant_epoch,
            fields=to_wire(fields),
        )
        try:
            journal.append(record)
        except StorageError as exc:
            logger.warning("%s; the store write goes ahead unjournaled", exc.message)
            return None
        return record.id

    def settle(self, record_id: str | None) -> None:
        """The store holds the record's tokens: drop it from the journal."""
        if record_id is not None and self._ctx.journal is not None:
            self._ctx.journal.settle(record_id)

    async def replay(
        self, server_id: str | None = None, subject: str | None = None
    ) -> list[Replayed]:
        """Replay pending records (all, or one connection's), oldest first.

        Applied and superseded records are settled; a record whose write fails stays
        for the next attempt.

        Raises:
            StorageError: The store refused a replay write (after retries); the
                records stay pending.
        """
        journal = self._ctx.journal
        if journal is None:
            return []
        try:
            pending = journal.pending(server_id, subject)
        except StorageError as exc:  # an unreadable journal never blocks the grants
            logger.warning("%s; nothing replayed", exc.message)
            return []
        done: list[Replayed] = []
        for record in pending:
            server = await self._ctx.stores.servers.get(record.server_id)
            change = replay_change(record, server.grant_epoch if server else None)
            wrote: list[bool] = []
            stored = await self._grants.apply(
                record.server_id,
                record.subject,
                _tracked(change, wrote),
                retry_storage=True,
            )
            outcome: Outcome = "applied" if wrote == [True] else "superseded"
            journal.settle(record.id)
            item = Replayed(record.server_id, record.subject, record.kind, outcome)
            done.append(item)
            self.replayed.append(item)
            logger.info(
                "token journal: %s record of connection %s/%s %s",
                record.kind,
                record.server_id,
                record.subject,
                outcome,
            )
            await self._ctx.auditor.record(
                "connection.journal_replay",
                actor=None,
                target_type="connection",
                target_id=f"{record.server_id}:{record.subject}",
                server_id=record.server_id,
                after={
                    "kind": record.kind,
                    "outcome": outcome,
                    "status": stored.status,
                },
            )
        return done
