"""ServerCache: concurrent misses share one lookup; a change is never cached stale."""

from __future__ import annotations

import anyio
import pytest

from hub.conftest import FakeClock
from tether.errors import NotFound
from tether.hub.cache import SERVER_TTL, ServerCache
from tether.store.base import ServerRecord


class Store:
    """A lookup that waits for ``release`` and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = anyio.Event()
        self.record = ServerRecord(id="s1", name="one", url="https://one.example/mcp")
        self.fail = False

    async def lookup(self, ref: str) -> ServerRecord:
        self.calls += 1
        await self.release.wait()
        if self.fail:
            raise NotFound(f"no server '{ref}'")
        return self.record


async def gather(
    cache: ServerCache, store: Store, n: int
) -> list[ServerRecord | Exception]:
    """``n`` concurrent gets, all in flight before the store answers."""
    results: list[ServerRecord | Exception] = []

    async def one() -> None:
        try:
            results.append(await cache.get("one"))
        except NotFound as exc:
            results.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        store.release.set()
    return results


@pytest.fixture
def store() -> Store:
    return Store()


async def test_concurrent_misses_share_one_lookup(store: Store) -> None:
    clock = FakeClock()
    cache = ServerCache(store.lookup, clock)
    results = await gather(cache, store, 8)
    assert results == [store.record] * 8
    assert store.calls == 1
    await cache.get("one")
    assert store.calls == 1  # cached
    clock.advance(SERVER_TTL)
    store.release = anyio.Event()
    assert await gather(cache, store, 8) == [store.record] * 8
    assert store.calls == 2  # the lapse costs one lookup, not eight


async def test_a_failed_lookup_is_not_shared_or_cached(store: Store) -> None:
    store.fail = True
    cache = ServerCache(store.lookup, FakeClock())
    results = await gather(cache, store, 3)
    assert all(isinstance(r, NotFound) for r in results)
    assert store.calls == 3  # the leader failed, so each waiter asked itself
    store.fail = False
    assert await cache.get("one") == store.record


async def test_a_change_during_a_lookup_is_not_cached_stale(store: Store) -> None:
    cache = ServerCache(store.lookup, FakeClock())
    old = store.record
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.get, "one")
        await anyio.wait_all_tasks_blocked()
        cache.forget("s1")  # e.g. the server was renamed while the store was read
        store.record = old.replace(url="https://new.example/mcp")
        store.release.set()
    assert store.calls == 1
    assert (await cache.get("one")).url == "https://new.example/mcp"
    assert store.calls == 2
