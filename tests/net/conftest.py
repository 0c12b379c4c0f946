"""Fixtures for net/ tests: every test runs under the connect guard (fail safe)."""

from __future__ import annotations

import pytest

from .loopback import ConnectGuard


@pytest.fixture(autouse=True)
def guard(monkeypatch: pytest.MonkeyPatch) -> ConnectGuard:
    """Record every connect attempt and refuse any to a non-loopback address."""
    connect_guard = ConnectGuard()
    connect_guard.install(monkeypatch)
    return connect_guard
