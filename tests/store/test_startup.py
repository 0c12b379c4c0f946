"""The store never starts over silently, and keeps its files private.

:func:`tether.store.factory.open_key_ring` is what the shells run before opening the
stores: it refuses a lost key file beside encrypted secrets, a lost or emptied database
beside a used key file (unless the operator asks for a fresh start), and a SQLite file
that fails ``PRAGMA quick_check``.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from store.conftest import SQL_BACKENDS, fresh_url
from tether.errors import ConfigurationError, StorageError
from tether.store.base import CredentialRecord
from tether.store.crypto import KeyRing, generate_key
from tether.store.database import (
    DAMAGED_HINT,
    count_sealed_secrets,
    private_sqlite_files,
    sqlite_quick_check,
    storage_errors,
)
from tether.store.factory import check_database, open_key_ring, open_stores

SECRET = "sk-live-0123456789abcdef"


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'tether.db'}"


async def _store_a_secret(url: str, ring: KeyRing, name: str = "api") -> None:
    stores = await open_stores(url, ring)
    try:
        await stores.credentials.add(
            CredentialRecord(id=name, name=name, value=SecretStr(SECRET))
        )
    finally:
        await stores.aclose()


def _key_text(path: Path) -> str:
    lines = path.read_text().splitlines()
    return ",".join(line for line in lines if line and not line.startswith("#"))


async def test_a_first_start_creates_the_database_then_the_key(tmp_path: Path) -> None:
    url, keys = _sqlite(tmp_path), tmp_path / "data" / "keys"
    ring = await open_key_ring(url, keys=None, key_file=keys)
    db = tmp_path / "data" / "tether.db"
    assert db.stat().st_size > 0  # created (and migrated) before the key file
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    again = await open_key_ring(url, keys=None, key_file=keys)
    assert again.key_ids == ring.key_ids


@pytest.mark.parametrize("backend", SQL_BACKENDS)
async def test_a_missing_key_file_beside_secrets_is_refused(
    tmp_path: Path, backend: str
) -> None:
    keys = tmp_path / "keys"
    async with fresh_url(backend, tmp_path) as url:
        ring = await open_key_ring(url, keys=None, key_file=keys)
        await _store_a_secret(url, ring)
        assert await count_sealed_secrets(url) == 1
        saved = _key_text(keys)
        keys.unlink()  # lost
        with pytest.raises(ConfigurationError) as caught:
            await open_key_ring(url, keys=None, key_file=keys)
        assert str(keys) in caught.value.message
        assert "1 records with encrypted secrets" in caught.value.message
        assert caught.value.hint is not None
        assert "restore" in caught.value.hint
        assert not keys.exists()  # no new key was generated
        # A fresh start does not help here: it would still mix keys.
        with pytest.raises(ConfigurationError):
            await open_key_ring(url, keys=None, key_file=keys, fresh_start=True)
        # The right key, given as a setting, opens the store again.
        restored = await open_key_ring(url, keys=saved, key_file=keys)
        assert restored.key_ids == ring.key_ids


@pytest.mark.parametrize("backend", SQL_BACKENDS)
async def test_a_missing_key_file_beside_no_secret_is_created(
    tmp_path: Path, backend: str
) -> None:
    keys = tmp_path / "keys"
    async with fresh_url(backend, tmp_path) as url:
        await open_key_ring(url, keys=None, key_file=keys)
        keys.unlink()  # nothing was sealed with it yet
        await open_key_ring(url, keys=None, key_file=keys)
        assert keys.exists()


@pytest.mark.parametrize("damage", ["missing", "empty"])
async def test_a_lost_database_beside_a_used_key_file_is_refused(
    tmp_path: Path, damage: str
) -> None:
    url, keys = _sqlite(tmp_path), tmp_path / "keys"
    db = tmp_path / "data" / "tether.db"
    ring = await open_key_ring(url, keys=None, key_file=keys)
    await _store_a_secret(url, ring)
    if damage == "missing":
        db.unlink()
    else:
        db.write_bytes(b"")
    with pytest.raises(StorageError) as caught:
        await open_key_ring(url, keys=None, key_file=keys)
    assert f"{db} is {damage}" in caught.value.message
    assert caught.value.hint is not None
    assert "--fresh-start" in caught.value.hint
    assert "TETHER_FRESH_START" in caught.value.hint
    assert "tether migrate" not in caught.value.hint
    # The operator's explicit fresh start keeps the key and begins an empty store.
    fresh = await open_key_ring(url, keys=None, key_file=keys, fresh_start=True)
    assert fresh.key_ids == ring.key_ids
    stores = await open_stores(url, fresh)
    try:
        assert await stores.credentials.list() == []
    finally:
        await stores.aclose()
    # Now the database exists again: no flag needed.
    await open_key_ring(url, keys=None, key_file=keys)


async def test_keys_from_a_setting_do_not_make_a_key_file(tmp_path: Path) -> None:
    url, keys = _sqlite(tmp_path), tmp_path / "keys"
    key = generate_key()
    ring = await open_key_ring(url, keys=key, key_file=keys)
    assert ring.key_ids == KeyRing.from_string(key).key_ids
    assert not keys.exists()


def _damage(db: Path) -> None:
    # 4 KB of random bytes at offset 8192: a page in the middle of the schema.
    with db.open("r+b") as handle:
        handle.seek(8192)
        handle.write(random.Random(8192).randbytes(4096))


async def test_a_damaged_sqlite_file_is_refused(tmp_path: Path) -> None:
    url, keys = _sqlite(tmp_path), tmp_path / "keys"
    db = tmp_path / "data" / "tether.db"
    ring = await open_key_ring(url, keys=None, key_file=keys)
    await _store_a_secret(url, ring)
    assert sqlite_quick_check(db) is None
    assert db.stat().st_size > 8192 + 4096
    _damage(db)
    assert sqlite_quick_check(db) is not None
    for fresh_start in (False, True):  # a damaged file is never written to
        with pytest.raises(StorageError) as caught:
            await open_key_ring(url, keys=None, key_file=keys, fresh_start=fresh_start)
        assert "fails its integrity check" in caught.value.message
        assert caught.value.hint == DAMAGED_HINT
    assert "restore it from a backup" in DAMAGED_HINT
    assert "cannot repair" in DAMAGED_HINT


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "tether.db"
    db.write_bytes(b"this is not a SQLite file" * 100)
    with pytest.raises(StorageError, match="integrity check"):
        await check_database(
            f"sqlite+aiosqlite:///{db}", key_file_in_use=True, fresh_start=False
        )


async def test_postgres_and_memory_skip_the_file_checks(tmp_path: Path) -> None:
    for url in ("memory://", "postgresql+asyncpg://nobody@127.0.0.1:1/none"):
        await check_database(url, key_file_in_use=True, fresh_start=False)
    ring = await open_key_ring("memory://", keys=None, key_file=tmp_path / "k")
    assert (tmp_path / "k").exists()
    assert ring.key_ids


def test_files_an_older_version_left_wider_than_0600_are_narrowed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tether.db"
    names = ("tether.db", "tether.db-wal", "tether.db-shm", "tether.db-journal")
    for name in names:
        (tmp_path / name).write_bytes(b"")
        (tmp_path / name).chmod(0o644)
    private_sqlite_files(db)
    for name in names:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


async def test_sqlite_gives_its_wal_and_shm_files_the_database_mode(
    tmp_path: Path,
) -> None:
    url, keys = _sqlite(tmp_path), tmp_path / "keys"
    stores = await open_stores(url, await open_key_ring(url, keys=None, key_file=keys))
    try:
        await stores.credentials.add(
            CredentialRecord(id="c1", name="api", value=SecretStr(SECRET))
        )
        # The pooled connection is still open, so the WAL and its index exist.
        files = sorted((tmp_path / "data").iterdir())
        assert {f.name for f in files} >= {"tether.db-wal", "tether.db-shm"}
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    finally:
        await stores.aclose()


def test_a_damaged_file_error_from_the_driver_names_the_real_fix() -> None:
    from sqlalchemy import exc as sa_exc

    orig = sqlite3.DatabaseError("database disk image is malformed")
    with pytest.raises(StorageError) as caught, storage_errors():
        raise sa_exc.DatabaseError("SELECT 1", {}, orig)
    assert caught.value.hint == DAMAGED_HINT
    orig = sqlite3.OperationalError("attempt to write a readonly database")
    with pytest.raises(StorageError) as caught, storage_errors():
        raise sa_exc.OperationalError("SELECT 1", {}, orig)
    assert caught.value.hint is not None
    assert "writable" in caught.value.hint


# Separate processes starting on an empty home at once, through the whole start-up
# check (database created first, then the key file): all must agree on one key.
_STARTER = """
import asyncio, sys
from tether.store.factory import open_key_ring
print("ready", flush=True)
sys.stdin.read(1)
ring = asyncio.run(open_key_ring(sys.argv[1], keys=None, key_file=sys.argv[2]))
print(ring.primary_key_id, flush=True)
"""


def test_concurrent_first_starts_share_one_database_and_key(tmp_path: Path) -> None:
    url, keys = _sqlite(tmp_path), tmp_path / "data" / "keys"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _STARTER, url, str(keys)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("g")
        child.stdin.flush()
    ids = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        ids.append(out.strip())
    assert len(set(ids)) == 1, ids
    db = tmp_path / "data" / "tether.db"
    assert sqlite_quick_check(db) is None
    assert sorted(
        p.name for p in db.parent.iterdir() if not p.name.endswith("-wal")
    ) in (
        ["keys", "tether.db"],
        ["keys", "tether.db", "tether.db-shm"],
    )


def test_an_existing_shared_data_folder_is_kept_but_named_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="tether"):
        private_sqlite_files(folder / "tether.db")
        private_sqlite_files(folder / "tether.db")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755  # the operator's to change
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        f"the data folder {folder} is open to other users (mode 0755); "
        f"run `chmod 700 {folder}`"
    ]
    assert stat.S_IMODE((folder / "tether.db").stat().st_mode) == 0o600


async def test_open_stores_refuses_a_damaged_file_too(tmp_path: Path) -> None:
    # Embedders that call Tether.open / open_stores directly get the same check.
    url = _sqlite(tmp_path)
    ring = KeyRing.generate()
    await _store_a_secret(url, ring)
    stores = await open_stores(url, ring)  # checked once, then remembered
    await stores.aclose()
    _damage(tmp_path / "data" / "tether.db")
    with pytest.raises(StorageError, match="fails its integrity check") as caught:
        await open_stores(url, ring)
    assert caught.value.hint == DAMAGED_HINT


def test_a_file_that_cannot_be_checked_is_left_to_the_open_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Injected: a read-only file without its -shm cannot be opened by root in tests.
    def unable(*args: object, **kwargs: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite3, "connect", unable)
    assert sqlite_quick_check(tmp_path / "tether.db") is None
