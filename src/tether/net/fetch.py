"""Plain-typed HTTP for the hub's OAuth steps (discovery, registration, token, revocation).

The hub may not import ``httpx2`` (import-linter), so it talks to this small façade that
takes and returns plain values. Every request goes through :func:`guarded_client`
(SSRF-1 … SSRF-9), never follows redirects (design-notes R3.1 6), is bounded by
the server's timeout as an overall deadline, and has its body capped (G-22). Clients are
pooled per network profile so TLS connections are reused across steps.
"""

from __future__ import annotations

import contextvars
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2

from tether.errors import TetherError
from tether.net.backend import Resolver, system_resolver
from tether.net.browser import follow_authorization
from tether.net.client import (
    DEFAULT_MAX_BODY,
    deadline,
    guarded_client,
    make_ssl_context,
    mapped_errors,
)
from tether.net.policy import NetworkPolicy
from tether.net.transport import GuardedTransport

__all__ = [
    "Fetcher",
    "HttpResponse",
    "NetworkProfile",
    "RequestObserver",
    "RequestRecord",
]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One HTTP request a Tether sent, as an observer sees it (never a header or body).

    Attributes:
        method: ``GET``, ``POST``, ``DELETE``.
        url: The full URL; its query may carry a secret, so an observer that prints or
            stores it masks those parameters first.
        status: The response status, or ``None`` when no response came.
        content_type: The response's ``Content-Type`` (``""`` without one).
        step: The OAuth flow step that sent it (``challenge``, ``discovery``,
            ``registration``, ``token``, ``revocation``, …), or ``None`` for the MCP
            session's own requests.
        error: The Tether error code when no response came.
        rpc: The JSON-RPC method of an MCP request (``initialize``, ``tools/list``),
            read from its body; ``None`` for anything else.
    """

    method: str
    url: str
    status: int | None
    content_type: str = ""
    step: str | None = None
    error: str | None = None
    rpc: str | None = None


RequestObserver = Callable[[RequestRecord], None]
"""Told of every request a :class:`Fetcher`'s clients send (issue 9: request lists)."""

# The flow step of the request being sent (set by Fetcher.request, read by the hook).
_STEP: contextvars.ContextVar[list[str | bool] | None] = contextvars.ContextVar(
    "tether_fetch_step", default=None
)


@dataclass(frozen=True, slots=True)
class NetworkProfile:
    """How one server may be reached: its timeout and relaxations (design-notes D3.6).

    Attributes:
        timeout: Seconds for the whole exchange (design-notes R2.1 ``timeout_seconds``).
        allow_networks: The server's own allowlist, added to the installation's.
        ca_bundle: PEM file of CAs to trust for this server.
    """

    timeout: float = 30.0
    allow_networks: tuple[str, ...] = ()
    ca_bundle: str | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete, size-capped response.

    Attributes:
        status: HTTP status code.
        headers: Header values by lower-cased name, repeated headers kept in order.
        body: The body bytes.
        url: The requested URL.
    """

    status: int
    headers: Mapping[str, Sequence[str]]
    body: bytes
    url: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        """The ``Content-Type`` header, or ``""``."""
        values = self.headers.get("content-type", ())
        return values[0] if values else ""

    def header(self, name: str) -> str | None:
        """The first value of a header, or ``None``."""
        values = self.headers.get(name.lower(), ())
        return values[0] if values else None

    def header_list(self, name: str) -> list[str]:
        """Every value of a header (e.g. several ``WWW-Authenticate``)."""
        return list(self.headers.get(name.lower(), ()))


def _rpc_method(request: httpx2.Request) -> str | None:
    """The JSON-RPC ``method`` of a request's (already sent, in-memory) JSON body."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        body = json.loads(request.content)
    except (ValueError, httpx2.RequestNotRead):
        return None
    method = body.get("method") if isinstance(body, dict) else None
    return method if isinstance(method, str) else None


