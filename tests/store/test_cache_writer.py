"""Group commit of tool lists and health (``hub/writes.py``, G-31) on every backend.

The first batch is held open by a gate around the real store, so the other writers are
known to be queued (``wait_all_tasks_blocked``) before it commits: no timing involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import anyio
import pytest

from tether.errors import NotFound, StorageError
from tether.hub.writes import CacheWriter
from tether.store.base import SHARED, ServerHealth, ToolCacheEntry, ToolCacheStore

from .conftest import Harness
from .contract import server

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class GatedStore:
    """The real tool cache; the first ``put_many`` waits for ``release``."""

    def __init__(self, inner: ToolCacheStore) -> None:
        self.inner = inner
        self.release = anyio.Event()
        self.batches: list[list[str]] = []

    async def put_many(
        self, entries: Sequence[ToolCacheEntry], health: Sequence[ServerHealth]
    ) -> None:
        self.batches.append([h.server_id for h in health])
        if len(self.batches) == 1:
            await self.release.wait()
        await self.inner.put_many(entries, health)


def entry(server_id: str) -> ToolCacheEntry:
    return ToolCacheEntry(server_id, SHARED, [{"name": f"t-{server_id}"}], T0)


def ok(server_id: str) -> ServerHealth:
    return ServerHealth(server_id, SHARED, status="ok", checked_at=T0)


async def servers(harness: Harness, count: int) -> list[str]:
    ids = [f"s{n}" for n in range(count)]
    for server_id in ids:
        await harness.stores.servers.add(server(server_id, name=f"Server {server_id}"))
    return ids


async def run_gated(
    writer: CacheWriter, gate: GatedStore, ids: Sequence[str]
) -> dict[str, Exception | None]:
    """``ids[0]`` opens the first batch; the rest queue behind it, then all commit."""
    outcome: dict[str, Exception | None] = {}

    async def one(server_id: str) -> None:
        try:
            await writer.write(entry(server_id), ok(server_id))
            outcome[server_id] = None
        except Exception as exc:  # the test inspects it
            outcome[server_id] = exc

    with anyio.fail_after(30):  # hang guard only
        async with anyio.create_task_group() as group:
            for server_id in ids:
                group.start_soon(one, server_id)
                await anyio.wait_all_tasks_blocked()
            gate.release.set()
    return outcome


async def test_queued_writers_share_one_transaction(harness: Harness) -> None:
    ids = await servers(harness, 10)
    gate = GatedStore(harness.stores.tools)
    writer = CacheWriter(gate)  # type: ignore[arg-type]
    outcome = await run_gated(writer, gate, ids)
    assert outcome == dict.fromkeys(ids)
    assert gate.batches == [ids[:1], ids[1:]]
    assert writer.transactions == 2
    for server_id in ids:
        cached = await harness.stores.tools.get(server_id, SHARED)
        assert cached is not None
        assert list(cached.tools) == [{"name": f"t-{server_id}"}]
        assert await harness.stores.tools.get_health(server_id, SHARED) == ok(server_id)


async def test_batches_are_bounded(harness: Harness) -> None:
    ids = await servers(harness, 6)
    gate = GatedStore(harness.stores.tools)
    writer = CacheWriter(gate, limit=2)  # type: ignore[arg-type]
    outcome = await run_gated(writer, gate, ids)
    assert outcome == dict.fromkeys(ids)
    assert gate.batches == [ids[:1], ids[1:3], ids[3:5], ids[5:]]


async def test_a_failed_batch_fails_only_its_own_writer(harness: Harness) -> None:
    ids = await servers(harness, 3)
    gate = GatedStore(harness.stores.tools)
    writer = CacheWriter(gate)  # type: ignore[arg-type]
    outcome = await run_gated(writer, gate, [ids[0], ids[1], "ghost", ids[2]])
    assert isinstance(outcome.pop("ghost"), NotFound)
    assert outcome == dict.fromkeys(ids)
    # the batch of three failed as a whole, then went one server at a time
    assert gate.batches == [
        [ids[0]],
        [ids[1], "ghost", ids[2]],
        [ids[1]],
        ["ghost"],
        [ids[2]],
    ]
    for server_id in ids:
        assert await harness.stores.tools.get(server_id, SHARED) is not None
    assert await harness.stores.tools.get_health("ghost", SHARED) is None


async def test_health_without_a_list(harness: Harness) -> None:
    [server_id] = await servers(harness, 1)
    writer = CacheWriter(harness.stores.tools)
    failed = ServerHealth(server_id, SHARED, status="error", last_error="boom")
    await writer.write(None, failed)
    assert await harness.stores.tools.get_health(server_id, SHARED) == failed
    assert await harness.stores.tools.get(server_id, SHARED) is None


async def test_a_cancelled_writer_is_still_written(harness: Harness) -> None:
    """A caller whose deadline passed while queued still writes its batch when its
    turn comes: nobody else would, and its records would stay queued for ever."""
    ids = await servers(harness, 2)
    gate = GatedStore(harness.stores.tools)
    writer = CacheWriter(gate)  # type: ignore[arg-type]
    returned: list[bool] = []

    async def cancelled() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await writer.write(entry(ids[1]), ok(ids[1]))
            returned.append(True)

    with anyio.fail_after(30):  # hang guard only
        async with anyio.create_task_group() as group:
            group.start_soon(writer.write, entry(ids[0]), ok(ids[0]))
            await anyio.wait_all_tasks_blocked()
            group.start_soon(cancelled)
            await anyio.wait_all_tasks_blocked()
            gate.release.set()
    assert returned == [True]
    assert gate.batches == [[ids[0]], [ids[1]]]
    assert await harness.stores.tools.get(ids[1], SHARED) is not None


class BrokenStore:
    async def put_many(
        self, entries: Sequence[ToolCacheEntry], health: Sequence[ServerHealth]
    ) -> None:
        raise StorageError("the database failed: disk I/O error")


async def test_a_store_failure_reaches_the_writer() -> None:
    writer = CacheWriter(BrokenStore())  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="disk I/O"):
        await writer.write(entry("s1"), ok("s1"))
    # the lock is free again: the next writer is not stuck behind the failure
    with pytest.raises(StorageError):
        await writer.write(None, ok("s1"))
    assert writer.transactions == 2
