"""A scripted stand-in for the hub's fetcher, for error injection without a peer.

Every request is recorded as a :class:`Sent`; a subclass (or a test) says how to answer
by overriding :meth:`FakeFetcher.answer`, which may also raise a Tether error as the
real fetcher would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tether.hub.audit import Auditor
from tether.hub.clock import Clock, SystemRandom
from tether.hub.context import HubConfig, HubContext
from tether.net.fetch import Fetcher, HttpResponse, NetworkProfile
from tether.net.policy import NetworkPolicy
from tether.store.base import (
    ClientRegistration,
    Connection,
    DiscoveryRecord,
    RegistrationSource,
    ServerRecord,
    Stores,
)


@dataclass(frozen=True)
class Sent:
    """One request the hub sent."""

    method: str
    url: str
    step: str
    headers: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)
    json_body: Any = None


class FakeFetcher(Fetcher):
    """Records requests and answers them with :meth:`answer`."""

    def __init__(self) -> None:
        super().__init__(NetworkPolicy())
        self.requests: list[Sent] = []
        self.before: Callable[[], Awaitable[None]] | None = None
        """Awaited inside each request, before it is answered (to race a writer)."""

    def answer(self, sent: Sent) -> HttpResponse:
        """The response to ``sent``; override (raise to inject a failure)."""
        raise NotImplementedError

    async def request(
        self,
        method: str,
        url: str,
        *,
        profile: NetworkProfile,
        server: str | None,
        step: str,
        headers: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> HttpResponse:
        """Record the request, then answer it."""
        if self.before is not None:
            await self.before()
        sent = Sent(method, url, step, dict(headers or {}), dict(form or {}), json_body)
        self.requests.append(sent)
        return self.answer(sent)


async def seed_grant(
    stores: Stores,
    server: ServerRecord,
    connection: Connection,
    *,
    endpoints: Mapping[str, str],
    fetched_at: datetime,
    source: RegistrationSource = "manual",
) -> ServerRecord:
    """Store ``server`` with discovery, a client ``c1`` and ``connection``.

    The issuer is the connection's; ``endpoints`` are the AS metadata's
    (``token_endpoint``, ``revocation_endpoint`` …), added to its issuer, authorization
    endpoint and S256.
    """
    issuer = connection.issuer or ""
    stored = await stores.servers.add(server)
    await stores.discovery.put(
        DiscoveryRecord(
            server_id=server.id,
            resource=server.url,
            resource_metadata_url=None,
            authorization_servers=(issuer,),
            scopes_supported=(),
            issuer=issuer,
            as_metadata_url=issuer,
            as_metadata={
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/a",
                "code_challenge_methods_supported": ["S256"],
                **endpoints,
            },
            fetched_at=fetched_at,
        )
    )
    await stores.registrations.put(
        ClientRegistration(
            server_id=server.id,
            issuer=issuer,
            client_id="c1",
            source=source,
            auth_method="none",
        )
    )
    await stores.connections.save(connection, expected_version=0)
    return stored


def hub_context(stores: Stores, fetcher: Fetcher, clock: Clock) -> HubContext:
    """The hub's context over ``stores`` and a scripted ``fetcher``."""
    return HubContext(
        stores=stores,
        clock=clock,
        random=SystemRandom(),
        fetcher=fetcher,
        auditor=Auditor(stores.audit, clock),
        config=HubConfig(redirect_uri="https://tether.example/cb"),
    )
