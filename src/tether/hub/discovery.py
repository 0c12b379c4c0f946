"""Discovery with I/O (RFC 9728 §3, RFC 8414 §3, OIDC Discovery §4; PRM-*, ASM-*).

Drives the pure discovery generators through ``net/`` and stores the validated result.

The URL orders, parsing and validation live in :mod:`tether.oauth.discovery` and
:mod:`tether.oauth.models`; this module only sends the GETs they ask for and persists
what they return, so a fresh discovery runs at every connect start (reference §3.4
rule 9) and the code exchange, refresh and revocation reuse the stored one (G-13).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar
from urllib.parse import urlsplit

from tether.errors import TetherError
from tether.hub.context import HubContext, profile_of
from tether.oauth.challenge import BearerChallenge
from tether.oauth.discovery import (
    Fetched,
    authorization_server_discovery,
    protected_resource_discovery,
)
from tether.oauth.models import AuthorizationServerMetadata
from tether.store.base import DiscoveryRecord, ServerRecord

__all__ = ["Discoverer", "as_metadata"]

_T = TypeVar("_T")


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


def as_metadata(record: DiscoveryRecord) -> AuthorizationServerMetadata:
    """The stored AS metadata as a model (validated when it was stored)."""
    return AuthorizationServerMetadata.model_validate(dict(record.as_metadata))


class Discoverer:
    """Runs discovery for a server and stores the result."""

    def __init__(self, ctx: HubContext) -> None:
        self._ctx = ctx

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

    async def discover(
        self, server: ServerRecord, *, challenge: BearerChallenge | None = None
    ) -> DiscoveryRecord:
        """Discover afresh and store the result.

        Args:
            server: An OAuth server.
            challenge: The ``WWW-Authenticate`` Bearer challenge that triggered this,
                whose ``resource_metadata`` is tried first (PRM-3).

        Returns:
            The stored discovery.

        Raises:
            DiscoveryError: Metadata missing, malformed, or failing validation (resource
                mismatch, issuer mismatch, no S256 without the override).
            NetworkError: An endpoint could not be reached.
            BlockedDestination: A metadata URL is refused by the SSRF policy.
        """
        prm_url, prm = await self._drive(
            protected_resource_discovery(
                server.url,
                resource_metadata=challenge.resource_metadata if challenge else None,
            ),
            server,
        )
        issuer = server.oauth.authorization_server or prm.authorization_servers[0]
        as_url, metadata = await self._drive(
            authorization_server_discovery(
                issuer,
                allow_missing_pkce_metadata=server.oauth.allow_missing_pkce_metadata,
                allow_http=_is_loopback_url(issuer),
            ),
            server,
        )
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
        await self._ctx.stores.discovery.put(record)
        return record

    async def stored_or_fresh(self, server: ServerRecord) -> DiscoveryRecord:
        """The stored discovery, discovering afresh only when none is stored."""
        record = await self._ctx.stores.discovery.get(server.id)
        return record if record is not None else await self.discover(server)
