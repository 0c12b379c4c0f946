"""The MCP exchange without a token that discovery needs (PRM-2, PRM-5, HTTP7-7).

One implementation of the era rules Tether applies to raw answers: the tokenless probe
(:func:`unauthenticated_challenge`, which the hub's discovery and ``tether probe`` use)
and :class:`~tether.mcp.session.MCPSession` (which reads the same -32022 choice,
:func:`retry_version`, and the same modern-error test, :func:`is_modern_error`).

The probe sends what the request that triggered a connect would have sent, without a
token, to read the server's ``WWW-Authenticate`` challenge: its ``resource_metadata``
(PRM-3 step 1) and its ``scope`` (SCP-2 step 1). A server that lets the request through
is fine (PRM-5): discovery then uses the well-known URLs. Only status, headers and
-32022 errors are read; nothing is kept, and no session made here is reused with a
token (a session minted without credentials is not the user's).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from mcp.types import (
    HEADER_MISMATCH,
    METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    UNSUPPORTED_PROTOCOL_VERSION,
)
from mcp.types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from tether.net.fetch import Fetcher, HttpResponse, NetworkProfile
from tether.oauth._wire import load_json
from tether.oauth.challenge import BearerChallenge, bearer_challenge

__all__ = [
    "PROBE_PROTOCOL_VERSION",
    "STATELESS_PROTOCOL_VERSION",
    "Unauthenticated",
    "is_modern_error",
    "retry_version",
    "stateless_request",
    "supported_versions",
    "unauthenticated_challenge",
]

#: The revisions offered without a token: ``initialize``, else stateless requests.
PROBE_PROTOCOL_VERSION: Final = "2025-11-25"
STATELESS_PROTOCOL_VERSION: Final = "2026-07-28"
_CLIENT_INFO: Final = {"name": "tether", "version": "0"}
_ACCEPT: Final = "application/json, text/event-stream"

_MODERN_ERRORS: Final = (
    HEADER_MISMATCH,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    UNSUPPORTED_PROTOCOL_VERSION,
)
_MAX_ERROR_DEPTH: Final = 64


@dataclass(frozen=True, slots=True)
class Unauthenticated:
    """What the server answered to MCP requests without a token.

    Attributes:
        status: The status of the answer that decided (a 401/403, else the last one).
        content_type: Its ``Content-Type``.
        challenge: Its ``Bearer`` challenge, if any (RFC 6750 §3, RFC 9728 §5.1).
    """

    status: int
    content_type: str
    challenge: BearerChallenge | None

    @property
    def needs_auth(self) -> bool:
        """True for a 401 or 403."""
        return self.status in (401, 403)


def _initialize(version: str = PROBE_PROTOCOL_VERSION) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": _CLIENT_INFO,
        },
    }


def stateless_request(
    request_id: int | str,
    method: str,
    version: str = STATELESS_PROTOCOL_VERSION,
    *,
    params: Mapping[str, Any] | None = None,
    client_info: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """A 2026-07-28 request and its headers: the revision travels with every request.

    ``_meta`` carries the revision, ``clientInfo`` and the (empty) client capabilities
    (HTTP7-5); the headers ``MCP-Protocol-Version`` and ``Mcp-Method`` (HTTP7-3).
    """
    meta = {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientInfo": dict(client_info or _CLIENT_INFO),
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": method,
        "params": {**(params or {}), "_meta": meta},
    }
    return body, {"MCP-Protocol-Version": version, "Mcp-Method": method}


def supported_versions(body: bytes) -> list[str] | None:
    """``data.supported`` of an ``UnsupportedProtocolVersion`` (-32022) error body."""
    try:
        message = load_json(body)
    except ValueError:
        return None
    error = message.get("error") if isinstance(message, dict) else None
    if not isinstance(error, dict) or error.get("code") != UNSUPPORTED_PROTOCOL_VERSION:
        return None
    data = error.get("data")
    supported = data.get("supported") if isinstance(data, dict) else None
    if not isinstance(supported, list):
        return []
    return [v for v in supported if isinstance(v, str)]


def retry_version(supported: Sequence[str]) -> str | None:
    """The version to retry with after -32022 (HTTP7-7, design-notes R6.1.3).

    The newest version both sides speak, the stateless revisions first.
    """
    for known in (MODERN_PROTOCOL_VERSIONS, HANDSHAKE_PROTOCOL_VERSIONS):
        mutual = [v for v in known if v in supported]
        if mutual:
            return mutual[-1]
    return None


def is_modern_error(status: int, body: bytes) -> bool:
    """Whether a 4xx body is a JSON-RPC error only a stateless-revision server sends.

    MCP Streamable HTTP ``07`` "Backward Compatibility": -32020 (HeaderMismatch),
    -32021 (MissingRequiredClientCapability), -32022 (UnsupportedProtocolVersion),
    or -32601 answered with a 404. Anything else, an empty body included, is a
    server of an earlier revision (HTTP7-8).
    """
    try:
        message = load_json(body, max_depth=_MAX_ERROR_DEPTH)
    except ValueError:
        return False
    error = message.get("error") if isinstance(message, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if not isinstance(code, int) or isinstance(code, bool):
        return False
    return code in _MODERN_ERRORS or (status == 404 and code == METHOD_NOT_FOUND)


_Post = Callable[[dict[str, Any], dict[str, str]], Awaitable[HttpResponse]]


async def _stateless(post: _Post, version: str) -> tuple[HttpResponse, str | None]:
    """``server/discover`` then ``tools/list``; or, after -32022, the version to retry."""
    response = await post(*stateless_request(1, "server/discover", version))
    if response.status in (401, 403):
        return response, None
    if response.status >= 400:
        supported = supported_versions(response.body)
        return response, retry_version(supported) if supported else None
    answer = await post(*stateless_request(2, "tools/list", version))
    return (answer if answer.status in (401, 403) else response), None


async def _classic(post: _Post, version: str) -> HttpResponse:
    """``initialize``, then ``notifications/initialized`` and ``tools/list``."""
    response = await post(_initialize(version), {})
    if response.status >= 300:
        return response
    headers = {"MCP-Protocol-Version": version}
    session = response.header("mcp-session-id")
    if session:
        headers["Mcp-Session-Id"] = session
    for body in (
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
    ):
        answer = await post(body, headers)
        if answer.status in (401, 403):
            return answer
    return response


async def _stateless_first(post: _Post, version: str) -> HttpResponse:
    """The stateless requests, retried once at the version a -32022 error allows."""
    response, retry = await _stateless(post, version)
    if retry in MODERN_PROTOCOL_VERSIONS:
        response, _ = await _stateless(post, retry)
    elif retry is not None:
        response = await _classic(post, retry)
    return response


async def unauthenticated_challenge(
    fetcher: Fetcher,
    url: str,
    *,
    profile: NetworkProfile,
    server: str,
    protocol_version: str | None = None,
) -> Unauthenticated:
    """Ask the MCP server without a token and return its challenge (PRM-2, PRM-5).

    By default sends ``initialize``; when that passes (MCP 2025-11-25 lets a server
    challenge only later requests), ``notifications/initialized`` and ``tools/list`` in
    the same session. A server that refuses ``initialize`` with another 4xx may speak
    only the stateless 2026-07-28 revision: then ``server/discover`` and ``tools/list``.
    With ``protocol_version`` set to a stateless revision (the server's or the
    caller's preference) the stateless requests go first and ``initialize`` is sent
    only when the server's -32022 error lists no stateless revision (HTTP7-7).

    Stateless requests carry what every 2026-07-28 request carries (HTTP7-3, HTTP7-5):
    ``MCP-Protocol-Version`` and ``Mcp-Method`` headers and ``_meta`` with the revision,
    client info and capabilities. An ``UnsupportedProtocolVersion`` (-32022) answer is
    retried once with the newest version its ``data.supported`` shares with Tether.
    The first 401/403 decides. Only status, headers and -32022 errors are read; nothing
    is kept.

    Args:
        fetcher: The hub's guarded fetcher.
        url: The MCP endpoint.
        profile: The server's network profile.
        server: The server's name, for errors.
        protocol_version: The revision to try first; ``None`` or a handshake revision
            starts with ``initialize``.

    Returns:
        The deciding answer and its Bearer challenge.

    Raises:
        NetworkError: The server could not be reached.
        BlockedDestination: The SSRF policy refused the URL.
    """

    async def post(body: dict[str, Any], headers: dict[str, str]) -> HttpResponse:
        return await fetcher.request(
            "POST",
            url,
            profile=profile,
            server=server,
            step="challenge",
            headers={"Accept": _ACCEPT, **headers},
            json_body=body,
        )

    if protocol_version in MODERN_PROTOCOL_VERSIONS:
        response = await _stateless_first(post, protocol_version)
    else:
        response = await _classic(post, PROBE_PROTOCOL_VERSION)
        if 400 <= response.status < 500 and response.status not in (401, 403):
            answer = await _stateless_first(post, STATELESS_PROTOCOL_VERSION)
            if answer.status in (401, 403):
                response = answer
    return Unauthenticated(
        status=response.status,
        content_type=response.content_type,
        challenge=bearer_challenge(response.header_list("www-authenticate"))
        if response.status in (401, 403)
        else None,
    )
