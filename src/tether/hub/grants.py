"""The one writer of connection records (design-notes D3.3; S10).

Every change to a :class:`~tether.store.base.Connection` - connect completion, refresh
(browser and machine grants), step-up, failure, disconnect, configuration change - goes
through :meth:`GrantWriter.apply`:

1. read the stored record;
2. apply a *pure* change (a function of the current record, built by the ``*_change``
   helpers below, which go through :func:`~tether.hub.status.transition`);
3. write it with compare-and-set on ``version``;
4. on a conflict, read again and re-apply the same change to what a peer wrote (that is
   the merge: each change states what it needs from the record, e.g. "only if the
   refresh token I used is still the stored one"), a bounded number of times.

Work that talks to an authorization server takes the connection's lease first
(:meth:`GrantWriter.lease`, a cross-process lock on a lease row), so only one process
refreshes a grant at a time, and the answer's persist retries storage failures before
giving up. No other module calls ``stores.connections.save``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta

import anyio

from tether.errors import StorageError, TetherError, VersionConflict
from tether.hub.context import HubContext
from tether.hub.status import Event, transition
from tether.store.base import Connection

__all__ = [
    "TRANSIENT_OAUTH",
    "Change",
    "GrantWriter",
    "cleared_change",
    "dead_grant_change",
    "event_change",
    "failure_fields",
    "refreshed_change",
    "step_up_change",
]

TRANSIENT_OAUTH = frozenset({"server_error", "temporarily_unavailable"})
"""RFC 6749 §5.2 / §4.1.2.1 codes by which an AS says it is failing, not the grant."""

Change = Callable[[Connection], Connection | None]
"""A pure change: the record to write, given the stored one; ``None`` writes nothing."""

_MAX_ERROR = 1000
_CONFLICT_ATTEMPTS = 8
_STORAGE_ATTEMPTS = 5
LEASE_TIMEOUT = 60.0
"""How long a caller waits for a peer's refresh before giving up (seconds)."""


def failure_fields(error: TetherError, now: datetime) -> dict[str, object]:
    """The ``last_error*`` columns for ``error``.

    Bounded, and without secrets: error messages never carry tokens.
    """
    return {
        "last_error_code": error.code,
        "last_error": str(error)[:_MAX_ERROR],
        "last_error_at": now,
    }


def event_change(event: Event, now: datetime, **changes: object) -> Change:
    """Apply ``event`` through the status table, with ``changes``.

    A refused pair writes nothing: the record moved on to a status where the event no
    longer applies.
    """

    def change(current: Connection) -> Connection | None:
        try:
            status = transition(current.status, event)
        except TetherError:
            return None
        return current.replace(status=status, updated_at=now, **changes)

    return change


def refreshed_change(
    used_refresh_token: str | None, now: datetime, **fields: object
) -> Change:
    """Store a refresh's answer, only over the grant the refresh token came from.

    If the stored refresh token is no longer the one that was sent, a reconnect or
    disconnect replaced the grant meanwhile, and that newer state wins.
    """

    def change(current: Connection) -> Connection | None:
        if _secret(current.refresh_token) != used_refresh_token:
            return None
        return event_change(
            "refreshed",
            now,
            refreshed_at=now,
            retry_at=None,
            last_error_code=None,
            last_error=None,
            last_error_at=None,
            **fields,
        )(current)

    return change


def dead_grant_change(
    refused_refresh_token: str | None, error: TetherError, now: datetime
) -> Change:
    """Drop a grant the AS refused, unless a peer already replaced the refused token.

    A peer's fresh tokens are adopted, never wiped (issue 7 item 4).
    """

    def change(current: Connection) -> Connection | None:
        if (
            refused_refresh_token is not None
            and _secret(current.refresh_token) != refused_refresh_token
        ):
            return None
        return event_change(
            "invalid_grant",
            now,
            access_token=None,
            refresh_token=None,
            expires_at=None,
            retry_at=None,
            **failure_fields(error, now),
        )(current)

    return change


