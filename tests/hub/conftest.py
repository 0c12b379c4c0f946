"""Fixtures for hub tests: a Tether wired to real loopback peers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tether.hub.tether import Tether
from tether.store.crypto import KeyRing

REDIRECT_URI = "http://127.0.0.1:8470/oauth/callback"
LOOPBACK = ["127.0.0.0/8", "::1/128"]

MakeTether = Callable[..., Awaitable[Tether]]


@pytest.fixture
async def make_tether(tmp_path: Path) -> AsyncIterator[MakeTether]:
    """Build Tethers on a fresh SQLite file (closed after the test)."""
    opened: list[Tether] = []

    async def factory(**overrides: Any) -> Tether:
        options: dict[str, Any] = {
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'tether.db'}",
            "key_ring": KeyRing.generate(),
            "redirect_uri": REDIRECT_URI,
            "allow_networks": LOOPBACK,
        }
        options.update(overrides)
        tether = await Tether.open(**options)
        opened.append(tether)
        return tether

    yield factory
    for tether in opened:
        await tether.aclose()
