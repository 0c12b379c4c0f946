"""Build a :class:`~tether.hub.tether.Tether` from :class:`~tether.config.Settings`.

The one place where settings become plain arguments (design-notes D2, S13).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tether.config import Settings
from tether.hub.tether import Tether
from tether.store.crypto import KeyRing
from tether.store.factory import open_key_ring

__all__ = ["key_ring", "open_tether"]


async def key_ring(settings: Settings) -> KeyRing:
    """Check the database, then return the configured key ring or the key file's.

    The key file is created 0600 on a first start only; a damaged or missing one beside
    encrypted secrets, and a lost or damaged database, are refused
    (:func:`tether.store.factory.open_key_ring`).
    """
    return await open_key_ring(
        settings.resolved_database_url(),
        keys=settings.encryption_keys,
        key_file=settings.resolved_key_file(),
        fresh_start=settings.fresh_start,
    )


@asynccontextmanager
async def open_tether(settings: Settings) -> AsyncIterator[Tether]:
    """Open a Tether for one CLI command or the web app's lifespan."""
    base = settings.public_url.rstrip("/")
    metadata_url = f"{base}/oauth/client-metadata.json"
    tether = await Tether.open(
        database_url=settings.resolved_database_url(),
        key_ring=await key_ring(settings),
        redirect_uri=f"{base}/oauth/callback",
        client_metadata_url=metadata_url if base.startswith("https://") else None,
        client_name=settings.client_name,
        allow_networks=settings.allow_networks,
        ca_bundle=settings.ca_bundle,
        journal_path=settings.resolved_journal_path(),
    )
    try:
        yield tether
    finally:
        await tether.aclose()