def step_up_change(scopes: tuple[str, ...], now: datetime) -> Change:
    """Record the scopes a 403 ``insufficient_scope`` asked for (RFC 6750 §3.1).

    The status stays (SCP-6; status rule 4).
    """

    def change(current: Connection) -> Connection | None:
        if current.status == "disconnected" or set(scopes) <= set(
            current.required_scopes
        ):
            return None
        # the next connect asks for what was granted, what was missing and this
        needed = tuple(
            dict.fromkeys((*current.scopes, *current.required_scopes, *scopes))
        )
        return event_change("step_up", now, required_scopes=needed)(current)

    return change


def cleared_change(event: Event, now: datetime, reason: str | None) -> Change:
    """Forget the grant (disconnect or configuration change); the record stays."""
    return event_change(
        event,
        now,
        access_token=None,
        refresh_token=None,
        dpop_key=None,
        expires_at=None,
        retry_at=None,
        scopes=(),
        required_scopes=(),
        last_error_code=None,
        last_error=reason[:_MAX_ERROR] if reason else None,
        last_error_at=None,
    )


def _secret(value: object) -> str | None:
    get = getattr(value, "get_secret_value", None)
    return None if get is None else str(get())


class GrantWriter:
    """Reads, leases and writes connection records; the only writer there is."""

    def __init__(self, ctx: HubContext) -> None:
        self._ctx = ctx

    async def read(self, server_id: str, subject: str) -> Connection:
        """The stored record, or an empty disconnected one."""
        stored = await self._ctx.stores.connections.get(server_id, subject)
        return stored or Connection(server_id=server_id, subject=subject)

    def lease(
        self, server_id: str, subject: str, *, timeout: float = LEASE_TIMEOUT
    ) -> AbstractAsyncContextManager[None]:
        """The connection's cross-process lease, for work that talks to an AS."""
        return self._ctx.stores.locks.lock(
            f"refresh:{server_id}:{subject}",
            timeout=timeout,
        )

    async def apply(
        self,
        server_id: str,
        subject: str,
        change: Change,
        *,
        retry_storage: bool = False,
    ) -> Connection:
        """Read, change, compare-and-set; on a conflict merge and try again.

        Args:
            server_id: The server.
            subject: The connection subject.
            change: The pure change (see the ``*_change`` helpers).
            retry_storage: Retry a failing store too, with a short back-off: for
                writes whose loss would lose tokens an AS already issued.

        Returns:
            The record as stored afterwards (unchanged when ``change`` wrote nothing).

        Raises:
            VersionConflict: Peers kept writing (after several attempts).
            StorageError: The store failed (after retries when ``retry_storage``).
        """
        failures = 0
        for _ in range(_CONFLICT_ATTEMPTS):
            try:
                current = await self.read(server_id, subject)
                updated = change(current)
                if updated is None:
                    return current
                return await self._ctx.stores.connections.save(
                    updated, expected_version=current.version
                )
            except VersionConflict:
                continue
            except StorageError:
                failures += 1
                if not retry_storage or failures >= _STORAGE_ATTEMPTS:
                    raise
                await anyio.sleep(0.05 * 2**failures)
        raise VersionConflict(
            f"connection {server_id}/{subject} kept changing; try again",
            hint="another worker is writing this connection right now",
        )

    def backoff(self, current: Connection, retry_after: float | None) -> datetime:
        """When a transiently failed refresh may be tried again.

        ``Retry-After`` when the AS sent one (RFC 9110 §10.2.3), else doubling from
        5 s per consecutive failure, at most 5 minutes.
        """
        now = self._ctx.clock.now()
        if retry_after is not None:
            return now + timedelta(seconds=min(max(retry_after, 1.0), 3600.0))
        previous = timedelta(seconds=5)
        if (
            current.status == "refresh_failed"
            and current.retry_at is not None
            and current.last_error_at is not None
        ):
            previous = max(previous, (current.retry_at - current.last_error_at) * 2)
        return now + min(previous, timedelta(minutes=5))
