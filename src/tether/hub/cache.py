"""Short-lived in-process caches for the tool-call hot path (issue #3).

A tool call used to read the server record (by id, then by name), the header credential
and the connection from the store, and decrypt them, on every call. These caches keep
what the last read returned for a short, bounded time on the hub's clock.

Invalidation: this worker drops entries itself when a server is updated or deleted, and
when a grant is connected, refreshed by a reconnect or disconnected (the hub's
``ServerService.on_change``, ``Connections.on_change`` and ``Tether._server_changed``
hooks). A change made by *another* worker shows up here after at most
:data:`SERVER_TTL`; a cross-process invalidation comes with the Redis backend.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

import anyio

from tether.hub.clock import Clock
from tether.store.base import ServerRecord

__all__ = ["SERVER_TTL", "ServerCache", "TTLCache", "ViewCache"]

SERVER_TTL = timedelta(seconds=5)
"""How long another worker's change to a server may go unseen by this worker."""

_K = TypeVar("_K")
_V = TypeVar("_V")


class TTLCache(Generic[_K, _V]):
    """A dict whose entries lapse ``ttl`` after they were stored (on ``clock``)."""

    def __init__(self, clock: Clock, ttl: timedelta, *, max_entries: int = 1024):
        self._clock = clock
        self._ttl = ttl
        self._max = max_entries
        self._entries: dict[_K, tuple[_V, datetime]] = {}

    def get(self, key: _K) -> _V | None:
        """The live value for ``key``, or ``None``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, until = entry
        if self._clock.now() >= until:
            del self._entries[key]
            return None
        return value

    def put(self, key: _K, value: _V) -> None:
        """Store ``value`` for ``ttl``; the oldest entry goes when the cache is full."""
        if key not in self._entries and len(self._entries) >= self._max:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (value, self._clock.now() + self._ttl)

    def discard(self, match: Callable[[_K, _V], bool]) -> None:
        """Drop every entry for which ``match(key, value)`` is true."""
        for key in [k for k, (v, _) in self._entries.items() if match(k, v)]:
            del self._entries[key]

    def clear(self) -> None:
        """Drop everything."""
        self._entries.clear()


class ServerCache:
    """Server records by id or name, for :data:`SERVER_TTL`.

    Args:
        lookup: The uncached lookup by id or name (``ServerService.get``); raises
            ``NotFound``, which is not cached.
        clock: The hub's clock.
    """

    def __init__(
        self, lookup: Callable[[str], Awaitable[ServerRecord]], clock: Clock
    ) -> None:
        self._lookup = lookup
        self._cache: TTLCache[str, ServerRecord] = TTLCache(clock, SERVER_TTL)
        self._flights: dict[str, _Flight] = {}
        self._generation = 0

    async def get(self, ref: str) -> ServerRecord:
        """The server with this id or name.

        Concurrent misses for one ``ref`` share one lookup: when an entry lapses under
        load, one call reads the store and the others wait for its answer, instead of
        every in-flight call reading it at once (issue #3, the p99 of concurrent
        calls). A failed lookup is not shared: each waiter then looks up itself.

        Raises:
            NotFound: No such server.
        """
        server = self._cache.get(ref)
        if server is not None:
            return server
        flight = self._flights.get(ref)
        if flight is not None:
            await flight.done.wait()
            if flight.server is not None:
                return flight.server
            return await self._lookup(ref)
        flight = self._flights[ref] = _Flight()
        generation = self._generation
        try:
            server = await self._lookup(ref)
            if generation == self._generation:  # no change arrived meanwhile
                self._cache.put(ref, server)
            flight.server = server
            return server
        finally:
            if self._flights.get(ref) is flight:
                del self._flights[ref]
            flight.done.set()

    def forget(self, server_id: str) -> None:
        """Drop a server's entries (under its id, its name and any old name).

        A lookup in flight may have read the old record: its answer still goes to the
        calls already waiting for it, but is not cached, and later calls start afresh.
        """
        self._cache.discard(lambda _ref, server: server.id == server_id)
        self._generation += 1
        self._flights.clear()


class _Flight:
    """One lookup in progress, and the calls waiting for it."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.server: ServerRecord | None = None


class ViewCache(Generic[_K, _V]):
    """Computed values (toolset views) kept until an event invalidates them (issue 9).

    Each entry carries *tags* (the toolset's id, the ids of the servers it names);
    :meth:`drop` removes every entry with a tag. An entry older than ``ttl`` is still
    served, marked stale, so the caller can rebuild it off the hot path: that bounds
    how long a change made by another worker (which sends this worker no event) goes
    unseen. Builds are single-flight per key, and a build that an invalidation
    overtook is handed to its waiters but not cached.

    Args:
        clock: The hub's clock.
        ttl: Age after which an entry is stale.
        max_entries: Bound; the oldest entry goes first.
    """

    def __init__(self, clock: Clock, ttl: timedelta, *, max_entries: int = 4096):
        self._clock = clock
        self._ttl = ttl
        self._max = max_entries
        self._entries: dict[_K, tuple[_V, frozenset[str], datetime]] = {}
        self._flights: dict[_K, _Build[_V]] = {}
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: _K) -> tuple[_V, bool] | None:
        """``(value, stale)`` for ``key``, or ``None`` when nothing is cached."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, _, built = entry
        return value, self._clock.now() - built >= self._ttl

    async def build(
        self, key: _K, make: Callable[[], Awaitable[tuple[_V, frozenset[str]]]]
    ) -> _V:
        """Run ``make`` (once for concurrent callers) and cache its value under its tags.

        Raises:
            Exception: Whatever ``make`` raised; nothing is cached then, and each
                waiter builds again itself.
        """
        flight = self._flights.get(key)
        if flight is not None:
            await flight.done.wait()
            if flight.value is not None:
                return flight.value
            return await self.build(key, make)
        flight = self._flights[key] = _Build()
        generation = self._generation
        built = self._clock.now()
        try:
            value, tags = await make()
            if generation == self._generation:  # nothing changed meanwhile
                self._put(key, value, tags, built)
            flight.value = value
            return value
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set()

    def _put(self, key: _K, value: _V, tags: frozenset[str], built: datetime) -> None:
        self._entries.pop(key, None)
        if len(self._entries) >= self._max:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (value, tags, built)

    def discard(self, key: _K) -> None:
        """Forget one entry."""
        self._entries.pop(key, None)

    def drop(self, tag: str) -> None:
        """Forget every entry tagged ``tag``; builds in flight are not cached."""
        for key in [k for k, (_, tags, _) in self._entries.items() if tag in tags]:
            del self._entries[key]
        self._generation += 1
        self._flights.clear()

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self._generation += 1
        self._flights.clear()


class _Build(Generic[_V]):
    """One build in progress, and the callers waiting for it."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: _V | None = None
