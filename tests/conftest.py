"""Shared pytest set-up: a clean environment and the real-peer fixtures."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["peers.plugin"]

# Property tests (tests/fuzz): fixed seeds and a few hundred examples by default, so CI
# is repeatable on a loaded machine; ``--hypothesis-profile=deep`` for the long hunt.
# No deadline anywhere: a slow example on a busy machine is not a failure.
settings.register_profile(
    "default",
    derandomize=True,
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "deep",
    derandomize=False,
    max_examples=20_000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("default")


@pytest.fixture(autouse=True)
def _clean_tether_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Library code never reads the environment; tests must not depend on it either."""
    for name in list(os.environ):
        if name.startswith("TETHER_"):
            monkeypatch.delenv(name, raising=False)
