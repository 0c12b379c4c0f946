"""Injected time and randomness for the hub (design-notes S16: inject time and randomness)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "Random", "SystemClock", "SystemRandom"]


class Clock(Protocol):
    """Gives the current time, timezone-aware in UTC."""

    def now(self) -> datetime:
        """Return the current time."""
        ...


class Random(Protocol):
    """Gives cryptographically strong random values."""

    def token(self, nbytes: int) -> bytes:
        """Return ``nbytes`` random bytes."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)


class SystemRandom:
    """The operating system's CSPRNG."""

    def token(self, nbytes: int) -> bytes:
        """Return ``nbytes`` bytes from :func:`secrets.token_bytes`."""
        return secrets.token_bytes(nbytes)
