"""Named locks on lease rows, the same on every backend (design-notes D3.3).

A :class:`LeaseLockProvider` turns a :class:`~tether.store.base.LeaseStore` into the
:class:`~tether.store.base.LockProvider` the hub takes before it refreshes a grant or
registers a client. Its rules:

1. Taking, extending and releasing a lease are one short statement each: no database
   connection is held while the holder waits for an authorization server, so a pool of
   5 connections serves any number of concurrent refreshes.
2. Tasks of one process queue on an in-process lock first, so only one task per key and
   process polls the store.
3. A holder extends its lease while it works (every third of the lease time); a holder
   that dies (SIGKILL, lost host) stops extending and loses the lease when it expires.
4. Waiting is polling with a growing back-off, bounded by the caller's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import anyio

from tether.errors import StorageError, TetherError
from tether.store.base import LeaseStore
from tether.store.locks import LocalLockProvider

__all__ = ["DEFAULT_LEASE_TTL", "LeaseLockProvider", "holder_id"]

DEFAULT_LEASE_TTL = timedelta(seconds=30)
_MAX_POLL = 0.25


def holder_id() -> str:
    """A holder name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class LeaseLockProvider:
    """Cross-process locks on a :class:`~tether.store.base.LeaseStore`."""

    def __init__(
        self,
        leases: LeaseStore,
        *,
        holder: str | None = None,
        ttl: timedelta = DEFAULT_LEASE_TTL,
    ) -> None:
        self._leases = leases
        self.holder = holder or holder_id()
        self._ttl = ttl
        self._local = LocalLockProvider()

    @asynccontextmanager
    async def lock(
        self,
        key: str,
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - the LockProvider Protocol takes it
    ) -> AsyncIterator[None]:
        """Hold ``key`` across processes for the ``async with`` block.

        Raises:
            StorageError: Not acquired within ``timeout`` seconds, or the store failed.
        """
        deadline = time.monotonic() + timeout
        async with self._local.lock(key, timeout=timeout):
            await self._acquire(key, deadline, timeout)
            keeper = asyncio.get_running_loop().create_task(self._keep(key))
            try:
                yield
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
                with anyio.CancelScope(shield=True), contextlib.suppress(TetherError):
                    # an unreleased lease expires by itself (rule 3)
                    await self._leases.release(key, self.holder)

    async def _acquire(self, key: str, deadline: float, waited: float) -> None:
        delay = 0.005
        while not await self._leases.acquire(key, self.holder, ttl=self._ttl):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StorageError(
                    f"lock {key!r} was not released within {waited:g} s",
                    hint="another worker is holding it; retry later",
                )
            await anyio.sleep(min(delay, remaining))
            delay = min(delay * 2, _MAX_POLL)

    async def _keep(self, key: str) -> None:
        """Extend the lease every third of its lifetime while the block runs."""
        period = self._ttl.total_seconds() / 3
        while True:
            await anyio.sleep(period)
            with contextlib.suppress(TetherError):  # the next period tries again
                await self._leases.acquire(key, self.holder, ttl=self._ttl)
