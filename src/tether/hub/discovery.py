"""Discovery with I/O (RFC 9728 §3, RFC 8414 §3, OIDC Discovery §4; PRM-*, ASM-*).

Drives the pure discovery generators through ``net/`` and stores the validated result.

The URL orders, parsing and validation live in :mod:`tether.oauth.discovery` and
:mod:`tether.oauth.models`; this module only sends the GETs they ask for and persists
what they return, so a fresh discovery runs at every connect start (design-notes R3.4
rule 9) and the code exchange, refresh and revocation reuse the stored one (G-13).

:func:`unauthenticated_challenge` makes the request that would have triggered the flow
(an ``initialize`` POST without a token) so that a connect started by a person still
uses the server's ``WWW-Authenticate`` challenge: its ``resource_metadata`` (PRM-3 step
1) and its ``scope`` (SCP-2 step 1). A server that lets the request through is fine
(PRM-5): discovery then uses the well-known URLs.

The minimum connect (issue 9): :meth:`Discoverer.for_connect` keeps what a connect's
discovery found (the challenge, the PRM and the AS metadata) per server and issuer, for
:data:`DISCOVERY_TTL` or less when the metadata responses say so (``Cache-Control``
``max-age``; ``no-store``/``no-cache`` keep nothing, RFC 9111 §5.2.2). A second connect
of the same server, typically a second user of a per-user server, then skips the
tokenless probe, the PRM and the AS metadata and does only the authorization and the
token request. Any fresh discovery (a 401 that refresh cannot fix asks for one, see
``HubTokenSource``) replaces the entry, a failed one drops it, and a changed server
(a new ``version``) never matches it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from mcp.types import UNSUPPORTED_PROTOCOL_VERSION
from mcp.types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from tether.errors import DiscoveryError, NetworkError, RemoteError, TetherError
from tether.hub.context import HubContext, profile_of
from tether.net.fetch import Fetcher, HttpResponse, NetworkProfile
from tether.oauth._wire import load_json
from tether.oauth.challenge import BearerChallenge, bearer_challenge
from tether.oauth.discovery import (
    Fetched,
    authorization_server_discovery,
    legacy_authorization_server_discovery,
    protected_resource_discovery,
)
from tether.oauth.models import AuthorizationServerMetadata, ProtectedResourceMetadata
from tether.oauth.resource import canonical_resource
from tether.store.base import DiscoveryRecord, ServerRecord

__all__ = [
    "DISCOVERY_TTL",
    "Discoverer",
    "Unauthenticated",
    "as_metadata",
    "unauthenticated_challenge",
]

DISCOVERY_TTL: Final = timedelta(minutes=10)
"""Longest a connect reuses an earlier connect's discovery (shorter if ``max-age`` says)."""
_MAX_CACHED: Final = 1024

#: The revisions offered without a token: ``initialize``, else stateless requests.
PROBE_PROTOCOL_VERSION: Final = "2025-11-25"
STATELESS_PROTOCOL_VERSION: Final = "2026-07-28"
_CLIENT_INFO: Final = {"name": "tether", "version": "0"}
_ACCEPT: Final = "application/json, text/event-stream"

_T = TypeVar("_T")


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


def as_metadata(record: DiscoveryRecord) -> AuthorizationServerMetadata:
    """The stored AS metadata as a model (validated when it was stored)."""
    return AuthorizationServerMetadata.model_validate(dict(record.as_metadata))


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


