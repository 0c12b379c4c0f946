"""SQL-only behaviour: migrations, secrets at rest, rotation, error seam, factory, locks."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from tether.errors import (
    ConfigurationError,
    DecryptionError,
    StorageError,
    TetherError,
    ValidationFailed,
    VersionConflict,
)
from tether.store.base import SHARED, CredentialRecord, Stores
from tether.store.crypto import KeyRing, generate_key
from tether.store.database import conflict, create_engine, storage_errors, unique
from tether.store.factory import open_stores
from tether.store.migrate import HEAD, current_revision, head_revision, migrate
from tether.store.rotate import rotate_keys
from tether.store.schema import metadata

from .conftest import PG_ADMIN, PG_DB, PG_HOST, FakeClock
from .contract import connection, pending, registration, server

SECRETS = {
    "credential": "cred-value-Zq81nX",
    "client_secret": "client-secret-https://as.example",
    "rat": "rat-1",
    "access": "access-s1-shared",
    "refresh": "refresh-s1-shared",
    "verifier": "verifier-state-1",
}


async def _write_secrets(stores: Stores) -> None:
    await stores.servers.add(server())
    await stores.credentials.add(
        CredentialRecord(id="c1", name="key", value=SecretStr(SECRETS["credential"]))
    )
    await stores.registrations.put(registration())
    await stores.connections.save(connection(), expected_version=0)
    await stores.pending.put(pending(), ttl=timedelta(minutes=10))


async def _read_secrets(stores: Stores) -> list[str]:
    cred = await stores.credentials.get("c1")
    reg = await stores.registrations.get("s1", "https://as.example")
    conn = await stores.connections.get("s1", SHARED)
    assert cred is not None
    assert reg is not None
    assert conn is not None
    values = [cred.value, reg.client_secret, reg.registration_access_token]
    values += [conn.access_token, conn.refresh_token]
    return [v.get_secret_value() for v in values if v is not None]


async def _all_text(url: str) -> str:
    """Every column of every table, cast to text (a dump that works on both)."""
    engine = create_engine(url)
    chunks: list[str] = []
    try:
        async with engine.connect() as conn:
            for table in metadata.sorted_tables:
                columns = [sa.cast(c, sa.Text) for c in table.columns]
                for row in await conn.execute(sa.select(*columns)):
                    chunks.extend(str(v) for v in row)
    finally:
        await engine.dispose()
    return "\n".join(chunks)


def _assert_absent(haystack: str | bytes, needles: Iterable[str]) -> None:
    data = haystack if isinstance(haystack, bytes) else haystack.encode()
    for needle in needles:
        assert needle.encode() not in data, f"plaintext secret {needle!r} found at rest"


def _read_dir(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.iterdir()) if p.is_file())


# --------------------------------------------------------------------- migrations


async def test_migrated_schema_matches_metadata(sql_url: str) -> None:
    assert await current_revision(sql_url) is None
    await migrate(sql_url)
    await migrate(sql_url)  # idempotent
    assert await current_revision(sql_url) == head_revision()
    engine = create_engine(sql_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}),
                    metadata,
                )
            )
    finally:
        await engine.dispose()
    assert diff == []


def test_head_is_the_newest_packaged_revision() -> None:
    assert head_revision() == HEAD


async def test_an_older_schema_is_upgraded_on_open(sql_url: str) -> None:
    await migrate(sql_url, revision="0003")
    assert await current_revision(sql_url) == "0003"
    stores = await open_stores(sql_url, KeyRing.generate())
    try:
        assert await stores.api_keys.list() == []  # table added by 0004
    finally:
        await stores.aclose()
    assert await current_revision(sql_url) == HEAD


OPEN_AND_REPORT = """
import asyncio, sys
from tether.store.crypto import KeyRing
from tether.store.factory import open_stores

async def main():
    stores = await open_stores(sys.argv[1], KeyRing.generate())
    await stores.servers.list()
    await stores.aclose()
    print(sorted(m for m in ("alembic", "mako", "pygments") if m in sys.modules))

