"""Fixtures for the fault-injection proofs: the grant-integrity peers, reused."""

from __future__ import annotations

from grants.conftest import storm_peers

__all__ = ["storm_peers"]
