"""The MCP server of ``tether demo``, built with the official ``mcp`` SDK (issue 10 item 10).

An ``MCPServer`` with three small tools, protected as an OAuth resource server: the SDK
serves the RFC 9728 protected-resource document and answers 401 with its
``WWW-Authenticate`` challenge; tokens are checked by RFC 7662 introspection at the demo
authorization server (``authserver.mjs``), including their RFC 8707 audience.
"""

from __future__ import annotations

import time
from typing import Any

import httpx2
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette

__all__ = ["SCOPE", "IntrospectionVerifier", "demo_mcp_app"]

SCOPE = "mcp:tools"
RS_CLIENT_ID = "demo-mcp"


class IntrospectionVerifier:
    """The SDK's ``TokenVerifier``: RFC 7662 introspection, then active, aud and exp."""

    def __init__(self, issuer: str, resource: str, secret: str) -> None:
        self._url = f"{issuer}/token/introspection"
        self._resource = resource
        self._auth = (RS_CLIENT_ID, secret)

    async def verify_token(self, token: str) -> AccessToken | None:
        """The token's grant, or ``None`` (the SDK then answers 401)."""
        try:
            async with httpx2.AsyncClient(timeout=10.0) as client:
                answer = await client.post(
                    self._url, data={"token": token}, auth=self._auth
                )
            claims: dict[str, Any] = answer.json() if answer.status_code == 200 else {}
        except (httpx2.HTTPError, ValueError):
            return None
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        exp = claims.get("exp")
        if not claims.get("active") or self._resource not in audiences:
            return None
        if isinstance(exp, int) and exp < time.time():
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id", "")),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=exp if isinstance(exp, int) else None,
            resource=self._resource,
            subject=claims.get("sub"),
        )


def demo_mcp_app(*, base_url: str, issuer: str, rs_secret: str) -> Starlette:
    """The demo server's ASGI app, answering at ``<base_url>/mcp``."""
    resource = f"{base_url}/mcp"
    server = MCPServer(
        "tether-demo",
        version="1.0.0",
        log_level="WARNING",
        instructions="A demo MCP server for Tether: add numbers, echo text, whoami.",
        token_verifier=IntrospectionVerifier(issuer, resource, rs_secret),
        auth=AuthSettings(
            issuer_url=issuer,
            resource_server_url=resource,
            required_scopes=[SCOPE],
            validate_token_resource=True,
        ),
    )

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Echo the text back.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Who the server thinks is calling (from the token).")
    def whoami() -> str:
        token = get_access_token()
        if token is None:  # pragma: no cover - the SDK refuses unauthenticated calls
            return "nobody"
        return f"user {token.subject} via client {token.client_id}"

    return server.streamable_http_app()
