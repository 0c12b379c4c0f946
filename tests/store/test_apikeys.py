"""API-key storage: hashed keys, unique names, revocation, on every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import ValidationFailed
from tether.store.apikeys import ApiKey
from tether.store.crypto import KeyRing
from tether.store.factory import open_stores

from .conftest import BACKENDS, fresh_url


@pytest.mark.parametrize("backend", BACKENDS)
async def test_api_keys(backend: str, tmp_path: Path) -> None:
    async with fresh_url(backend, tmp_path) as url:
        stores = await open_stores(url, KeyRing.generate())
        try:
            keys = stores.api_keys
            added = await keys.add(
                ApiKey(id="k1", name="CRM", role="app", key_hash="a" * 64, app="crm")
            )
            assert added.created_at is not None
            await keys.add(ApiKey(id="k2", name="ops", role="admin", key_hash="b" * 64))
            with pytest.raises(ValidationFailed) as caught:
                await keys.add(
                    ApiKey(id="k3", name="crm", role="app", key_hash="c" * 64)
                )
            assert caught.value.details["fields"] == {"name": "already taken"}
            with pytest.raises(ValidationFailed):
                await keys.add(
                    ApiKey(id="k1", name="other", role="app", key_hash="d" * 64)
                )
            found = await keys.get_by_hash("a" * 64)
            assert found is not None
            assert (found.name, found.role, found.app) == ("CRM", "app", "crm")
            assert await keys.get_by_hash("e" * 64) is None
            assert [k.id for k in await keys.list()] == ["k1", "k2"]
            revoked = await keys.revoke("ops")
            assert revoked is not None
            assert revoked.revoked_at is not None
            again = await keys.revoke("k2")
            assert again is not None
            assert again.revoked_at == revoked.revoked_at  # the first revocation stays
            assert await keys.revoke("nope") is None
            got = await keys.get("k2")
            assert got is not None
            assert got.revoked_at is not None
            assert await keys.get("zz") is None
        finally:
            await stores.aclose()
