"""Constants and the wire format shared by the storm harness and its worker processes.

Kept free of pytest and of the peers so that a worker process starts quickly.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tether.hub.tether import Tether
from tether.store.crypto import KeyRing

REDIRECT_URI = "http://127.0.0.1:8470/oauth/callback"
LOOPBACK = ["127.0.0.0/8", "::1/128"]
KEY_ENV = "STORM_TETHER_KEY"  # the key ring travels by environment, never on argv
GO = "go"


async def open_tether(
    database_url: str, key: str, open_kwargs: dict[str, Any] | None = None
) -> Tether:
    """A Tether on ``database_url`` sealing with ``key`` (as every process of a storm)."""
    return await Tether.open(
        database_url=database_url,
        key_ring=KeyRing.from_string(key),
        redirect_uri=REDIRECT_URI,
        allow_networks=LOOPBACK,
        **(open_kwargs or {}),
    )


def emit(event: str, **fields: Any) -> None:
    """Write one JSON line to stdout (the worker's only report channel)."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()
