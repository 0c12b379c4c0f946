"""In-process named locks (the :class:`~tether.store.base.LockProvider` for one process).

Used in front of the lease-row locks (``store/lease.py``) of every backend so
that tasks of one process queue here instead of polling the database. A Redis lock for
scale-out implements the same Protocol later.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from tether.errors import StorageError

__all__ = ["LocalLockProvider"]


class LocalLockProvider:
    """Per-key :class:`asyncio.Lock` objects, dropped when nobody holds or waits.

    Not re-entrant: a task that takes a key it already holds waits for the timeout, as
    it would with the PostgreSQL and Redis providers.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def lock(
        self,
        key: str,
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - the LockProvider Protocol takes it
    ) -> AsyncIterator[None]:
        """Hold ``key`` exclusively for the ``async with`` block.

        Raises:
            StorageError: The lock was not free within ``timeout`` seconds.
        """
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            try:
                with anyio.fail_after(timeout):
                    await lock.acquire()
            except TimeoutError:
                raise StorageError(
                    f"lock {key!r} was not released within {timeout:g} s",
                    hint="another task is holding it; retry later",
                ) from None
            try:
                yield
            finally:
                lock.release()
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