class Fetcher:
    """Sends the OAuth steps' requests through guarded, pooled clients.

    Args:
        policy: The installation's SSRF policy (its allowlist applies to every server).
        resolver: Name resolution; injectable for tests.
        user_agent: ``User-Agent`` header.
        max_body: Response size cap in bytes.
        ca_bundle: The installation's CA bundle (PEM), trusted instead of the system's
            for every server without one of its own.
        idle_seconds: A pooled client that started no request for this long and has
            none in flight has its connections closed (it stays usable; its next
            request reconnects). Checked on the fetcher's own requests.
        clock: Monotonic seconds; injectable for tests.
        observer: Told of every request any of its clients sends, OAuth steps and MCP
            sessions alike (``tether probe`` lists them); it must not raise or block.

    Clients are pooled per network profile — the policy, CA bundle and timeout a server
    is reached with — and shared by every subject of every server with that profile;
    nothing in them belongs to a subject (no cookies, no default credentials).

    Raises:
        ConfigurationError: The CA bundle cannot be loaded.
    """

    def __init__(
        self,
        policy: NetworkPolicy,
        *,
        resolver: Resolver = system_resolver,
        user_agent: str = "Tether",
        max_body: int = DEFAULT_MAX_BODY,
        ca_bundle: str | None = None,
        idle_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        observer: RequestObserver | None = None,
    ) -> None:
        if ca_bundle is not None:
            make_ssl_context(ca_bundle)  # a bad bundle fails now, not at first use
        self._policy = policy
        self._resolver = resolver
        self._user_agent = user_agent
        self._max_body = max_body
        self._ca_bundle = ca_bundle
        self._clients: dict[NetworkProfile, httpx2.AsyncClient] = {}
        self._transports: dict[NetworkProfile, GuardedTransport] = {}
        self._idle_seconds = idle_seconds
        self._clock = clock
        #: per profile: the transport's request count when last seen moving, and when
        self._marks: dict[NetworkProfile, tuple[int, float]] = {}
        self._next_sweep = clock() + idle_seconds / 2
        self._observer = observer

    async def _observe(self, response: httpx2.Response) -> None:
        """The clients' response hook: tell the observer (headers only, no body)."""
        if self._observer is None:
            return
        current = _STEP.get()
        step = None
        if current is not None:
            step = str(current[0])
            current[1] = True  # answered: Fetcher.request records no error for it
        request = response.request
        self._observer(
            RequestRecord(
                request.method,
                str(request.url),
                response.status_code,
                response.headers.get("content-type", ""),
                step,
                rpc=_rpc_method(request),
            )
        )

    @property
    def policy(self) -> NetworkPolicy:
        """The installation-wide SSRF policy."""
        return self._policy

    def policy_for(self, profile: NetworkProfile) -> NetworkPolicy:
        """The installation policy merged with a server's own allowlist."""
        if not profile.allow_networks:
            return self._policy
        return self._policy.merged(
            NetworkPolicy.from_allowlist(
                profile.allow_networks, require_https=self._policy.require_https
            )
        )

    def ca_bundle_for(self, profile: NetworkProfile) -> str | None:
        """The CA bundle for a server: its own, else the installation's, else none."""
        return profile.ca_bundle or self._ca_bundle

    def client(self, profile: NetworkProfile) -> httpx2.AsyncClient:
        """The pooled guarded client for a profile (no redirects)."""
        client = self._clients.get(profile)
        if client is None:
            client = guarded_client(
                self.policy_for(profile),
                timeout=profile.timeout,
                follow_redirects=False,
                max_body=self._max_body,
                ca_bundle=self.ca_bundle_for(profile),
                resolver=self._resolver,
                headers={"User-Agent": self._user_agent},
            )
            self._clients[profile] = client
            if self._observer is not None:
                client.event_hooks = {"response": [self._observe]}
            transport = client._transport  # guarded_client built it
            if isinstance(transport, GuardedTransport):
                self._transports[profile] = transport
        return client

    async def close_idle(self) -> int:
        """Close the connections of pooled clients idle for ``idle_seconds``.

        Runs at most every half ``idle_seconds``; :meth:`request` calls it. A client is
        idle when it started no request since the previous look and has none in flight
        (an open MCP stream keeps it busy).

        Returns:
            How many clients had their connections closed.
        """
        now = self._clock()
        if now < self._next_sweep:
            return 0
        self._next_sweep = now + self._idle_seconds / 2
        closed = 0
        for profile, transport in list(self._transports.items()):
            started, since = self._marks.get(profile, (-1, now))
            if transport.started != started or transport.open:
                self._marks[profile] = (transport.started, now)
            elif now - since >= self._idle_seconds and await transport.close_idle():
                # nothing left to close until it is used again
                self._marks[profile] = (transport.started, math.inf)
                closed += 1
        return closed

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
        """Send one request and read the whole (capped) body.

        Args:
            method: ``GET`` or ``POST``.
            url: Absolute URL; checked by the SSRF policy before connecting.
            profile: The server's network profile.
            server: Server name for error messages.
            step: Flow step for error messages (``"discovery"``, ``"token"``, …).
            headers: Extra headers.
            form: ``application/x-www-form-urlencoded`` body.
            json_body: JSON body.

        Returns:
            The response, whatever its status.

        Raises:
            BlockedDestination: The SSRF policy refused the URL or an address.
            NetworkError: Connection failure, timeout (``RequestTimeout``) or a body
                over the cap (``ResponseTooLarge``).
        """
        send_headers = {"Accept": "application/json", **(headers or {})}
        content: bytes | None = None
        if form is not None:
            content = httpx2.QueryParams(dict(form)).__str__().encode("ascii")
            send_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif json_body is not None:
            content = json.dumps(json_body).encode("utf-8")
            send_headers.setdefault("Content-Type", "application/json")
        await self.close_idle()
        client = self.client(profile)
        marker: list[str | bool] = [step, False]
        token = _STEP.set(marker)
        try:
            with mapped_errors(server=server, step=step):
                async with deadline(profile.timeout, server=server, step=step):
                    response = await client.request(
                        method, url, headers=send_headers, content=content
                    )
                    body = await response.aread()
        except TetherError as exc:
            if self._observer is not None and not marker[1]:
                self._observer(RequestRecord(method, url, None, "", step, exc.code))
            raise
        finally:
            _STEP.reset(token)
        collected: dict[str, list[str]] = {}
        for name, value in response.headers.multi_items():
            collected.setdefault(name.lower(), []).append(value)
        return HttpResponse(response.status_code, collected, body, url)

    async def follow_authorization(
        self, authorization_url: str, redirect_uri: str, *, profile: NetworkProfile
    ) -> dict[str, str | list[str]]:
        """Complete an authorization request headlessly, under the server's settings.

        The same network settings as every other request of the server's flows: the
        installation's allowlist merged with the server's own (and no wider), the
        server's CA bundle (else the installation's), its timeout as the deadline, and this fetcher's resolver
        (issue 8 item 5). See :func:`tether.net.browser.follow_authorization`.

        Args:
            authorization_url: From the start of a connect.
            redirect_uri: Tether's callback URL; the hop that reaches it ends the walk.
            profile: The server's network profile.

        Returns:
            The callback's query parameters.
        """
        return await follow_authorization(
            authorization_url,
            redirect_uri,
            self.policy_for(profile),
            seconds=profile.timeout,
            ca_bundle=self.ca_bundle_for(profile),
            resolver=self._resolver,
        )

    async def aclose(self) -> None:
        """Close every pooled client."""
        clients, self._clients = list(self._clients.values()), {}
        self._transports, self._marks = {}, {}
        for client in clients:
            await client.aclose()
