"""Re-encrypt every stored secret with the newest key (``tether keys rotate``).

Rotation is two steps for an operator: put a new key in front of the old ones (in the
setting, or with :func:`~tether.store.crypto.add_key_to_file`) and restart, so new writes
use it; then run :func:`rotate_keys`, after which the old keys can be dropped. Running it
again changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tether.errors import ConfigurationError
from tether.store.crypto import KeyRing
from tether.store.factory import MEMORY_URL

__all__ = ["RotationReport", "rotate_keys"]


@dataclass(frozen=True, slots=True)
class RotationReport:
    """Records re-sealed per kind (``credential``, ``registration``, …)."""

    key_id: str
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Records changed in all."""
        return sum(self.counts.values())


async def rotate_keys(url: str, key_ring: KeyRing) -> RotationReport:
    """Re-seal every secret in the database at ``url`` with ``key_ring``'s newest key.

    ``key_ring`` must still hold every key in use; a value sealed by a missing key stops
    the run with ``DecryptionError`` (values already re-sealed stay re-sealed).

    Raises:
        ConfigurationError: ``memory://`` (nothing persists) or an unsupported URL.
        DecryptionError: A value cannot be opened with any key in the ring.
        StorageError: The database failed.
    """
    if url.startswith(MEMORY_URL):
        raise ConfigurationError(
            "memory:// stores keep nothing to rotate",
            hint="point TETHER_DATABASE_URL at the database to rotate",
        )
    from tether.store.database import SqlBackend, create_engine
    from tether.store.rules import utc_now

    backend = SqlBackend(create_engine(url), key_ring, utc_now)
    try:
        counts = await backend.rotate_secrets()
    finally:
        await backend.dispose()
    return RotationReport(key_id=key_ring.primary_key_id, counts=counts)
