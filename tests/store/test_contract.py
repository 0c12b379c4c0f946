"""Runs the storage contract against every backend (see ``contract.py``)."""

from __future__ import annotations

from .contract import StoreContract


class TestStores(StoreContract):
    """Memory, SQLite and PostgreSQL, through the ``harness`` fixture."""
