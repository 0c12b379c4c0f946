"""Typed builders of metadata payloads shared by the oauth tests."""

from __future__ import annotations

import json
from typing import Any

from tether.oauth.models import AuthorizationServerMetadata

ISSUER = "https://auth.example.com"
SERVER = "https://mcp.example.com/mcp"
REDIRECT = "https://tether.example.org/oauth/callback"


def as_payload(issuer: str = ISSUER, **changes: Any) -> dict[str, Any]:
    """A valid RFC 8414 document; ``changes`` set (or, with ``None``, remove) members."""
    payload: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "registration_endpoint": f"{issuer}/register",
        "revocation_endpoint": f"{issuer}/revoke",
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
    }
    for key, value in changes.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    return payload


def as_metadata(issuer: str = ISSUER, **changes: Any) -> AuthorizationServerMetadata:
    """Parsed metadata built from :func:`as_payload`."""
    return AuthorizationServerMetadata.model_validate(as_payload(issuer, **changes))


def as_json(issuer: str = ISSUER, **changes: Any) -> bytes:
    """:func:`as_payload` as a JSON body."""
    return json.dumps(as_payload(issuer, **changes)).encode()


def prm_json(resource: str = SERVER, **changes: Any) -> bytes:
    """A protected resource metadata body."""
    payload: dict[str, Any] = {
        "resource": resource,
        "authorization_servers": [ISSUER],
        "scopes_supported": ["mcp:read", "mcp:write"],
    }
    payload.update(changes)
    return json.dumps(payload).encode()
