"""Fixtures for the store tests: a fake clock, key rings, and one backend per param.

PostgreSQL tests use the server on 127.0.0.1:5432 (trust auth, database ``test``). Each
test gets its own login role and a schema of the same name, which PostgreSQL puts first
on that role's search path, so concurrent runs never see each other's tables. When no
server listens there, those tests are skipped with the reason shown.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tether.store.base import Stores
from tether.store.crypto import KeyRing
from tether.store.factory import open_stores

PG_HOST, PG_PORT, PG_DB, PG_ADMIN = "127.0.0.1", 5432, "test", "postgres"
ADMIN_URL = f"postgresql+asyncpg://{PG_ADMIN}@{PG_HOST}:{PG_PORT}/{PG_DB}"


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.current = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


def _postgres_listening() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=0.5):
            return True
    except OSError:
        return False


PG_AVAILABLE = _postgres_listening()
SKIP_PG = pytest.mark.skipif(
    not PG_AVAILABLE,
    reason=f"PostgreSQL is not listening on {PG_HOST}:{PG_PORT}",
)
BACKENDS = [
    "memory",
    "sqlite",
    pytest.param("postgres", marks=[pytest.mark.postgres, SKIP_PG]),
]
SQL_BACKENDS = BACKENDS[1:]


@dataclass
class Harness:
    """One opened backend under test."""

    name: str
    url: str
    stores: Stores
    clock: FakeClock
    key_ring: KeyRing


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def key_ring() -> KeyRing:
    return KeyRing.generate()


async def _pg_admin(*statements: str) -> None:
    engine = create_async_engine(
        ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A private role and schema on the test server; dropped afterwards."""
    role = f"tether_t_{uuid.uuid4().hex[:16]}"
    await _pg_admin(
        f'CREATE ROLE "{role}" LOGIN',
        f'CREATE SCHEMA "{role}" AUTHORIZATION "{role}"',
    )
    try:
        yield f"postgresql+asyncpg://{role}@{PG_HOST}:{PG_PORT}/{PG_DB}"
    finally:
        await _pg_admin(
            f'DROP SCHEMA "{role}" CASCADE',
            f'DROP OWNED BY "{role}"',
            f'DROP ROLE "{role}"',
        )


@asynccontextmanager
async def fresh_url(name: str, tmp_path: Path) -> AsyncIterator[str]:
    """A new, empty database of the named backend."""
    if name == "memory":
        yield "memory://"
    elif name == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'tether.db'}"
    else:
        async with postgres_schema() as url:
            yield url


@pytest.fixture(params=SQL_BACKENDS)
async def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty SQLite file or PostgreSQL schema (not migrated)."""
    async with fresh_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture(params=BACKENDS)
async def harness(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock, key_ring: KeyRing
) -> AsyncIterator[Harness]:
    name: str = request.param
    async with fresh_url(name, tmp_path) as url:
        stores = await open_stores(url, key_ring, now=clock)
        try:
            yield Harness(name, url, stores, clock, key_ring)
        finally:
            await stores.aclose()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A private PostgreSQL schema (not migrated); skipped when no server listens."""
    if not PG_AVAILABLE:
        pytest.skip(f"PostgreSQL is not listening on {PG_HOST}:{PG_PORT}")
    async with postgres_schema() as url:
        yield url
