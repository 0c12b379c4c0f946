"""Shared pytest set-up: a clean environment and the real-peer fixtures."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["peers.plugin"]


@pytest.fixture(autouse=True)
def _clean_tether_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Library code never reads the environment; tests must not depend on it either."""
    for name in list(os.environ):
        if name.startswith("TETHER_"):
            monkeypatch.delenv(name, raising=False)
