"""Background jobs, each run by one process at a time (issue 10 item 6).

Every process of an installation may run :meth:`Jobs.forever`; a job's round runs only
in the process holding its lease (``job:<name>`` in the store's ``leases``), so one
worker refreshes each due connection however many workers there are. The holder extends
its lease every round; if it dies, another process takes the job over when the lease
lapses (two intervals).

Jobs:

* ``refresh`` (every 30 s): proactive refresh of connections near expiry (RFR-2), through
  :meth:`Connections.refresh` (single-flight, leased, classified failures). Connections
  that are ``disconnected`` or ``needs_reauth`` are never touched, and one that backs off
  after a transient failure waits for its ``retry_at``.
* ``tools`` (hourly): the tool-list refresh of every server, which records each server's
  health (:meth:`Tether.sweep`).
* ``health`` (every 5 minutes): re-checks the servers whose last recorded health is not
  ``ok`` (an error, or never checked), so a recovered server shows as healthy within
  minutes rather than at the next hourly refresh; healthy servers are skipped.

Each job's :class:`JobStatus` (last round's start, end, outcome and counts, totals, next
run) is what ``/metrics`` and the admin Jobs page show, with the lease's current holder
(:meth:`Jobs.report`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import anyio

from tether.errors import TetherError
from tether.store.lease import holder_id

if TYPE_CHECKING:
    from tether.hub.tether import Tether

__all__ = ["JOB_NAMES", "JobReport", "JobStatus", "Jobs"]

log = logging.getLogger(__name__)

REFRESH_EVERY = timedelta(seconds=30)
TOOLS_EVERY = timedelta(hours=1)
HEALTH_EVERY = timedelta(minutes=5)
JOB_NAMES = ("refresh", "tools", "health")
_CONCURRENCY = 8

Outcome = Literal["ok", "partial", "failed"]


@dataclass(slots=True)
class RoundCounts:
    """What one round did to its items (connections or servers)."""

    ok: int = 0  # refreshed, listed, found healthy again
    failed: int = 0
    skipped: int = 0  # not due, backing off, refreshed meanwhile, healthy, disabled


@dataclass(slots=True)
class JobStatus:
    """What a job did in this process (metrics and the admin Jobs page read it)."""

    name: str
    every: timedelta
    runs: int = 0
    lease_skips: int = 0  # rounds another process held the job's lease
    last_started: datetime | None = None
    last_finished: datetime | None = None
    last_outcome: Outcome | None = None
    last_error: str | None = None  # the error code that failed the whole round
    last: RoundCounts = field(default_factory=RoundCounts)
    next_run: datetime | None = None
    # totals over every round run here
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def count_failure(self, counts: RoundCounts, exc: TetherError) -> None:
        """Count one item that failed, by its error code."""
        counts.failed += 1
        self.errors[exc.code] = self.errors.get(exc.code, 0) + 1


@dataclass(frozen=True, slots=True)
class JobReport:
    """A job's status with the lease's current holder (read from the store)."""

    status: JobStatus
    holder: str | None  # None: nobody holds the lease now
    held_here: bool


class Jobs:
    """The installation's background jobs for one :class:`Tether`."""

    def __init__(self, tether: Tether, *, holder: str | None = None) -> None:
        self._tether = tether
        self.holder = holder or holder_id()
        self.status = {
            "refresh": JobStatus("refresh", REFRESH_EVERY),
            "tools": JobStatus("tools", TOOLS_EVERY),
            "health": JobStatus("health", HEALTH_EVERY),
        }

    async def run_once(self, name: str, *, every: timedelta) -> bool:
        """Run one round of ``name`` if this process holds (or takes) its lease.

        Returns:
            Whether this process ran the round.

        Raises:
            TetherError: The round failed as a whole (the store failed); it is
                recorded as the job's last outcome first.
        """
        status = self.status[name]
        status.every = every
        started = self._tether.ctx.clock.now()
        status.next_run = started + every
        leases = self._tether.stores.leases
        if leases is not None and not await leases.acquire(
            f"job:{name}", self.holder, ttl=every * 2
        ):
            status.lease_skips += 1
            return False
        work: dict[str, Callable[[RoundCounts], Awaitable[None]]] = {
            "refresh": self.refresh_due,
            "tools": self.refresh_tools,
            "health": self.check_health,
        }
        counts = RoundCounts()
        status.last_started, status.last_finished = started, None
        try:
            await work[name](counts)
        except TetherError as exc:
            self._finish(status, counts, "failed", exc.code)
            raise
        self._finish(status, counts, "partial" if counts.failed else "ok", None)
        return True

    def _finish(
        self,
        status: JobStatus,
        counts: RoundCounts,
        outcome: Outcome,
        error: str | None,
    ) -> None:
        status.runs += 1
        status.last_finished = self._tether.ctx.clock.now()
        status.last_outcome, status.last_error, status.last = outcome, error, counts
        status.ok += counts.ok
        status.failed += counts.failed
        status.skipped += counts.skipped

    async def report(self) -> list[JobReport]:
        """Every job's status with the worker holding its lease now.

        Raises:
            StorageError: The lease store failed.
        """
        leases = self._tether.stores.leases
        out = []
        for name, status in self.status.items():
            holder = await leases.holder(f"job:{name}") if leases else self.holder
            out.append(JobReport(status, holder, holder == self.holder))
        return out

    async def forever(
        self,
        *,
        refresh_every: timedelta = REFRESH_EVERY,
        tools_every: timedelta = TOOLS_EVERY,
        health_every: timedelta = HEALTH_EVERY,
    ) -> None:
        """Run every job until cancelled (the web service's lifespan runs this)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._loop, "refresh", refresh_every)
            tg.start_soon(self._loop, "tools", tools_every)
            tg.start_soon(self._loop, "health", health_every)

    async def _loop(self, name: str, every: timedelta) -> None:
        while True:
            try:
                await self.run_once(name, every=every)
            except TetherError as exc:  # the store failed: log, try next round
                log.warning("job %s failed: %s", name, exc)
            await anyio.sleep(every.total_seconds())

    async def refresh_due(self, counts: RoundCounts | None = None) -> None:
        """Refresh every connection whose token is due (RFR-2), a few at a time.

        A due connection still backing off (``retry_at`` ahead), of a disabled server,
        or refreshed meanwhile by a peer counts as skipped.
        """
        counts = counts if counts is not None else RoundCounts()
        tether = self._tether
        connections = tether.connections
        now = tether.ctx.clock.now()
        due = []
        for conn in await tether.stores.connections.list():
            if not (
                conn.status in ("connected", "refresh_failed", "error")
                and conn.refresh_token is not None
                and connections.needs_refresh(conn)
            ):
                continue
            if conn.retry_at is not None and conn.retry_at > now:
                counts.skipped += 1
                continue
            due.append(conn)
        limiter = anyio.CapacityLimiter(_CONCURRENCY)
        status = self.status["refresh"]

        async def one(server_id: str, subject: str) -> None:
            async with limiter:
                server = await tether.stores.servers.get(server_id)
                if server is None or not server.enabled:
                    counts.skipped += 1
                    return
                conn = await connections.get(server, subject)
                if not connections.needs_refresh(conn):
                    counts.skipped += 1
                    return  # a peer refreshed it meanwhile
                try:
                    await connections.refresh(server, subject, stale=conn)
                except TetherError as exc:  # recorded on the connection already
                    status.count_failure(counts, exc)
                    return
                counts.ok += 1

        async with anyio.create_task_group() as tg:
            for conn in due:
                tg.start_soon(one, conn.server_id, conn.subject)

    async def refresh_tools(self, counts: RoundCounts | None = None) -> None:
        """Re-list every server's tools and record its health."""
        counts = counts if counts is not None else RoundCounts()
        results = await self._tether.sweep()
        status = self.status["tools"]
        for outcome in results.values():
            if isinstance(outcome, TetherError):
                status.count_failure(counts, outcome)
            else:
                counts.ok += 1

    async def check_health(self, counts: RoundCounts | None = None) -> None:
        """Re-list the tools of every enabled shared server whose health is not ok.

        Per-user servers have no one connection to check and count as skipped, like
        healthy and disabled servers.
        """
        counts = counts if counts is not None else RoundCounts()
        tether = self._tether
        unhealthy = []
        for server in await tether.stores.servers.list():
            if not server.enabled or (
                server.auth_mode == "oauth" and server.oauth.per_user
            ):
                counts.skipped += 1
                continue
            health = await tether.stores.tools.get_health(
                server.id, tether.tools.subject(server, None)
            )
            if health is not None and health.status == "ok":
                counts.skipped += 1
                continue
            unhealthy.append(server.id)
        if not unhealthy:
            return
        results = await tether.list_tools_many(unhealthy, refresh=True)
        status = self.status["health"]
        for outcome in results.values():
            if isinstance(outcome, TetherError):
                status.count_failure(counts, outcome)
            else:
                counts.ok += 1