def _stateless_request(
    request_id: int, method: str, version: str = STATELESS_PROTOCOL_VERSION
) -> tuple[dict[str, Any], dict[str, str]]:
    """A 2026-07-28 request and its headers: the revision travels with every request."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientInfo": _CLIENT_INFO,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": method,
        "params": {"_meta": meta},
    }
    return body, {"MCP-Protocol-Version": version, "Mcp-Method": method}


def _supported_versions(response: HttpResponse) -> list[str] | None:
    """``data.supported`` of an ``UnsupportedProtocolVersion`` (-32022) error body."""
    try:
        body = load_json(response.body)
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or error.get("code") != UNSUPPORTED_PROTOCOL_VERSION:
        return None
    data = error.get("data")
    supported = data.get("supported") if isinstance(data, dict) else None
    if not isinstance(supported, list):
        return []
    return [v for v in supported if isinstance(v, str)]


def _retry_version(supported: list[str]) -> str | None:
    """The newest version both sides speak, preferring the stateless revisions."""
    for known in (MODERN_PROTOCOL_VERSIONS, HANDSHAKE_PROTOCOL_VERSIONS):
        mutual = [v for v in known if v in supported]
        if mutual:
            return mutual[-1]
    return None


_Post = Callable[[dict[str, Any], dict[str, str]], Awaitable[HttpResponse]]


async def _stateless(post: _Post, version: str) -> tuple[HttpResponse, str | None]:
    """``server/discover`` then ``tools/list``; or, after -32022, the version to retry."""
    response = await post(*_stateless_request(1, "server/discover", version))
    if response.status in (401, 403):
        return response, None
    if response.status >= 400:
        supported = _supported_versions(response)
        return response, _retry_version(supported) if supported else None
    answer = await post(*_stateless_request(2, "tools/list", version))
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


def cache_lifetime(cache_control: list[str]) -> timedelta | None:
    """How long a response may be reused per its ``Cache-Control`` (RFC 9111 §5.2.2).

    Returns:
        Zero for ``no-store``/``no-cache`` (or a malformed ``max-age``), the
        ``max-age``, or ``None`` when the header sets no limit.
    """
    directives: dict[str, str] = {}
    for part in ",".join(cache_control).lower().split(","):
        name, _, value = part.strip().partition("=")
        directives.setdefault(name.strip(), value.strip().strip('"'))
    if "no-store" in directives or "no-cache" in directives:
        return timedelta(0)
    if "max-age" not in directives:
        return None
    age = directives["max-age"]
    if not age.isdigit() or len(age) > 10:
        return timedelta(0)
    return timedelta(seconds=int(age))


@dataclass(frozen=True, slots=True)
class _Cached:
    """One connect's discovery, kept for the next connect of the same server."""

    version: int
    record: DiscoveryRecord
    challenge: BearerChallenge | None
    until: datetime


