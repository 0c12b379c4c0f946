"""Background jobs, each run by one process at a time (issue 10 item 6).

Every process of an installation may run :meth:`Jobs.forever`; a job's round runs only
in the process holding its lease (``job:<name>`` in the store's ``leases``), so one
worker refreshes each due connection however many workers there are. The holder extends
its lease every round; if it dies, another process takes the job over when the lease
lapses (two intervals).

Jobs:

* ``refresh``: proactive refresh of connections near expiry (RFR-2), through
  :meth:`Connections.refresh` (single-flight, leased, classified failures). Connections
  that are ``disconnected`` or ``needs_reauth`` are never touched, and one that backs off
  after a transient failure waits for its ``retry_at``.
* ``tools``: the hourly tool-list refresh and health check of every server
  (:meth:`Tether.sweep`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import anyio

from tether.errors import TetherError
from tether.store.lease import holder_id

if TYPE_CHECKING:
    from tether.hub.tether import Tether

__all__ = ["JobStatus", "Jobs"]

log = logging.getLogger(__name__)

REFRESH_EVERY = timedelta(seconds=30)
TOOLS_EVERY = timedelta(hours=1)
_CONCURRENCY = 8


@dataclass(slots=True)
class JobStatus:
    """What a job did in this process (metrics and admin pages read it)."""

    name: str
    runs: int = 0
    skipped: int = 0  # rounds another process held the job's lease
    last_run: datetime | None = None
    ok: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Jobs:
    """The installation's background jobs for one :class:`Tether`."""

    def __init__(self, tether: Tether, *, holder: str | None = None) -> None:
        self._tether = tether
        self.holder = holder or holder_id()
        self.status = {name: JobStatus(name) for name in ("refresh", "tools")}

    async def run_once(self, name: str, *, every: timedelta) -> bool:
        """Run one round of ``name`` if this process holds (or takes) its lease.

        Returns:
            Whether this process ran the round.
        """
        leases = self._tether.stores.leases
        if leases is not None and not await leases.acquire(
            f"job:{name}", self.holder, ttl=every * 2
        ):
            self.status[name].skipped += 1
            return False
        work: Callable[[], Awaitable[None]] = (
            self.refresh_due if name == "refresh" else self.refresh_tools
        )
        await work()
        status = self.status[name]
        status.runs += 1
        status.last_run = self._tether.ctx.clock.now()
        return True

    async def forever(
        self,
        *,
        refresh_every: timedelta = REFRESH_EVERY,
        tools_every: timedelta = TOOLS_EVERY,
    ) -> None:
        """Run both jobs until cancelled (the web service's lifespan runs this)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._loop, "refresh", refresh_every)
            tg.start_soon(self._loop, "tools", tools_every)

    async def _loop(self, name: str, every: timedelta) -> None:
        while True:
            try:
                await self.run_once(name, every=every)
            except TetherError as exc:  # the store failed: log, try next round
                log.warning("job %s failed: %s", name, exc)
            await anyio.sleep(every.total_seconds())

    async def refresh_due(self) -> None:
        """Refresh every connection whose token is due (RFR-2), a few at a time."""
        tether = self._tether
        connections = tether.connections
        now = tether.ctx.clock.now()
        due = [
            conn
            for conn in await tether.stores.connections.list()
            if conn.status in ("connected", "refresh_failed", "error")
            and conn.refresh_token is not None
            and connections.needs_refresh(conn)
            and (conn.retry_at is None or conn.retry_at <= now)
        ]
        limiter = anyio.CapacityLimiter(_CONCURRENCY)
        status = self.status["refresh"]

        async def one(server_id: str, subject: str) -> None:
            async with limiter:
                server = await tether.stores.servers.get(server_id)
                if server is None or not server.enabled:
                    return
                conn = await connections.get(server, subject)
                if not connections.needs_refresh(conn):
                    return  # a peer refreshed it meanwhile
                try:
                    await connections.refresh(server, subject, stale=conn)
                except TetherError as exc:  # recorded on the connection already
                    status.failed += 1
                    status.errors[exc.code] = status.errors.get(exc.code, 0) + 1
                    return
                status.ok += 1

        async with anyio.create_task_group() as tg:
            for conn in due:
                tg.start_soon(one, conn.server_id, conn.subject)

    async def refresh_tools(self) -> None:
        """Re-list every server's tools and record its health."""
        results = await self._tether.sweep()
        status = self.status["tools"]
        for outcome in results.values():
            if isinstance(outcome, TetherError):
                status.failed += 1
                status.errors[outcome.code] = status.errors.get(outcome.code, 0) + 1
            else:
                status.ok += 1
