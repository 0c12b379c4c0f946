"""Audit events with secrets masked (reference-behaviour §3.21; design.md §1).

Credential references are masked, and any params value whose key looks secret
(``*secret*``, ``*token*``, ``*assertion*``, ``*password*``, ``*key*``) is replaced by a
mask. Token and secret *values* never reach this module: records carry them as
``SecretStr`` and :func:`server_view` leaves them out entirely.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

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
    """A JSON-safe, secret-free view of a server for audit entries and API responses."""
    oauth = server.oauth
    return {
        "id": server.id,
        "name": server.name,
        "url": server.url,
        "description": server.description,
        "enabled": server.enabled,
        "timeout_seconds": server.timeout_seconds,
        "auth_mode": server.auth_mode,
        "header_name": server.header_name,
        "header_scheme": server.header_scheme,
        "credential_id": MASK if server.credential_id else None,
        "allow_networks": list(server.allow_networks),
        "ca_bundle": server.ca_bundle,
        "oauth": {
            "registration": oauth.registration,
            "client_id": oauth.client_id,
            "client_secret_credential_id": (
                MASK if oauth.client_secret_credential_id else None
            ),
            "token_auth_method": oauth.token_auth_method,
            "scopes": oauth.scopes,
            "authorization_params": mask_params(oauth.authorization_params),
            "token_params": mask_params(oauth.token_params),
            "require_refresh_token": oauth.require_refresh_token,
            "allow_missing_pkce_metadata": oauth.allow_missing_pkce_metadata,
            "authorization_server": oauth.authorization_server,
            "per_user": oauth.per_user,
            "resource_match": oauth.resource_match,
            "resource_expected": oauth.resource_expected,
            "legacy_endpoints": oauth.legacy_endpoints,
        },
        "version": server.version,
    }


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
