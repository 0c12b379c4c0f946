"""Listing connections without their secrets: pages and counts for the web service.

Reading a :class:`~tether.store.base.Connection` decrypts its tokens; a list page or a
metrics scrape needs none of them. :class:`SqlConnectionListing` reads only the plain
columns, a page at a time in primary-key order, and counts statuses with ``GROUP BY``;
:class:`StoreListing` does the same over any :class:`~tether.store.base.ConnectionStore`
(the memory backend, where nothing is expensive).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa

from tether.store import schema
from tether.store.base import Connection, ConnectionStore, Stores
from tether.store.database import SqlBackend

__all__ = [
    "ConnectionListing",
    "ConnectionSummary",
    "SqlConnectionListing",
    "StoreListing",
    "listing_of",
]


@dataclass(frozen=True, slots=True)
class ConnectionSummary:
    """A connection's plain fields (never a token)."""

    server_id: str
    subject: str
    status: str
    issuer: str | None
    client_id: str | None
    scopes: tuple[str, ...]
    required_scopes: tuple[str, ...]
    expires_at: datetime | None
    has_refresh_token: bool
    connected_at: datetime | None
    refreshed_at: datetime | None
    last_error_code: str | None
    last_error: str | None


class ConnectionListing(Protocol):
    """Pages and counts of connections."""

    async def page(
        self,
        *,
        server_ids: Sequence[str] | None,
        status: str | None,
        subject_prefix: str | None,
        limit: int,
        offset: int,
        after: tuple[str, str] | None = None,
    ) -> list[ConnectionSummary]:
        """Connections of the given servers (all when ``None``), in key order.

        ``after`` is a keyset position, (server id, subject): only later keys are
        listed, so a deep page costs what the first does (``offset`` makes the
        database walk every skipped row).
        """
        ...

    async def count_by_status(self) -> dict[str, int]:
        """How many connections have each status."""
        ...


def _summary(conn: Connection) -> ConnectionSummary:
    return ConnectionSummary(
        conn.server_id,
        conn.subject,
        conn.status,
        conn.issuer,
        conn.client_id,
        conn.scopes,
        conn.required_scopes,
        conn.expires_at,
        conn.refresh_token is not None,
        conn.connected_at,
        conn.refreshed_at,
        conn.last_error_code,
        conn.last_error,
    )


class StoreListing:
    """:class:`ConnectionListing` over any connection store (reads every record)."""

    def __init__(self, store: ConnectionStore) -> None:
        self._store = store

    async def page(
        self,
        *,
        server_ids: Sequence[str] | None,
        status: str | None,
        subject_prefix: str | None,
        limit: int,
        offset: int,
        after: tuple[str, str] | None = None,
    ) -> list[ConnectionSummary]:
        """See :class:`ConnectionListing`."""
        found = sorted(
            (
                c
                for c in await self._store.list()
                if (after is None or (c.server_id, c.subject) > after)
                and (server_ids is None or c.server_id in server_ids)
                and (status is None or c.status == status)
                and (subject_prefix is None or c.subject.startswith(subject_prefix))
            ),
            key=lambda c: (c.server_id, c.subject),
        )
        return [_summary(c) for c in found[offset : offset + limit]]

    async def count_by_status(self) -> dict[str, int]:
        """See :class:`ConnectionListing`."""
        return dict(Counter(c.status for c in await self._store.list()))


class SqlConnectionListing:
    """:class:`ConnectionListing` on the plain columns of ``connections``."""

    def __init__(self, backend: SqlBackend) -> None:
        self._b = backend
        self._t = schema.connections

    async def page(
        self,
        *,
        server_ids: Sequence[str] | None,
        status: str | None,
        subject_prefix: str | None,
        limit: int,
        offset: int,
        after: tuple[str, str] | None = None,
    ) -> list[ConnectionSummary]:
        """See :class:`ConnectionListing`; one indexed query, no decryption."""
        t = self._t
        query = sa.select(
            *(t.c[name] for name in _PLAIN),
            t.c.refresh_token_enc.is_not(None).label("has_refresh_token"),
        ).order_by(t.c.server_id, t.c.subject)
        if server_ids is not None:
            query = query.where(t.c.server_id.in_(list(server_ids)))
        if status is not None:
            query = query.where(t.c.status == status)
        if after is not None:
            # a row-value comparison: PostgreSQL turns it into an index range scan
            query = query.where(sa.tuple_(t.c.server_id, t.c.subject) > after)
        if subject_prefix is not None:
            query = query.where(t.c.subject.startswith(subject_prefix, autoescape=True))
        rows = await self._b.fetch_all(query.limit(limit).offset(offset))
        return [_row_summary(r) for r in rows]

    async def count_by_status(self) -> dict[str, int]:
        """See :class:`ConnectionListing`."""
        t = self._t
        query = sa.select(t.c.status, sa.func.count()).group_by(t.c.status)
        async with self._b.begin() as conn:
            rows = (await conn.execute(query)).all()
        return {str(status): int(n) for status, n in rows}


_PLAIN = (
    "server_id",
    "subject",
    "status",
    "issuer",
    "client_id",
    "scopes",
    "required_scopes",
    "expires_at",
    "connected_at",
    "refreshed_at",
    "last_error_code",
    "last_error",
)


def _row_summary(row: Any) -> ConnectionSummary:
    return ConnectionSummary(
        server_id=row["server_id"],
        subject=row["subject"],
        status=row["status"],
        issuer=row["issuer"],
        client_id=row["client_id"],
        scopes=tuple(row["scopes"]),
        required_scopes=tuple(row["required_scopes"]),
        expires_at=row["expires_at"],
        has_refresh_token=bool(row["has_refresh_token"]),
        connected_at=row["connected_at"],
        refreshed_at=row["refreshed_at"],
        last_error_code=row["last_error_code"],
        last_error=row["last_error"],
    )


def listing_of(stores: Stores) -> ConnectionListing:
    """The backend's own listing, or one over its connection store."""
    return stores.listing or StoreListing(stores.connections)
