"""ServerCache: concurrent misses share one lookup; a change is never cached stale."""

from __future__ import annotations

import anyio
import pytest

from hub.conftest import FakeClock
from tether.errors import NotFound
from tether.hub.cache import SERVER_TTL, ServerCache, ViewCache
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


# ------------------------------------------------------------------ ViewCache


async def test_view_builds_are_shared_and_tagged() -> None:
    clock = FakeClock()
    views: ViewCache[str, str] = ViewCache(clock, SERVER_TTL, max_entries=2)
    release = anyio.Event()
    builds: list[str] = []

    async def make() -> tuple[str, frozenset[str]]:
        builds.append("built")
        await release.wait()
        return "view", frozenset({"toolset-1", "server-a"})

    results: list[str] = []

    async def one() -> None:
        results.append(await views.build("k", make))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert results == ["view"] * 5
    assert builds == ["built"]  # one build for five callers
    assert views.get("k") == ("view", False)
    clock.advance(SERVER_TTL)
    assert views.get("k") == ("view", True)  # stale: served, to be rebuilt
    views.drop("server-b")
    assert len(views) == 1  # another tag leaves it alone
    views.drop("server-a")
    assert views.get("k") is None


async def test_a_view_overtaken_by_an_invalidation_is_not_cached() -> None:
    views: ViewCache[str, str] = ViewCache(FakeClock(), SERVER_TTL)
    release = anyio.Event()

    async def make() -> tuple[str, frozenset[str]]:
        await release.wait()
        return "old", frozenset({"server-a"})

    async with anyio.create_task_group() as tg:
        tg.start_soon(views.build, "k", make)
        await anyio.wait_all_tasks_blocked()
        views.drop("server-a")  # the server changed while the view was being built
        release.set()
    assert views.get("k") is None


async def test_a_failed_build_is_not_cached_and_the_cache_is_bounded() -> None:
    views: ViewCache[str, str] = ViewCache(FakeClock(), SERVER_TTL, max_entries=2)

    async def fail() -> tuple[str, frozenset[str]]:
        raise NotFound("no toolset")

    with pytest.raises(NotFound):
        await views.build("k", fail)
    assert views.get("k") is None
    for key in ("a", "b", "c"):

        async def make(key: str = key) -> tuple[str, frozenset[str]]:
            return key, frozenset()

        await views.build(key, make)
    assert len(views) == 2
    assert views.get("a") is None  # the oldest went
    views.discard("b")
    views.clear()
    assert len(views) == 0
