"""Which fields of which records are secret, and how each is sealed.

Both backends go through these functions, so a secret is bound to the same identity
(:class:`~tether.store.crypto.SecretRef`) whether it sits in memory, SQLite or PostgreSQL,
and key rotation can find every sealed value from the table of :data:`SECRET_FIELDS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

from pydantic import SecretStr

from tether.store.crypto import KeyRing, SecretRef

__all__ = [
    "SECRET_FIELDS",
    "connection_ref",
    "credential_ref",
    "open_fields",
    "pending_ref",
    "registration_ref",
    "reseal_fields",
    "seal_fields",
]

R = TypeVar("R", bound=Any)

SECRET_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "credential": ("value",),
    "registration": ("client_secret", "registration_access_token"),
    "connection": ("access_token", "refresh_token", "dpop_key"),
    "pending": ("code_verifier",),
}
"""Record kind → its secret fields (design-notes R2.6)."""


def credential_ref(credential_id: str, field: str = "value") -> SecretRef:
    """Identity of a credential's value."""
    return SecretRef("credential", (credential_id,), field)


def registration_ref(server_id: str, issuer: str, field: str) -> SecretRef:
    """Identity of a client registration's secret (client secret, RAT)."""
    return SecretRef("registration", (server_id, issuer), field)


def connection_ref(server_id: str, subject: str, field: str) -> SecretRef:
    """Identity of a connection's token."""
    return SecretRef("connection", (server_id, subject), field)


def pending_ref(state: str, field: str = "code_verifier") -> SecretRef:
    """Identity of a pending authorization's PKCE verifier."""
    return SecretRef("pending", (state,), field)


def seal_fields(
    record: R, ring: KeyRing, ref: Callable[[str], SecretRef], fields: Iterable[str]
) -> R:
    """Copy of ``record`` whose secret ``fields`` hold ciphertext instead of plaintext."""
    changes = {}
    for name in fields:
        value: SecretStr | None = getattr(record, name)
        changes[name] = (
            None
            if value is None
            else SecretStr(ring.encrypt(value.get_secret_value(), ref(name)))
        )
    return dataclasses.replace(record, **changes)


def open_fields(
    record: R, ring: KeyRing, ref: Callable[[str], SecretRef], fields: Iterable[str]
) -> R:
    """Inverse of :func:`seal_fields`; raises ``DecryptionError`` naming the record."""
    changes = {}
    for name in fields:
        value: SecretStr | None = getattr(record, name)
        changes[name] = (
            None
            if value is None
            else SecretStr(ring.decrypt(value.get_secret_value(), ref(name)))
        )
    return dataclasses.replace(record, **changes)


def reseal_fields(
    record: R, ring: KeyRing, ref: Callable[[str], SecretRef], fields: Iterable[str]
) -> R | None:
    """Re-seal a sealed record with the newest key; ``None`` if nothing changed."""
    changes = {}
    for name in fields:
        value: SecretStr | None = getattr(record, name)
        if value is not None:
            new = ring.reseal(value.get_secret_value(), ref(name))
            if new is not None:
                changes[name] = SecretStr(new)
    return dataclasses.replace(record, **changes) if changes else None
