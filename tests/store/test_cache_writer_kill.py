"""SIGKILL during batched tool-cache writes (``hub/writes.py``, G-31), on SQLite.

A separate OS process writes batches of tool lists and health through
:class:`~tether.hub.writes.CacheWriter` as fast as it can and is SIGKILLed once its
first batch is committed (it says so on a pipe; no timing). Afterwards the file passes
``PRAGMA quick_check``, the grant written before is intact, and every batch is whole:
a server has its list exactly when it has the health written with it.
"""

from __future__ import annotations

import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import anyio
from pydantic import SecretStr

from tether.store.base import SHARED, Connection
from tether.store.crypto import KeyRing
from tether.store.database import sqlite_quick_check
from tether.store.factory import open_stores

from .contract import server

SERVERS = 200

WRITER = """
import asyncio, sys
from datetime import UTC, datetime, timedelta
from tether.hub.writes import CacheWriter
from tether.store.base import SHARED, ServerHealth, ToolCacheEntry
from tether.store.crypto import KeyRing
from tether.store.factory import open_stores

async def main(url, count):
    stores = await open_stores(url, KeyRing.generate())
    writer = CacheWriter(stores.tools, limit=50)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for round in range(10**9):
        at = start + timedelta(seconds=round)
        async def one(n):
            sid = f"s{n}"
            await writer.write(
                ToolCacheEntry(sid, SHARED, [{"name": f"t{n}"}] * 20, at),
                ServerHealth(sid, SHARED, status="ok", checked_at=at),
            )
        await asyncio.gather(*(one(n) for n in range(count)))
        if round == 0:
            print("committed", flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_a_killed_writer_leaves_whole_batches_and_the_grant(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tether.db'}"
    ring = KeyRing.generate()
    stores = await open_stores(url, ring)
    try:
        for n in range(SERVERS):
            await stores.servers.add(server(f"s{n}", name=f"Server {n}"))
        grant = await stores.connections.save(
            Connection(
                "s0",
                SHARED,
                status="connected",
                access_token=SecretStr("at-kept"),
                refresh_token=SecretStr("rt-kept"),
                expires_at=datetime(2030, 1, 1, tzinfo=UTC),
            ),
            expected_version=0,
        )
    finally:
        await stores.aclose()

    with anyio.fail_after(120):  # hang guard only
        async with await anyio.open_process(
            [sys.executable, "-c", WRITER, url, str(SERVERS)]
        ) as child:
            assert child.stdout is not None
            said = b""
            async for chunk in child.stdout:
                said += chunk
                if b"committed" in said:
                    break
            child.send_signal(signal.SIGKILL)
            assert await child.wait() == -signal.SIGKILL

    assert sqlite_quick_check(tmp_path / "tether.db") is None
    stores = await open_stores(url, ring)
    try:
        kept = await stores.connections.get("s0", SHARED)
        assert kept == grant
        assert kept is not None
        assert kept.access_token is not None
        assert kept.access_token.get_secret_value() == "at-kept"
        ids = [f"s{n}" for n in range(SERVERS)]
        lists = await stores.tools.get_many([(i, SHARED) for i in ids])
        assert len(lists) == SERVERS  # the first round was committed before the kill
        for server_id in ids:
            health = await stores.tools.get_health(server_id, SHARED)
            assert health is not None
            assert health.checked_at == lists[server_id, SHARED].fetched_at
    finally:
        await stores.aclose()