asyncio.run(main())
"""


async def test_an_open_at_head_does_not_import_alembic(sql_url: str) -> None:
    """Alembic, Mako and Pygments stay out of a process whose database is current
    (a fresh interpreter, so no other test's imports count)."""

    async def opened() -> str:
        done = await anyio.run_process(
            [sys.executable, "-c", OPEN_AND_REPORT, sql_url], check=True
        )
        return done.stdout.decode().strip()

    assert "'alembic'" in await opened()  # an empty database: upgraded
    assert await opened() == "[]"


async def test_open_stores_without_migration_fails_cleanly(sql_url: str) -> None:
    stores = await open_stores(sql_url, KeyRing.generate(), migrate=False)
    try:
        with pytest.raises(StorageError) as caught:
            await stores.servers.list()
        assert caught.value.hint is not None
        assert "migrate" in caught.value.hint
    finally:
        await stores.aclose()


# --------------------------------------------------------------------- secrets at rest


async def test_sqlite_file_holds_no_plaintext(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tether.db'}"
    stores = await open_stores(url, KeyRing.generate(), now=FakeClock())
    try:
        await _write_secrets(stores)
        assert sorted(await _read_secrets(stores)) == sorted(
            v for k, v in SECRETS.items() if k != "verifier"
        )
    finally:
        await stores.aclose()
    # The database file plus its WAL: everything SQLite wrote.
    raw = await anyio.to_thread.run_sync(_read_dir, tmp_path)
    assert b"https://s1.example/mcp" in raw  # the dump is real: plain fields are there
    _assert_absent(raw, SECRETS.values())
    _assert_absent(await _all_text(url), SECRETS.values())


@pytest.mark.postgres
async def test_postgres_dump_holds_no_plaintext(postgres_url: str) -> None:
    sql_url = postgres_url
    stores = await open_stores(sql_url, KeyRing.generate(), now=FakeClock())
    try:
        await _write_secrets(stores)
    finally:
        await stores.aclose()
    text = await _all_text(sql_url)
    assert "https://s1.example/mcp" in text
    _assert_absent(text, SECRETS.values())
    if shutil.which("pg_dump"):
        role = make_url(sql_url).username or ""
        command = ["pg_dump", "-h", PG_HOST, "-U", PG_ADMIN, "-n", role, "--data-only"]
        dump = (await anyio.run_process([*command, PG_DB], check=True)).stdout
        assert b"https://s1.example/mcp" in dump
        _assert_absent(dump, SECRETS.values())


async def test_ciphertext_moved_between_rows_fails(sql_url: str) -> None:
    stores = await open_stores(sql_url, KeyRing.generate(), now=FakeClock())
    try:
        await _write_secrets(stores)
        await stores.connections.save(connection(subject="u1"), expected_version=0)
        engine = create_engine(sql_url)
        try:
            async with engine.begin() as conn:
                t = metadata.tables["connections"]
                stolen = await conn.scalar(
                    sa.select(t.c.access_token_enc).where(t.c.subject == "u1")
                )
                await conn.execute(
                    sa.update(t)
                    .where(t.c.subject == SHARED)
                    .values(access_token_enc=stolen)
                )
        finally:
            await engine.dispose()
        with pytest.raises(DecryptionError) as caught:
            await stores.connections.get("s1", SHARED)
        assert "connection s1/shared (access_token)" in str(caught.value)
        assert "access-s1-u1" not in str(caught.value)
    finally:
        await stores.aclose()


async def test_rotation_reseals_everything(sql_url: str) -> None:
    old_key, new_key = generate_key(), generate_key()
    clock = FakeClock()
    stores = await open_stores(sql_url, KeyRing.from_string(old_key), now=clock)
    try:
        await _write_secrets(stores)
    finally:
        await stores.aclose()

    both = KeyRing.from_string(f"{new_key},{old_key}")
    report = await rotate_keys(sql_url, both)
    assert report.key_id == both.primary_key_id
    assert report.counts == {
        "credential": 1,
        "registration": 1,
        "connection": 1,
        "pending": 1,
    }
    again = await rotate_keys(sql_url, both)
    assert again.total == 0

    only_new = KeyRing.from_string(new_key)
    stores = await open_stores(sql_url, only_new, now=clock)
    try:
        assert sorted(await _read_secrets(stores)) == sorted(
            v for k, v in SECRETS.items() if k != "verifier"
        )
        taken = await stores.pending.take("state-1")
        assert taken is not None
        assert taken.code_verifier.get_secret_value() == SECRETS["verifier"]
    finally:
        await stores.aclose()


async def test_rotation_needs_the_old_key(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tether.db'}"
    stores = await open_stores(url, KeyRing.generate())
    try:
        await _write_secrets(stores)
    finally:
        await stores.aclose()
    with pytest.raises(DecryptionError):
        await rotate_keys(url, KeyRing.generate())
    with pytest.raises(ConfigurationError):
        await rotate_keys("memory://", KeyRing.generate())


# --------------------------------------------------------------------- seam, factory


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("mysql+aiomysql://x/y", "unsupported"),
        ("sqlite:///plain.db", "aiosqlite"),
        ("sqlite+aiosqlite:///:memory:", "memory://"),
        ("postgresql+psycopg://x/y", "asyncpg"),
    ],
)
async def test_factory_rejects_bad_urls(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        await open_stores(url, KeyRing.generate())


async def test_missing_postgres_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec

    def fake(name: str, *args: Any) -> Any:
        return None if name == "asyncpg" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(ConfigurationError) as caught:
        await open_stores("postgresql+asyncpg://u@h/db", KeyRing.generate())
    assert caught.value.hint == "pip install 'tether-mcp[postgres]'"


async def test_unreachable_database_is_a_storage_error() -> None:
    with pytest.raises(StorageError):
        await open_stores("postgresql+asyncpg://u@127.0.0.1:1/db", KeyRing.generate())


@pytest.mark.parametrize(
    ("raised", "match"),
    [
        (
            sa.exc.IntegrityError(
                "INSERT …",
                {"value_enc": "x"},
                Exception("CHECK constraint failed\nSQL: secret stuff"),
            ),
            "constraint failed",
        ),
        (
            sa.exc.OperationalError("SELECT", {}, Exception("database is locked")),
            "the database failed: database is locked",
        ),
        (sa.exc.ArgumentError("bad"), "database layer"),
        (ConnectionRefusedError(111, "Connection refused"), "cannot reach"),
    ],
)
def test_seam_maps_driver_errors(raised: Exception, match: str) -> None:
    with pytest.raises(StorageError, match=match) as caught, storage_errors():
        raise raised
    assert "secret stuff" not in str(caught.value)
    assert "value_enc" not in str(caught.value)


# --------------------------------------------------------------------- locks


@pytest.mark.postgres
async def test_postgres_lock_spans_processes(postgres_url: str) -> None:
    sql_url = postgres_url
    first = await open_stores(sql_url, KeyRing.generate())
    second = await open_stores(sql_url, KeyRing.generate(), migrate=False)
    key = f"refresh:{sql_url}"
    try:
        async with first.locks.lock(key):
            # Another "process" (its own engine and local locks) cannot take it.
            with pytest.raises(StorageError, match="not released"):
                async with second.locks.lock(key, timeout=0.2):
                    pass  # pragma: no cover
        with anyio.fail_after(60):  # a hang guard only
            async with second.locks.lock(key, timeout=30):
                pass
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.parametrize(
    ("handler", "message", "expected"),
    [
        (
            unique("server", "s1", "One"),
            "UNIQUE constraint failed: servers.name_key",
            ValidationFailed,
        ),
        (
            unique("server", "s1", "One"),
            'duplicate key value violates unique constraint "pk_servers"',
            ValidationFailed,
        ),
        (
            unique("server", "s1", "One"),
            "NOT NULL constraint failed: servers.url",
            StorageError,
        ),
        (
            conflict("connection s1/shared"),
            "UNIQUE constraint failed: connections.server_id",
            VersionConflict,
        ),
        (
            conflict("connection s1/shared"),
            "NOT NULL constraint failed: connections.status",
            StorageError,
        ),
    ],
)
def test_integrity_handlers(
    handler: Callable[[str], TetherError], message: str, expected: type[TetherError]
) -> None:
    assert type(handler(message)) is expected