class Discoverer:
    """Runs discovery for a server and stores the result."""

    def __init__(self, ctx: HubContext) -> None:
        self._ctx = ctx
        self._cached: dict[str, _Cached] = {}
        self._lifetime: dict[str, timedelta] = {}  # per server, while discovering

    async def for_connect(
        self, server: ServerRecord, challenge: BearerChallenge | None
    ) -> tuple[DiscoveryRecord, BearerChallenge | None]:
        """Discovery for a connect start, and the challenge it used (issue 9).

        Without a caller's ``challenge``, an earlier connect's discovery of this server
        (same ``version``, within its lifetime) is reused with its challenge: no probe,
        no metadata request. Otherwise the server is probed without a token (unless
        the caller brought its challenge) and discovered afresh.

        Raises:
            DiscoveryError: Discovery or metadata validation failed.
            NetworkError: An endpoint could not be reached.
        """
        if challenge is None:
            cached = self._cached.get(server.id)
            if (
                cached is not None
                and cached.version == server.version
                and self._ctx.clock.now() < cached.until
            ):
                return cached.record, cached.challenge
            challenge = await self.challenge(server)
        # grants refresh with the stored discovery: a connect replaces it only when
        # it completes (issue 11 item 4); a first connect has nothing to protect
        stored = await self._ctx.stores.discovery.get(server.id)
        record = await self.discover(
            server, challenge=challenge, persist=stored is None
        )
        if server.id in self._cached:
            self._cached[server.id] = dataclasses.replace(
                self._cached[server.id], challenge=challenge
            )
        return record, challenge

    def forget(self, server_id: str) -> None:
        """Drop a server's cached discovery; the next connect discovers afresh."""
        self._cached.pop(server_id, None)

    def _keep(self, server: ServerRecord, record: DiscoveryRecord) -> None:
        lifetime = min(DISCOVERY_TTL, self._lifetime.pop(server.id, DISCOVERY_TTL))
        if lifetime <= timedelta(0):
            self.forget(server.id)
            return
        if server.id not in self._cached and len(self._cached) >= _MAX_CACHED:
            self._cached.pop(next(iter(self._cached)))
        self._cached[server.id] = _Cached(
            server.version, record, None, record.fetched_at + lifetime
        )

    async def _drive(
        self, flow: Generator[str, Fetched, _T], server: ServerRecord
    ) -> _T:
        url = next(flow)
        while True:
            response = await self._ctx.fetcher.request(
                "GET",
                url,
                profile=profile_of(server),
                server=server.name,
                step="discovery",
            )
            lifetime = cache_lifetime(response.header_list("cache-control"))
            if lifetime is not None:
                self._lifetime[server.id] = min(
                    lifetime, self._lifetime.get(server.id, lifetime)
                )
            fetched = Fetched(
                status=response.status,
                content_type=response.content_type,
                body=response.body,
            )
            try:
                url = flow.send(fetched)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            except TetherError as exc:
                # GEN-4: name the admin's server; the metadata URL stays in the details
                if exc.server != server.name:
                    exc.details.setdefault("url", exc.server or url)
                    exc.server = server.name
                raise

    async def challenge(self, server: ServerRecord) -> BearerChallenge | None:
        """The server's challenge to a request without a token, if it gives one.

        A server that cannot be reached or answers oddly yields ``None``: discovery then
        goes on with the well-known URLs and reports its own errors (PRM-3, PRM-5).
        """
        try:
            answer = await unauthenticated_challenge(
                self._ctx.fetcher,
                server.url,
                profile=profile_of(server),
                server=server.name,
            )
        except (NetworkError, RemoteError):
            return None
        return answer.challenge

    async def discover(
        self,
        server: ServerRecord,
        *,
        challenge: BearerChallenge | None = None,
        persist: bool = True,
    ) -> DiscoveryRecord:
        """Discover afresh and store the result.

        Args:
            server: An OAuth server.
            challenge: The ``WWW-Authenticate`` Bearer challenge that triggered this,
                whose ``resource_metadata`` is tried first (PRM-3).
            persist: Store it; ``False`` leaves the stored discovery, which live
                grants refresh with, to the caller (a connect stores its own when it
                completes, issue 11 item 4).

        Returns:
            The stored discovery.

        Raises:
            DiscoveryError: Metadata missing, malformed, or failing validation (resource
                mismatch, issuer mismatch, no S256 without the override).
            NetworkError: An endpoint could not be reached.
            BlockedDestination: A metadata URL is refused by the SSRF policy.
        """
        self.forget(server.id)
        self._lifetime.pop(server.id, None)
        oauth = server.oauth
        try:
            prm_url, prm = await self._drive(
                protected_resource_discovery(
                    server.url,
                    resource_metadata=challenge.resource_metadata
                    if challenge
                    else None,
                    resource_match=oauth.resource_match,
                    expected_resource=oauth.resource_expected,
                ),
                server,
            )
        except DiscoveryError as exc:
            if not (oauth.legacy_endpoints and exc.details.get("missing")):
                raise
            return await self._store(
                server, *await self._legacy(server), persist=persist
            )
        issuer = oauth.authorization_server or prm.authorization_servers[0]
        as_url, metadata = await self._drive(
            authorization_server_discovery(
                issuer,
                allow_missing_pkce_metadata=oauth.allow_missing_pkce_metadata,
                allow_http=_is_loopback_url(issuer),
            ),
            server,
        )
        return await self._store(
            server, prm_url, prm, as_url, metadata, persist=persist
        )

    async def _legacy(
        self, server: ServerRecord
    ) -> tuple[None, ProtectedResourceMetadata, str, AuthorizationServerMetadata]:
        """The ``legacy_endpoints`` override (ASM-9): MCP 2025-03-26 discovery."""
        as_url, metadata = await self._drive(
            legacy_authorization_server_discovery(
                server.url,
                allow_missing_pkce_metadata=server.oauth.allow_missing_pkce_metadata,
                allow_http=_is_loopback_url(server.url),
            ),
            server,
        )
        # No PRM: the server URL itself is the resource (RES-2, RES-4).
        prm = ProtectedResourceMetadata.model_validate(
            {
                "resource": canonical_resource(server.url),
                "authorization_servers": [metadata.issuer],
            }
        )
        return None, prm, as_url, metadata

    async def _store(
        self,
        server: ServerRecord,
        prm_url: str | None,
        prm: ProtectedResourceMetadata,
        as_url: str,
        metadata: AuthorizationServerMetadata,
        *,
        persist: bool,
    ) -> DiscoveryRecord:
        record = DiscoveryRecord(
            server_id=server.id,
            resource=prm.resource,
            resource_metadata_url=prm_url,
            authorization_servers=tuple(prm.authorization_servers),
            scopes_supported=tuple(prm.scopes_supported or ()),
            issuer=metadata.issuer,
            as_metadata=metadata.model_dump(mode="json", exclude_none=True),
            as_metadata_url=as_url,
            fetched_at=self._ctx.clock.now(),
        )
        if persist:
            await self._ctx.stores.discovery.put(record)
        self._keep(server, record)
        return record

    async def stored_or_fresh(self, server: ServerRecord) -> DiscoveryRecord:
        """The stored discovery, discovering afresh only when none is stored."""
        record = await self._ctx.stores.discovery.get(server.id)
        return record if record is not None else await self.discover(server)
