"""Discovery with I/O (RFC 9728 §3, RFC 8414 §3, OIDC Discovery §4; PRM-*, ASM-*).

Drives the pure discovery generators through ``net/`` and stores the validated result.

The URL orders, parsing and validation live in :mod:`tether.oauth.discovery` and
:mod:`tether.oauth.models`; this module only sends the GETs they ask for and persists
what they return, so a fresh discovery runs at every connect start (design-notes R3.4
rule 9) and the code exchange, refresh and revocation reuse the stored one (G-13).

:func:`unauthenticated_challenge` (:mod:`tether.mcp.tokenless`, re-exported here) makes
the request that would have triggered the flow (an ``initialize`` POST without a token)
so that a connect started by a person still uses the server's ``WWW-Authenticate``
challenge: its ``resource_metadata`` (PRM-3 step 1) and its ``scope`` (SCP-2 step 1). A
server that lets the request through is fine (PRM-5): discovery then uses the well-known
URLs. A connect whose discovery is cached sends no probe at all.

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
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, TypeVar
from urllib.parse import urlsplit

from tether.errors import DiscoveryError, NetworkError, RemoteError, TetherError
from tether.hub.context import HubContext, profile_of
from tether.mcp.tokenless import Unauthenticated, unauthenticated_challenge
from tether.oauth.challenge import BearerChallenge
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

_T = TypeVar("_T")


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


def as_metadata(record: DiscoveryRecord) -> AuthorizationServerMetadata:
    """The stored AS metadata as a model (validated when it was stored)."""
    return AuthorizationServerMetadata.model_validate(dict(record.as_metadata))


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
