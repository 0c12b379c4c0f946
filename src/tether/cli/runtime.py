"""Build a :class:`~tether.hub.tether.Tether` from :class:`~tether.config.Settings`.

The one place where settings become plain arguments (design.md §2, style.md ex. 13).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tether.config import Settings
from tether.hub.tether import Tether
from tether.store.crypto import KeyRing, load_key_file

__all__ = ["key_ring", "open_tether"]


def key_ring(settings: Settings) -> KeyRing:
    """The configured key ring, or the key file (created 0600 on first run)."""
    if settings.encryption_keys is not None:
        return KeyRing.from_string(settings.encryption_keys)
    return load_key_file(settings.resolved_key_file())


@asynccontextmanager
async def open_tether(settings: Settings) -> AsyncIterator[Tether]:
    """Open a Tether for one CLI command or the web app's lifespan."""
    base = settings.public_url.rstrip("/")
    metadata_url = f"{base}/oauth/client-metadata.json"
    tether = await Tether.open(
        database_url=settings.resolved_database_url(),
        key_ring=key_ring(settings),
        redirect_uri=f"{base}/oauth/callback",
        client_metadata_url=metadata_url if base.startswith("https://") else None,
        client_name=settings.client_name,
        allow_networks=settings.allow_networks,
        ca_bundle=settings.ca_bundle,
    )
    try:
        yield tether
    finally:
        await tether.aclose()
