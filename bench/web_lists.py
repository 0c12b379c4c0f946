"""Latency of the JSON API's list pages with many connections in PostgreSQL.

Not a test. Creates a private schema on the local PostgreSQL (127.0.0.1:5432, db
``test``), fills it with ``--servers`` servers and ``--connections`` connected
connections (tokens sealed as in production), then times each list page through the
ASGI app (no sockets) and prints p50/p99 per page (after 3 warm-up requests each),
the load average, and writes ``bench/results/web_lists-<UTC time>.json``::

    .venv/bin/python bench/web_lists.py [--connections 10000] [--requests 40]

The deep connections page is timed both ways: ``?offset=9900`` and the keyset
``?after=<cursor>`` at the same position (the cursor found by walking the list
through ``X-Next-Cursor``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import common  # noqa: F401  (puts src/ and tests/ on sys.path)
import httpx2
from common import header, write
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tether.config import Settings
from tether.hub.tether import Tether
from tether.store.base import Connection
from tether.store.crypto import KeyRing
from tether.web.app import create_app
from tether.web.security import issue_key

ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def _admin(*sql: str) -> None:
    engine = create_async_engine(
        ADMIN, isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    async with engine.connect() as conn:
        for statement in sql:
            await conn.exec_driver_sql(statement)
    await engine.dispose()


async def _fill(tether: Tether, servers: int, connections: int) -> list[str]:
    ids = []
    for i in range(servers):
        record = await tether.servers.create(
            {
                "name": f"s{i}",
                "url": f"https://127.0.0.1:9/{i}",
                "auth_mode": "oauth",
                "oauth": {"per_user": True},
                "allow_networks": ["127.0.0.0/8"],
            },
            actor="bench",
        )
        ids.append(record.id)
    now = datetime.now(UTC)
    sem = asyncio.Semaphore(8)

    async def one(n: int) -> None:
        async with sem:
            await tether.stores.connections.save(
                Connection(
                    server_id=ids[n % servers],
                    subject=f"app/user{n}",
                    status="connected",
                    access_token=SecretStr(f"at-{n}-" + "x" * 40),
                    refresh_token=SecretStr(f"rt-{n}-" + "y" * 40),
                    expires_at=now + timedelta(hours=1),
                    scopes=("mcp:tools",),
                    issuer="https://as.example",
                    connected_at=now,
                ),
                expected_version=0,
            )

    await asyncio.gather(*(one(n) for n in range(connections)))
    return ids


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _cursor_at(client: httpx2.AsyncClient, position: int) -> str:
    """The ``after`` cursor of the connection at ``position``, walked by keyset."""
    cursor, walked = None, 0
    while walked < position:
        limit = min(1000, position - walked)
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["after"] = cursor
        r = await client.get("/api/v1/connections", params=params)
        assert r.status_code == 200, r.text[:200]
        walked += len(r.json())
        cursor = r.headers["X-Next-Cursor"]
    assert cursor is not None
    return cursor


async def _measure(
    app: Any, key: str, pages: dict[str, str], requests: int, deep: int
) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app),
        base_url="http://127.0.0.1:8470",
        headers={"Authorization": f"Bearer {key}"},
    ) as client:
        cursor = await _cursor_at(client, deep)
        pages[f"GET /api/v1/connections?after=… (keyset, at {deep})"] = (
            f"/api/v1/connections?after={cursor}"
        )
        print(f"{'page':52} {'p50 ms':>8} {'p99 ms':>8}")
        for label, path in pages.items():
            for _ in range(3):  # warm-up
                await client.get(path)
            times = []
            for _ in range(requests):
                t0 = time.perf_counter()
                r = await client.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text[:200]
            p50, p99 = statistics.median(times), _pct(times, 0.99)
            print(f"{label:52} {p50:8.1f} {p99:8.1f}")
            results[label] = {"p50_ms": round(p50, 1), "p99_ms": round(p99, 1)}
    return results


async def main(args: argparse.Namespace) -> None:
    report = header()
    role = f"tether_b_{uuid.uuid4().hex[:12]}"
    await _admin(
        f'CREATE ROLE "{role}" LOGIN', f'CREATE SCHEMA "{role}" AUTHORIZATION "{role}"'
    )
    url = f"postgresql+asyncpg://{role}@127.0.0.1:5432/test"
    try:
        with TemporaryDirectory() as home:
            tether = await Tether.open(
                database_url=url,
                key_ring=KeyRing.generate(),
                redirect_uri="http://127.0.0.1:8470/oauth/callback",
                allow_networks=["127.0.0.0/8"],
            )
            async with tether:
                started = time.perf_counter()
                ids = await _fill(tether, args.servers, args.connections)
                print(
                    f"filled {args.connections} connections in {time.perf_counter() - started:.1f}s"
                )
                _, key = await issue_key(tether, "bench", "admin")
                deep = max(0, args.connections - 100)
                app = create_app(Settings(home=Path(home)), tether=tether)
                pages = {
                    "GET /api/v1/servers": "/api/v1/servers",
                    "GET /api/v1/connections (first 100)": "/api/v1/connections",
                    f"GET /api/v1/connections?offset={deep}": (
                        f"/api/v1/connections?offset={deep}"
                    ),
                    "GET /api/v1/connections?server=s0": f"/api/v1/connections?server={ids[0]}",
                    "GET /api/v1/audit": "/api/v1/audit",
                    "GET /metrics": "/metrics",
                }
                async with app.router.lifespan_context(app):
                    report["pages"] = await _measure(
                        app, key, pages, args.requests, deep
                    )
    finally:
        await _admin(
            f'DROP SCHEMA "{role}" CASCADE',
            f'DROP OWNED BY "{role}"',
            f'DROP ROLE "{role}"',
        )
    report.update(
        connections=args.connections, servers=args.servers, requests=args.requests
    )
    write("web_lists", report)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=10)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=40)
    asyncio.run(main(parser.parse_args()))
