"""Secret-free connection pages and status counts, on every backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from tether.store.base import Connection, ServerRecord
from tether.store.crypto import KeyRing
from tether.store.factory import open_stores
from tether.store.listing import listing_of

from .conftest import BACKENDS, fresh_url


@pytest.mark.parametrize("backend", BACKENDS)
async def test_pages_filters_and_counts(backend: str, tmp_path: Path) -> None:
    async with fresh_url(backend, tmp_path) as url:
        stores = await open_stores(url, KeyRing.generate())
        try:
            for sid in ("s1", "s2"):
                await stores.servers.add(
                    ServerRecord(id=sid, name=sid, url="https://x")
                )
            subjects = ["a_b/u1", "axb/u2", "a_b/u3", "shared"]
            for i, subject in enumerate(subjects):
                await stores.connections.save(
                    Connection(
                        server_id="s1" if i % 2 == 0 else "s2",
                        subject=subject,
                        status="connected" if i < 3 else "needs_reauth",
                        access_token=SecretStr(f"at{i}"),
                        refresh_token=SecretStr("rt") if i == 0 else None,
                        scopes=("a", "b"),
                    ),
                    expected_version=0,
                )
            listing = listing_of(stores)
            everything = await listing.page(
                server_ids=None, status=None, subject_prefix=None, limit=10, offset=0
            )
            assert [(c.server_id, c.subject) for c in everything] == [
                ("s1", "a_b/u1"),
                ("s1", "a_b/u3"),
                ("s2", "axb/u2"),
                ("s2", "shared"),
            ]
            assert everything[0].has_refresh_token
            assert not everything[1].has_refresh_token
            assert everything[0].scopes == ("a", "b")
            assert "at0" not in repr(everything)
            # "_" in an app namespace is literal, not a LIKE wildcard
            mine = await listing.page(
                server_ids=None, status=None, subject_prefix="a_b/", limit=10, offset=0
            )
            assert [c.subject for c in mine] == ["a_b/u1", "a_b/u3"]
            second = await listing.page(
                server_ids=["s1", "s2"],
                status="connected",
                subject_prefix=None,
                limit=1,
                offset=1,
            )
            assert [c.subject for c in second] == ["a_b/u3"]
            one_server = await listing.page(
                server_ids=["s2"], status=None, subject_prefix=None, limit=10, offset=0
            )
            assert [c.subject for c in one_server] == ["axb/u2", "shared"]
            after = await listing.page(
                server_ids=None,
                status=None,
                subject_prefix=None,
                limit=10,
                offset=0,
                after=("s1", "a_b/u3"),
            )
            assert [(c.server_id, c.subject) for c in after] == [
                ("s2", "axb/u2"),
                ("s2", "shared"),
            ]
            after = await listing.page(
                server_ids=None,
                status=None,
                subject_prefix=None,
                limit=1,
                offset=0,
                after=("s1", "a_b/u1"),
            )
            assert [(c.server_id, c.subject) for c in after] == [("s1", "a_b/u3")]
            assert await listing.count_by_status() == {
                "connected": 3,
                "needs_reauth": 1,
            }
        finally:
            await stores.aclose()
