"""Memory-only behaviour: secrets stay sealed in memory, rotation, lock bookkeeping."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr

from tether.errors import StorageError
from tether.store.base import SHARED, CredentialRecord
from tether.store.crypto import KeyRing, generate_key
from tether.store.locks import LocalLockProvider
from tether.store.memory import open_memory_stores

from .conftest import FakeClock
from .contract import connection, pending, registration, server


async def test_secrets_are_sealed_in_memory_and_rotate() -> None:
    old_key, new_key = generate_key(), generate_key()
    stores, backend = open_memory_stores(KeyRing.from_string(old_key), now=FakeClock())
    await stores.servers.add(server())
    await stores.credentials.add(
        CredentialRecord(id="c1", name="k", value=SecretStr("cred-plain"))
    )
    await stores.registrations.put(registration())
    await stores.connections.save(connection(), expected_version=0)
    await stores.pending.put(pending(), ttl=timedelta(minutes=10))

    kept = repr(
        [
            [c.value.get_secret_value() for c in backend.credentials.values()],
            [
                (c.access_token.get_secret_value() if c.access_token else None)
                for c in backend.connections.values()
            ],
        ]
    )
    assert "cred-plain" not in kept
    assert "access-s1-shared" not in kept

    backend.key_ring = KeyRing.from_string(f"{new_key},{old_key}")
    assert await backend.rotate_secrets() == {
        "credential": 1,
        "registration": 1,
        "connection": 1,
        "pending": 1,
    }
    assert sum((await backend.rotate_secrets()).values()) == 0
    backend.key_ring = KeyRing.from_string(new_key)
    got = await stores.connections.get("s1", SHARED)
    assert got is not None
    assert got.refresh_token is not None
    assert got.refresh_token.get_secret_value() == "refresh-s1-shared"
    cred = await stores.credentials.get("c1")
    assert cred is not None
    assert cred.value.get_secret_value() == "cred-plain"


async def test_local_locks_are_dropped_when_free() -> None:
    locks = LocalLockProvider()
    async with locks.lock("a"):
        assert "a" in locks._locks
    assert locks._locks == {}
    # Not re-entrant: the same task waits and times out, as on PostgreSQL.
    async with locks.lock("a"):
        with pytest.raises(StorageError):
            await locks.lock("a", timeout=0.01).__aenter__()
    assert locks._locks == {}
