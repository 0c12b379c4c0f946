"""Group commit for tool lists and health (issue 9, G-31).

A toolset's first view lists many servers at once; each finished server has a tool list
and a health record to store. Written one server at a time that is two write
transactions per server, and on SQLite concurrent writers wait out each other's busy
timeout. :class:`CacheWriter` lets a caller queue its records and then takes the write
lock: whoever holds it writes *everything queued so far* (at most :data:`BATCH_LIMIT`
servers) in one transaction (``ToolCacheStore.put_many``), so the writes cost about one
transaction per batch while the network part of the fan-out carries on.

Every caller still returns only once its own records are committed (or failed), so
nothing a caller has been told is stored can be lost; a crash loses at most the queued
cache and health, which the next listing fetches again, never a grant (grants are
written elsewhere, one at a time). A batch that fails (e.g. one server deleted in the
meantime, ``NotFound``) is written again one server at a time, so one server's failure
is reported to its own caller only.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from tether.store.base import ServerHealth, ToolCacheEntry, ToolCacheStore

__all__ = ["BATCH_LIMIT", "CacheWriter"]

BATCH_LIMIT = 64
"""Most servers whose records one transaction writes."""


@dataclass(slots=True)
class _Queued:
    entry: ToolCacheEntry | None
    health: ServerHealth
    done: bool = False
    error: Exception | None = None


class CacheWriter:
    """Batched, ordered writes of tool lists and health (see the module docstring)."""

    def __init__(self, store: ToolCacheStore, *, limit: int = BATCH_LIMIT) -> None:
        self._store = store
        self._limit = max(1, limit)
        self._queue: list[_Queued] = []
        self._lock = anyio.Lock()
        self.transactions = 0
        """Write transactions issued so far (for tests and benchmarks)."""

    async def write(self, entry: ToolCacheEntry | None, health: ServerHealth) -> None:
        """Store ``entry`` (if any) and ``health``; return once they are committed.

        Shielded from cancellation: a caller's deadline never leaves a batch half
        written or another caller's records unwritten.

        Raises:
            TetherError: The store refused this caller's records (``NotFound`` for a
                deleted server, ``StorageError``).
        """
        queued = _Queued(entry, health)
        self._queue.append(queued)
        with anyio.CancelScope(shield=True):
            async with self._lock:
                while not queued.done:
                    batch = self._queue[: self._limit]
                    del self._queue[: self._limit]
                    await self._flush(batch)
        if queued.error is not None:
            raise queued.error

    async def _flush(self, batch: list[_Queued]) -> None:
        try:
            await self._put(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:
                for queued in batch:
                    try:
                        await self._put([queued])
                    except Exception as one:
                        queued.error = one
        finally:
            for queued in batch:
                queued.done = True

    async def _put(self, batch: list[_Queued]) -> None:
        self.transactions += 1
        await self._store.put_many(
            [q.entry for q in batch if q.entry is not None], [q.health for q in batch]
        )
