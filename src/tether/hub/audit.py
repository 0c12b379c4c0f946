"""Audit events with secrets masked (design-notes R3.21; D1).

Credential references are masked, and any params value whose key looks secret
(``*secret*``, ``*token*``, ``*assertion*``, ``*password*``, ``*key*``) is replaced by a
mask. Token and secret *values* never reach this module: records carry them as
``SecretStr`` and :func:`server_view` masks any it meets.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from pydantic import SecretStr

from tether.hub.clock import Clock
from tether.store.base import AuditEvent, AuditLog, ServerRecord

__all__ = ["MASK", "Auditor", "mask_params", "server_view"]

MASK: Final = "********"
_SECRET_KEY = re.compile(r"secret|token|assertion|password|passwd|key|credential", re.I)


def mask_params(params: Mapping[str, str | None]) -> dict[str, str | None]:
    """Return ``params`` with values of secret-looking keys masked."""
    return {
        key: (MASK if value is not None and _SECRET_KEY.search(key) else value)
        for key, value in params.items()
    }


def server_view(server: ServerRecord) -> dict[str, Any]:
    """A JSON-safe, secret-free view of a server for audit entries and API responses.

    Derived from the record's own fields (and its ``oauth`` settings'), so a field added
    to :class:`~tether.store.base.ServerRecord` or
    :class:`~tether.store.base.OAuthSettings` appears in every audit entry's before and
    after without anyone remembering to list it. Credential references (fields named
    ``*credential_id``) are masked: the entry says whether one is set, not which.
    Params values of secret-looking keys are masked (:func:`mask_params`), and so would
    be a ``SecretStr``.
    """
    return _record_view(server)


def _record_view(record: Any) -> dict[str, Any]:
    return {
        item.name: _field_view(item.name, getattr(record, item.name))
        for item in dataclasses.fields(record)
    }


def _field_view(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name.endswith("credential_id") or isinstance(value, SecretStr):
        return MASK
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _record_view(value)
    if isinstance(value, Mapping):
        return mask_params(value)
    if isinstance(value, tuple | list | frozenset | set):
        return [_field_view(name, item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class Auditor:
    """Writes audit events through the store with the hub's clock."""

    def __init__(self, log: AuditLog, clock: Clock) -> None:
        self._log = log
        self._clock = clock

    async def record(
        self,
        action: str,
        *,
        actor: str | None,
        target_type: str,
        target_id: str | None,
        server_id: str | None = None,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
        detail: str | None = None,
    ) -> None:
        """Append one event (callers pass already-masked views)."""
        await self._log.append(
            AuditEvent(
                at=self._clock.now(),
                actor=actor,
                action=action,
                target_type=target_type,
                target_id=target_id,
                server_id=server_id,
                before=before,
                after=after,
                detail=detail,
            )
        )
