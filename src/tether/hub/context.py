"""What every hub use case shares: stores, clock, randomness, the network, settings.

Built once by the :class:`~tether.hub.tether.Tether` facade from plain arguments; the hub
never reads settings or the environment itself (design-notes D2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from tether.hub.audit import Auditor
from tether.hub.clock import Clock, Random
from tether.mcp.elicitation import ElicitationHandler
from tether.net.fetch import Fetcher, NetworkProfile
from tether.oauth.redirect_uri import check_redirect_uri
from tether.store.base import ServerRecord, Stores
from tether.store.journal import TokenJournal

__all__ = ["HubConfig", "HubContext", "profile_of"]


@dataclass(frozen=True, slots=True)
class HubConfig:
    """Installation-wide values the OAuth flow needs.

    Attributes:
        redirect_uri: Tether's OAuth callback URL (comes from configuration, never from
            forwarded headers; SEC-6): https, or http on a loopback host, checked here.
        client_metadata_url: URL of the client ID metadata document Tether serves, when
            it is reachable as public https (CIMD-1); ``None`` disables CIMD.
        client_name: ``client_name`` for dynamic registration and the CIMD document.
        pending_ttl: Lifetime of a started connect (AUTHZ-4: 10 minutes).
        refresh_margin: Refresh this long before expiry (RFR-2: 60 s).
        elicitation: Answers servers' ``elicitation/create``; ``None`` declines every
            one (:mod:`tether.mcp.elicitation`).
    """

    redirect_uri: str
    client_metadata_url: str | None = None
    client_name: str = "Tether"
    pending_ttl: timedelta = timedelta(minutes=10)
    refresh_margin: timedelta = timedelta(seconds=60)
    extra: dict[str, str] = field(default_factory=dict)
    elicitation: ElicitationHandler | None = None

    def __post_init__(self) -> None:
        """Refuse a redirect URI that could send codes astray (https, or loopback http).

        Raises:
            ConfigurationError: See :func:`tether.oauth.redirect_uri.check_redirect_uri`.
        """
        check_redirect_uri(self.redirect_uri)


@dataclass(slots=True)
class HubContext:
    """Dependencies shared by the hub's services."""

    stores: Stores
    clock: Clock
    random: Random
    fetcher: Fetcher
    auditor: Auditor
    config: HubConfig
    journal: TokenJournal | None = None
    """The sealed token journal (DUR-1); ``None`` for memory stores."""


def profile_of(server: ServerRecord) -> NetworkProfile:
    """The network profile of a server: timeout, own allowlist, CA bundle."""
    return NetworkProfile(
        timeout=server.timeout_seconds,
        allow_networks=tuple(server.allow_networks),
        ca_bundle=server.ca_bundle,
    )
