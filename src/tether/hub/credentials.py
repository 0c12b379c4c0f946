"""Named credentials: write-only secrets (design-notes R2.4, R3.21).

A credential's value goes in through :meth:`CredentialService.create` or
:meth:`CredentialService.update` and comes out only inside the hub, at the moment a request
needs it. Listings and audit entries carry metadata, never values.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from pydantic import SecretStr

from tether.errors import NotFound, ValidationFailed
from tether.hub.audit import MASK, Auditor
from tether.hub.clock import Clock
from tether.store.base import CredentialRecord, Stores

__all__ = ["CredentialInfo", "CredentialService"]

MAX_NAME = 100
MAX_VALUE = 10_000


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    """What may be shown about a credential: never its value."""

    id: str
    name: str
    description: str
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, record: CredentialRecord) -> CredentialInfo:
        """Strip the value from a record."""
        return cls(
            record.id,
            record.name,
            record.description,
            record.created_at,
            record.updated_at,
        )


def _check(name: str, value: str | None) -> None:
    fields: dict[str, str] = {}
    if not name.strip() or len(name) > MAX_NAME:
        fields["name"] = f"must be 1–{MAX_NAME} characters"
    if value is not None and (not value or len(value) > MAX_VALUE):
        fields["value"] = f"must be 1–{MAX_VALUE} characters"
    if fields:
        raise ValidationFailed(
            "the credential is invalid: "
            + "; ".join(f"{k} {v}" for k, v in fields.items()),
            fields=fields,
        )


class CredentialService:
    """Create, list, update and delete named credentials."""

    def __init__(self, stores: Stores, clock: Clock, auditor: Auditor) -> None:
        self._stores = stores
        self._clock = clock
        self._audit = auditor

    async def create(
        self, name: str, value: str, *, description: str = "", actor: str | None
    ) -> CredentialInfo:
        """Store a new credential; its value is encrypted at rest."""
        _check(name, value)
        await self._ensure_unique(name.strip(), None)
        now = self._clock.now()
        record = await self._stores.credentials.add(
            CredentialRecord(
                id=uuid.uuid4().hex,
                name=name.strip(),
                value=SecretStr(value),
                description=description,
                created_at=now,
                updated_at=now,
            )
        )
        await self._audit.record(
            "credential.create",
            actor=actor,
            target_type="credential",
            target_id=record.id,
            after={"name": record.name, "value": MASK},
        )
        return CredentialInfo.of(record)

    async def _ensure_unique(self, name: str, credential_id: str | None) -> None:
        for other in await self._stores.credentials.list():
            if other.name.lower() == name.lower() and other.id != credential_id:
                raise ValidationFailed(
                    f"a credential named '{name}' already exists",
                    fields={"name": "is already taken"},
                )

    async def get_record(self, ref: str) -> CredentialRecord:
        """The credential with its value, by id or name (hub-internal use)."""
        record = await self._stores.credentials.get(ref)
        if record is None:
            for other in await self._stores.credentials.list():
                # names are unique case-insensitively, as for servers
                if other.name.lower() == ref.strip().lower():
                    record = other
        if record is None:
            raise NotFound(
                f"no credential '{ref}'",
                hint="list credentials with `tether credentials list`",
            )
        return record

    async def list(self) -> list[CredentialInfo]:
        """Metadata of every credential."""
        return [CredentialInfo.of(r) for r in await self._stores.credentials.list()]

    async def update(
        self,
        ref: str,
        *,
        name: str | None = None,
        value: str | None = None,
        description: str | None = None,
        actor: str | None,
    ) -> CredentialInfo:
        """Rename, re-describe or replace the value of a credential."""
        current = await self.get_record(ref)
        new_name = (name or current.name).strip()
        _check(new_name, value)
        await self._ensure_unique(new_name, current.id)
        record = await self._stores.credentials.update(
            CredentialRecord(
                id=current.id,
                name=new_name,
                value=SecretStr(value) if value is not None else current.value,
                description=description
                if description is not None
                else current.description,
                created_at=current.created_at,
                updated_at=self._clock.now(),
            )
        )
        await self._audit.record(
            "credential.update",
            actor=actor,
            target_type="credential",
            target_id=record.id,
            before={"name": current.name},
            after={"name": record.name, "value": MASK if value is not None else None},
        )
        return CredentialInfo.of(record)

    async def delete(self, ref: str, *, actor: str | None) -> None:
        """Delete a credential no server uses.

        Raises:
            ValidationFailed: a server still references it.
        """
        current = await self.get_record(ref)
        users = [
            s.name
            for s in await self._stores.servers.list()
            if current.id in (s.credential_id, s.oauth.client_secret_credential_id)
        ]
        if users:
            raise ValidationFailed(
                f"credential '{current.name}' is used by: {', '.join(users)}",
                fields={"credential": "in use"},
                hint="point those servers at another credential first",
            )
        await self._stores.credentials.delete(current.id)
        await self._audit.record(
            "credential.delete",
            actor=actor,
            target_type="credential",
            target_id=current.id,
            before={"name": current.name},
        )
