"""A :class:`~tether.store.base.LockProvider` on PostgreSQL session advisory locks.

Refresh must be single-flight across workers (design.md §3.3). Each key maps to a 64-bit
advisory lock id; the lock is held on a dedicated pooled connection in autocommit mode for
the ``async with`` block, so no transaction stays open meanwhile, and it is released
explicitly (or by PostgreSQL when that connection dies). Tasks of one process first queue
on an in-process lock, so only one connection per key and process polls the database.

``pg_try_advisory_lock`` is polled with a growing back-off until the timeout instead of
blocking in ``pg_advisory_lock``, so the timeout works without server-side settings.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tether.errors import StorageError
from tether.store.database import storage_errors
from tether.store.locks import LocalLockProvider

__all__ = ["PostgresLockProvider", "advisory_key"]

_NAMESPACE = b"tether-lock:"


def advisory_key(key: str) -> int:
    """The signed 64-bit advisory lock id for ``key``."""
    digest = hashlib.sha256(_NAMESPACE + key.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresLockProvider:
    """Named locks shared by every process using the same database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
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
            StorageError: Not acquired within ``timeout`` seconds, or the database failed.
        """
        deadline = time.monotonic() + timeout
        lock_id = advisory_key(key)
        async with self._local.lock(key, timeout=timeout):
            with storage_errors():
                conn = await self._engine.connect()
            try:
                with storage_errors():
                    await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await self._acquire(conn, lock_id, key, deadline, waited=timeout)
                try:
                    yield
                finally:
                    with storage_errors():
                        await conn.execute(
                            sa.select(sa.func.pg_advisory_unlock(lock_id))
                        )
            finally:
                with storage_errors():
                    await conn.close()

    @staticmethod
    async def _acquire(
        conn: AsyncConnection, lock_id: int, key: str, deadline: float, *, waited: float
    ) -> None:
        delay = 0.01
        while True:
            got = await conn.scalar(sa.select(sa.func.pg_try_advisory_lock(lock_id)))
            if got:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StorageError(
                    f"lock {key!r} was not released within {waited:g} s",
                    hint="another worker is holding it; retry later",
                )
            await anyio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.25)
