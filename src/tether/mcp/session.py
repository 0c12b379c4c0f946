"""One MCP connection per (server, subject), over the official SDK (design-notes D3.2).

:class:`MCPSession` wraps ``mcp.Client`` on ``streamable_http_client(url,
http_client=...)``. It speaks every revision the SDK speaks: the stateful handshake
revisions 2025-03-26, 2025-06-18 and 2025-11-25 (``initialize``, ``Mcp-Session-Id``) and
the stateless 2026-07-28 revision (``server/discover``, no session). ``mode="auto"``
probes ``server/discover`` and falls back to ``initialize`` (HTTP7-8, design-notes
R6.1); the negotiated :attr:`~MCPSession.protocol_version` can be stored per server and
given back as ``mode`` (``"legacy"`` for a handshake revision, or the modern version
itself) so the next connection does not probe again (R6.4.3).

The minimum connect (issue 9, R6.1.7): :data:`MODERN_FIRST` sends no probe at all, since
``server/discover`` is optional for a 2026-07-28 client (MCP Base ``07``
*Versioning*): the first request goes out at 2026-07-28 and tells the era; a 4xx whose
body is not a modern JSON-RPC error falls back to ``initialize`` and repeats it
(Streamable HTTP ``07`` "Backward Compatibility"). What a connection learns is kept per
endpoint in an :class:`EraMemory` that sessions share, so the next session adopts era
and capabilities without a request, and capabilities are asked
(:meth:`MCPSession.describe`) only when something needs them.

What Tether adds to the SDK at this seam:

* **Session expiry** (HTTP-8): an HTTP 404 to a request carrying ``Mcp-Session-Id`` makes
  a fresh connection (new ``initialize``) and repeats the request once; a second expiry
  raises :class:`~tether.errors.SessionExpired` (R6.4.2).
* **An overall deadline** per request (the server's timeout, TOOL-5): a server that
  streams keep-alives forever still ends in :class:`~tether.errors.RequestTimeout`.
* **A broken response stream** in the stateless revision is re-issued once with a new
  request id (HTTP7-1, R6.2.5).
* **Errors become Tether errors** (design-notes S6): a JSON-RPC error is
  :class:`~tether.errors.MCPProtocolError` with its ``code`` and ``message`` in
  ``details``; HTTP failures and Tether errors raised below (the guarded transport,
  :class:`~tether.mcp.auth.BearerAuth`) keep their type. A result with ``isError: true``
  is returned, not raised (TOOL-1).
* **``notifications/tools/list_changed``** calls ``on_tools_changed`` (HTTP-11). In the
  stateful revisions the SDK hears it on its GET stream. The stateless revision has no
  such stream: when the server advertises ``tools.listChanged`` (or its capabilities are
  not known yet), a watching session keeps a ``subscriptions/listen`` stream for
  tool-list changes open in the background (SEP-2575), in one task of its own apart
  from any SDK connection (:mod:`tether.mcp.listen`, design-notes R6.4.7), re-opens it
  with backoff when it ends or stays silent for ``LISTEN_READ_TIMEOUT``, and calls
  ``on_tools_gap`` (revalidate) after a re-open, since events are not replayed.
  Requests wait for its acknowledgment at most ``LISTEN_WAIT`` and never fail because
  of it. A session made with
  ``watch_tools=False`` opens none until :meth:`MCPSession.watch_tools`. Long-lived
  streams are marked for the guarded transport's stream pool, so they never hold a
  connection requests wait for (``tether.net.transport.LONG_LIVED``).
* **Released connections** (R6.4.7): :meth:`MCPSession.release` closes an idle
  stateless connection and keeps the subscription; the next request connects again at
  the remembered era, sending nothing extra.

Why the SDK is wrapped the way it is. The SDK's transport runs each POST in a task of a
task group entered by whoever opened the connection; an exception from ``httpx2``
(a refused connection, a timeout, an error raised by an ``httpx2.Auth``) crashes that
group, cancels the opener's task and fails every request in flight. So (1) each
connection lives in its own runner task, and (2) the SDK gets a thin client,
:class:`_ObservingClient`, that sends through the caller's ``httpx2.AsyncClient`` (so
connections are pooled and every hop stays guarded) but never lets an exception reach
the SDK: it records the exception, and any HTTP 404 on a session, in a per-request
:class:`_Probe` (a context variable, which the SDK carries into its POST tasks) and
answers the SDK with a local 502. The SDK then fails only that request, and this module
raises the recorded cause.

* **Elicitation** (MCP 2025-11-25 *Elicitation*): the capability is declared and each
  ``elicitation/create`` goes to an :data:`~tether.mcp.elicitation.ElicitationHandler`,
  by default :func:`~tether.mcp.elicitation.decline` (no user sits at a service's
  session; see :mod:`tether.mcp.elicitation`).

* **Skills** (SEP-2640, :mod:`tether.mcp.skills`): ``skills/list`` and, only when a
  skill is loaded, ``resources/read`` of its files, each verified against the listing
  before it is returned.

Left out: other resources, prompts, sampling callbacks (``InputRequiredResult`` rounds get the
SDK's default refusals), subscriptions other than tool-list changes, and the HTTP+SSE
2024-11-05 fallback (HTTP-10, optional).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import anyio
import anyio.abc
import httpx2
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp.types import (
    CONNECTION_CLOSED,
    REQUEST_TIMEOUT,
    UNSUPPORTED_PROTOCOL_VERSION,
    DiscoverResult,
    ElicitRequestFormParams,
    ElicitRequestParams,
    ElicitResult,
    Implementation,
    ListToolsResult,
    Request,
    ServerCapabilities,
    Tool,
    UnsupportedProtocolVersionErrorData,
)
from mcp.types.version import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    LATEST_MODERN_VERSION,
    MODERN_PROTOCOL_VERSIONS,
)
from pydantic import BaseModel, Field, ValidationError

from tether.errors import (
    MCPProtocolError,
    NetworkError,
    RequestTimeout,
    ResponseTooLarge,
    SessionExpired,
    TetherError,
    UsageError,
    clean_text,
)
from tether.mcp.drain import drained
from tether.mcp.elicitation import ElicitationHandler, decline
from tether.mcp.listen import READ_TIMEOUT, ListenLost, listen_for_tool_changes
from tether.mcp.skills import (
    EXTENSION,
    Skill,
    SkillEntry,
    content_bytes,
    parse_listing,
    verify_file,
    verify_manifest,
)
from tether.mcp.tokenless import is_modern_error, retry_version
from tether.net.client import deadline, mapped_errors
from tether.net.transport import LONG_LIVED, broken_connection
from tether.oauth._wire import load_json

__all__ = [
    "DEFAULT_MAX_PAGES",
    "DEFAULT_TIMEOUT",
    "MODERN_FIRST",
    "Era",
    "EraMemory",
    "KnownTools",
    "MCPSession",
    "ProgressCallback",
    "ToolListing",
    "ToolsChangedCallback",
    "combine_hints",
    "connect_mode",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 60.0
"""Seconds for one request, reconnects included (design-notes R3.12 4e)."""
DEFAULT_MAX_PAGES: Final = 100
"""``tools/list`` pages followed before giving up on a paginator that never ends."""
_CLOSE_TIMEOUT: Final = 5.0
_SDK_CLOSED: Final = ("Connection closed", "SSE stream ")
"""How the SDK's own -32000 (``CONNECTION_CLOSED``) messages begin."""
_SSE_TOO_LARGE: Final = re.compile(r"^SSE stream failed: .*exceeded the \d+ byte limit")
"""httpx2's ``SSEError`` for an event over ``max_event_size``, as the SDK relays it."""
_MAX_RESULT_DEPTH: Final = 512
"""Nesting beyond which a result is left to the SDK's parser (and its own limit)."""

ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None]]
"""``(progress, total, message)`` for each ``notifications/progress`` of a call."""
ToolsChangedCallback = Callable[[], Awaitable[None]]
"""Called after ``notifications/tools/list_changed``; invalidate the tool cache."""
KnownTools = Callable[[], Awaitable[Sequence[Mapping[str, Any]]]]
"""Tool definitions the caller already holds for this server and subject (its cache)."""

MODERN_FIRST: Final = "modern-first"
"""Connect mode: the first request goes out at the newest stateless revision, with no
``server/discover``; a 4xx without a modern JSON-RPC error falls back to ``initialize``
(MCP Streamable HTTP ``07`` "Backward Compatibility", HTTP7-7, HTTP7-8)."""
_ERA_LIMIT: Final = 1024

_T = TypeVar("_T")


class _SkillsPage(BaseModel):
    """One ``skills/list`` result; :func:`~tether.mcp.skills.parse_listing` checks it."""

    skills: Any = None
    next_cursor: Any = Field(default=None, alias="nextCursor")


def connect_mode(protocol_version: str | None) -> str:
    """The ``mode`` to connect with, given the version last negotiated with a server.

    Remembering the era saves the ``server/discover`` probe on later connections
    (design-notes R6.4.3); an unknown or missing version probes again.

    Args:
        protocol_version: :attr:`MCPSession.protocol_version` from an earlier session.

    Returns:
        The modern version itself, ``"legacy"`` for a handshake revision, else ``"auto"``.
    """
    if protocol_version in MODERN_PROTOCOL_VERSIONS:
        return str(protocol_version)
    if protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
        return "legacy"
    return "auto"


@dataclass(frozen=True, slots=True)
class Era:
    """What an MCP endpoint speaks, as an earlier connection learned it (R6.4.3).

    Attributes:
        mode: ``"legacy"`` or the stateless revision spoken.
        discover: The server's ``DiscoverResult`` (its capabilities), when one was had.
    """

    mode: str
    discover: DiscoverResult | None = None


class EraMemory:
    """The era of each MCP endpoint, shared by every session with it (HTTP7-8).

    The era is a property of the server, so clients cache it per origin and re-probe
    when the assumption fails (MCP Base ``07`` *Versioning*, "Backward
    Compatibility"). A session that finds an endpoint here connects at that era with
    no ``server/discover`` and adopts the remembered capabilities; a second user of
    a server therefore sends only its own requests. Bounded: the oldest entry goes.
    """

    def __init__(self, limit: int = _ERA_LIMIT) -> None:
        self._eras: dict[str, Era] = {}
        self._limit = limit

    def get(self, url: str) -> Era | None:
        """The remembered era of ``url``, if any."""
        return self._eras.get(url)

    def put(self, url: str, era: Era) -> None:
        """Remember ``era`` for ``url``; a known ``discover`` is not dropped."""
        known = self._eras.get(url)
        if known is not None and era.discover is None and known.mode == era.mode:
            return
        if url not in self._eras and len(self._eras) >= self._limit:
            self._eras.pop(next(iter(self._eras)))
        self._eras[url] = era

    def forget(self, url: str) -> None:
        """Drop what is known of ``url``; its next connection probes again."""
        self._eras.pop(url, None)


# --------------------------------------------------------------------- the HTTP seam


@dataclass
class _Probe:
    """What the HTTP layer saw while one operation ran.

    Attributes:
        error: The first exception raised by ``httpx2``, the transport or the auth flow.
        expired: An HTTP 404 answered a POST carrying ``Mcp-Session-Id`` (HTTP-8).
        status: The last HTTP error status seen.
        modern_error: An HTTP 4xx carried a JSON-RPC error only a stateless-revision
            server sends (-32020, -32021, -32022, or -32601 with a 404): evidence
            of the era (HTTP7-8).
        sealed: The operation is over; later traffic in the same context (the SDK's
            GET stream started during ``initialize``) is not recorded.
        owner: The session whose request this is.
    """

    error: Exception | None = None
    expired: bool = False
    status: int | None = None
    modern_error: bool = False
    sealed: bool = False
    owner: object = None


_PROBE: contextvars.ContextVar[_Probe | None] = contextvars.ContextVar(
    "tether_mcp_probe", default=None
)


def _active_probe() -> _Probe | None:
    probe = _PROBE.get()
    return None if probe is None or probe.sealed else probe


def _local_failure(request: httpx2.Request) -> httpx2.Response:
    """What the SDK receives instead of an exception: the request fails, nothing else."""
    return httpx2.Response(502, request=request)


class _ObservedStream(httpx2.AsyncByteStream):
    """A response body whose read errors are recorded, then raised as ``StreamError``.

    The SDK catches ``StreamError`` while reading a body and fails only that request.
    """

    def __init__(self, inner: httpx2.AsyncByteStream, probe: _Probe) -> None:
        self._inner = inner
        self._probe = probe

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception as exc:
            self._probe.error = self._probe.error or exc
            raise httpx2.StreamError(f"reading the response failed: {exc!r}") from exc

    async def aclose(self) -> None:
        await self._inner.aclose()


#: Longest wait for the SDK's GET stream after a stateful connect.
LISTEN_WAIT = 0.25
#: First and longest pause (seconds) before re-opening a ``subscriptions/listen`` stream.
SUBSCRIBE_BACKOFF = (1.0, 60.0)
#: Seconds a subscribed stream may be silent before it is opened again (listen.py).
LISTEN_READ_TIMEOUT = READ_TIMEOUT


class _ObservingClient(httpx2.AsyncClient):
    """Hands the SDK's requests to the caller's client and records what happens."""

    def __init__(self, inner: httpx2.AsyncClient, auth: httpx2.Auth | None) -> None:
        super().__init__(
            transport=httpx2.MockTransport(_local_failure),  # never used
            max_redirects=inner.max_redirects,
        )
        self._inner = inner
        self._auth = auth
        self.session_started = False  # the server gave a session id: a GET will follow
        self.listening = anyio.Event()  # the SDK's GET stream got its answer

    def new_connection(self) -> None:
        """Forget the previous connection's session and listening stream."""
        self.session_started = False
        self.listening = anyio.Event()

    def build_request(self, *args: Any, **kwargs: Any) -> httpx2.Request:
        """Build with the caller's client: its headers, timeouts and base URL."""
        return self._inner.build_request(*args, **kwargs)

    async def send(
        self,
        request: httpx2.Request,
        *,
        stream: bool = False,
        auth: Any = httpx2.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx2.USE_CLIENT_DEFAULT,
    ) -> httpx2.Response:
        """Send through the caller's client; never raise (cancellation aside)."""
        probe = _active_probe()
        if probe is not None and probe.error is not None:
            return _local_failure(request)  # the first failure decides the operation
        if self._auth is not None and auth is httpx2.USE_CLIENT_DEFAULT:
            auth = self._auth
        if (
            request.method == "GET"
            or request.headers.get("mcp-method") == "subscriptions/listen"
        ):
            request.extensions[LONG_LIVED] = True  # never holds a request's slot
        try:
            response = await self._inner.send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        except Exception as exc:
            if probe is None:
                logger.debug(
                    "MCP %s %s failed", request.method, request.url, exc_info=True
                )
            else:
                probe.error = exc
            return _local_failure(request)
        self._observe(request, response, probe, stream=stream)
        if request.headers.get("mcp-protocol-version") in MODERN_PROTOCOL_VERSIONS:
            try:
                if probe is not None and response.status_code in (400, 404, 405):
                    body = await response.aread()
                    probe.modern_error = is_modern_error(response.status_code, body)
                response = await _complete_by_default(response)
            except Exception as exc:
                if probe is not None:
                    probe.error = probe.error or exc
                return _local_failure(request)
        return response

    def _observe(
        self,
        request: httpx2.Request,
        response: httpx2.Response,
        probe: _Probe | None,
        *,
        stream: bool,
    ) -> None:
        """Record what a response says about the session and the operation."""
        if request.method == "GET":
            self.listening.set()
        elif "mcp-session-id" in response.headers:
            self.session_started = True
        if probe is None:
            return
        if response.status_code >= 400:
            probe.status = response.status_code
        if (
            response.status_code == 404
            and request.method == "POST"
            and "mcp-session-id" in request.headers
        ):
            probe.expired = True
        if stream and isinstance(response.stream, httpx2.AsyncByteStream):
            response.stream = _ObservedStream(response.stream, probe)


async def _complete_by_default(response: httpx2.Response) -> httpx2.Response:
    """Give a 2026-07-28 JSON result without ``resultType`` the default ``complete``.

    The revision says a missing ``resultType`` means ``"complete"`` (HTTP7-5, SEP-2322),
    but the SDK's result check requires the field; only ``application/json`` answers
    are rewritten (an SSE stream is passed through as it is).
    """
    content_type = response.headers.get("content-type", "")
    if response.status_code != 200 or not content_type.startswith("application/json"):
        return response
    body = await response.aread()
    try:
        message = load_json(body, max_depth=_MAX_RESULT_DEPTH)
    except ValueError:
        return response
    result = message.get("result") if isinstance(message, dict) else None
    if not isinstance(result, dict) or "resultType" in result:
        return response
    result["resultType"] = "complete"
    headers = [
        (k, v)
        for k, v in response.headers.multi_items()
        if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")
    ]
    return httpx2.Response(
        response.status_code,
        headers=headers,
        content=json.dumps(message).encode(),
        request=response.request,
    )


# --------------------------------------------------------------------- connections


@dataclass(frozen=True, slots=True)
class ToolListing:
    """A server's whole ``tools/list`` and its cache hints (HTTP7-9).

    Attributes:
        tools: The tool definitions as wire dicts.
        ttl_ms: How long the server says the list may be considered fresh
            (``ttlMs``; 0 is immediately stale), or ``None`` before 2026-07-28,
            whose results carry no hints.
        cache_scope: ``"public"`` or ``"private"`` (``cacheScope``), or ``None``.
    """

    tools: list[dict[str, Any]]
    ttl_ms: int | None = None
    cache_scope: str | None = None


def combine_hints(pages: Sequence[tuple[int, str]]) -> tuple[int, str]:
    """The hints of a paginated list: the shortest ``ttlMs``, ``private`` if any page is.

    MCP ``07`` *Caching*: each page is a cacheable result of its own; the list the
    client assembles is only as fresh as its stalest page, and is private if any page
    was. Pure.
    """
    if not pages:
        return 0, "private"
    ttl = min(ttl for ttl, _ in pages)
    scope = "private" if any(scope != "public" for _, scope in pages) else "public"
    return ttl, scope


class _NotStateless(Exception):
    """An assumed stateless era proved wrong by an answer that is not an error."""


@dataclass(eq=False)
class _Link:
    """One SDK connection, owned by one runner task."""

    stop: anyio.Event = field(default_factory=anyio.Event)
    finished: anyio.Event = field(default_factory=anyio.Event)
    client: Client | None = None
    failure: Exception | None = None
    listed: set[str] = field(default_factory=set)
    """Tools listed on this connection: the SDK mirrors ``x-mcp-header`` arguments
    only for tools it has listed itself (HTTP7-4)."""
    assumed: bool = False
    """The era was not negotiated on this connection (remembered, or modern-first):
    a 4xx without a modern error means the assumption failed (HTTP7-8)."""
    confirmed: bool = False
    """A request succeeded on this connection."""
    described: bool = True
    """The server's capabilities are known (``server/discover`` or ``initialize``
    answered, now or on a remembered connection)."""


class MCPSession:
    """An MCP connection to one server for one subject, made on first use.

    Use ``async with MCPSession(...)``, or pass the ``task_group`` of a longer-lived
    owner (:class:`~tether.mcp.pool.SessionPool`) and call :meth:`aclose`. Concurrent
    requests share the connection and run in parallel; no lock is held across a request.

    Args:
        url: The MCP endpoint.
        http_client: The guarded client from ``tether.net``. It may be shared by many
            sessions (one connection pool) and is not closed here.
        auth: The credential flow for this session (:class:`~tether.mcp.auth.BearerAuth`
            for one subject, or :class:`~tether.mcp.auth.HeaderAuth`); overrides the
            client's own ``auth``.
        server: Server name for errors; defaults to ``url``.
        timeout: The overall deadline in seconds for each request, reconnects included.
        mode: ``"auto"`` (probe, then fall back), ``"legacy"`` (``initialize`` only),
            :data:`MODERN_FIRST` (no probe: the first request is the probe), or a
            stateless revision such as ``"2026-07-28"`` (no probe). With ``"auto"``
            and :data:`MODERN_FIRST` an era in ``eras`` is used instead of probing.
        on_tools_changed: Called (in a task of its own) after
            ``notifications/tools/list_changed``.
        on_tools_gap: Called when a tool-list subscription is open again after a
            break, during which a change may have gone unheard (events are not
            replayed): revalidate the list. By default ``on_tools_changed``.
        watch_tools: Keep a ``subscriptions/listen`` stream for tool-list changes
            from the first connection on (stateless revision); with ``False`` only
            after :meth:`watch_tools`, so a session that only calls holds no stream.
        eras: Shared era memory (:class:`EraMemory`); by default the session's own.
        known_tools: Tool definitions the caller holds (its cache), consulted before
            listing when a stateless call names a tool this connection has not
            listed (HTTP7-4).
        max_pages: Cap on ``tools/list`` pages.
        client_info: ``clientInfo`` sent to the server.
        task_group: Where connection tasks run; without it, enter the session.
        elicitation: Answers ``elicitation/create``; default
            :func:`~tether.mcp.elicitation.decline`.
    """

    def __init__(
        self,
        url: str,
        http_client: httpx2.AsyncClient,
        *,
        auth: httpx2.Auth | None = None,
        server: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        mode: str = "auto",
        on_tools_changed: ToolsChangedCallback | None = None,
        on_tools_gap: ToolsChangedCallback | None = None,
        max_pages: int = DEFAULT_MAX_PAGES,
        client_info: Implementation | None = None,
        task_group: anyio.abc.TaskGroup | None = None,
        elicitation: ElicitationHandler | None = None,
        watch_tools: bool = True,
        eras: EraMemory | None = None,
        known_tools: KnownTools | None = None,
    ) -> None:
        if timeout <= 0 or max_pages <= 0:
            raise UsageError("timeout and max_pages must be positive")
        if (
            mode not in ("auto", "legacy", MODERN_FIRST)
            and mode not in MODERN_PROTOCOL_VERSIONS
        ):
            raise UsageError(f"unknown MCP connect mode {mode!r}")
        self.url = url
        self.server = server or url
        self.timeout = timeout
        self._mode = mode
        self._http = _ObservingClient(http_client, auth)
        self._on_tools_changed = on_tools_changed
        self._on_tools_gap = on_tools_gap or on_tools_changed
        self._max_pages = max_pages
        self._client_info = client_info or Implementation(name="tether", version="0")
        self._tg = task_group
        self._elicitation = elicitation or decline
        self._own_tg: anyio.abc.TaskGroup | None = None
        self._current: _Link | None = None
        self._links: set[_Link] = set()
        self._connect_lock = anyio.Lock()
        self._closed = False
        self._watching = watch_tools
        self._in_flight = 0
        self._eras = eras if eras is not None else EraMemory()
        self._known_tools = known_tools
        self._next_mode: str | None = None  # set by a version retry or a fallback
        self._close_later = False
        # the tool-list subscription (R6.4.7): one task, independent of connections
        self._listen_scope: anyio.CancelScope | None = None
        self._listen_done = anyio.Event()
        self._listen_settled = anyio.Event()
        self._listen_version: str | None = None
        self._listen_live = False
        # what the released connection spoke, should the era memory drop the endpoint
        self._released: tuple[str, ServerCapabilities | None] | None = None

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        if self._tg is None:
            self._own_tg = anyio.create_task_group()
            self._tg = await self._own_tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.aclose()
        finally:
            if self._own_tg is not None:
                own, self._own_tg, self._tg = self._own_tg, None, None
                # Connections are closed; end stragglers and let the body's exception
                # propagate as itself, not wrapped in an ExceptionGroup.
                own.cancel_scope.cancel()
                await own.__aexit__(None, None, None)

    async def aclose(self) -> None:
        """Close the connection (``DELETE`` for a stateful session); idempotent.

        Called from inside one of this session's own requests (a token source that
        finds the grant gone and drops the session), it only marks the session
        closed: the request ends first, with its own error, and then stops the
        connection. Waiting here would wait for the request that is waiting.
        """
        self._closed = True
        self._current = None
        probe = _PROBE.get()
        if (
            probe is not None
            and probe.owner is self
            and not probe.sealed
            and self._tg is not None
        ):
            self._close_later = True  # the request's end closes (see _request)
            return
        await self._close_links()

    async def _close_links(self) -> None:
        with anyio.CancelScope(shield=True):
            for link in list(self._links):
                link.stop.set()
            listening = self._listen_scope
            if listening is not None:
                listening.cancel()
            with anyio.move_on_after(_CLOSE_TIMEOUT):
                for link in list(self._links):
                    await link.finished.wait()
                if listening is not None:
                    await self._listen_done.wait()
            await self._http.aclose()

    def release(self) -> bool:
        """Close a stateless connection nobody is using; the subscription stays.

        A 2026-07-28 connection holds no state on the server, and the era and
        capabilities it learnt are remembered (:class:`EraMemory`), so the next request
        makes a new one without sending anything extra (R6.4.3). What a caller that
        holds the tool list needs between calls is the subscription, which does not
        ride the connection (R6.4.7). A stateful connection (its ``Mcp-Session-Id``
        and GET stream are the server's state and its change channel) and one with a
        request in flight are kept.

        Returns:
            Whether a connection was closed.
        """
        link = self._current
        if (
            link is None
            or self._in_flight
            or link.client is None
            or link.client.protocol_version not in MODERN_PROTOCOL_VERSIONS
        ):
            return False
        self._released = (
            link.client.protocol_version,
            link.client.server_capabilities if link.described else None,
        )
        self._current = None
        link.stop.set()
        return True

    async def connect(self) -> None:
        """Connect now instead of on the first request (probe or ``initialize``).

        Raises:
            TetherError: As for :meth:`list_tools`.
        """
        async with deadline(self.timeout, server=self.server, step="connect"):
            await self._link("connect")

    def watch_tools(self) -> None:
        """Keep a tool-list subscription open from now on (stateless revision).

        For a caller that holds a tool list which can go stale: a session made with
        ``watch_tools=False`` opens no ``subscriptions/listen`` stream until this is
        called (issue 9: a stream per session that only calls is a connection held
        for nothing). Idempotent; never waits and never raises.
        """
        self._watching = True
        link = self._current
        self._maybe_listen(
            link if link is not None and not link.finished.is_set() else None
        )

    async def describe(self) -> None:
        """Learn the server's capabilities when this connection skipped the probe.

        A connection at a remembered or assumed stateless revision knows no
        capabilities until it asks ``server/discover`` (optional for the client,
        MCP Base ``07`` *Versioning*); this asks once per endpoint, and the answer
        is remembered for later sessions. Otherwise nothing is sent.

        Raises:
            TetherError: As for :meth:`list_tools`.
        """

        async def ask(client: Client) -> None:
            link = self._current
            if link is None or link.client is not client or link.described:
                return
            if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                return
            raw = await client.session.send_discover(client.protocol_version)
            try:
                result = DiscoverResult.model_validate(raw)
                client.session.adopt(result)
            except (ValidationError, RuntimeError) as exc:
                if link.assumed:  # no DiscoverResult: not modern evidence (HTTP7-8)
                    raise _NotStateless(self.url) from exc
                raise
            link.described = True
            self._eras.put(self.url, Era(client.protocol_version, result))
            self._maybe_listen(link)

        await self._request("server/discover", ask)

    # ----------------------------------------------------------------- state

    @property
    def connected(self) -> bool:
        """Whether a live connection exists."""
        return self._client() is not None

    @property
    def protocol_version(self) -> str | None:
        """The negotiated protocol version, once connected."""
        client = self._client()
        return client.protocol_version if client is not None else None

    @property
    def stateless(self) -> bool | None:
        """Whether the server speaks a stateless revision (2026-07-28), once connected."""
        version = self.protocol_version
        return None if version is None else version in MODERN_PROTOCOL_VERSIONS

    @property
    def busy(self) -> bool:
        """A request is in flight, or the session listens for tool-list changes.

        A session pool evicts only sessions that are not busy (R6.4.6).
        """
        return (
            self._in_flight > 0
            or self.subscribed
            or (self._watching and self._current is not None)
        )

    @property
    def hears_changes(self) -> bool:
        """An acknowledged tool-list subscription is open now (R6.4.7, HTTP7-9).

        While it is, a change to the list is announced as it happens, so the
        holder need not revalidate on the list's ``ttlMs``.
        """
        return self._listen_live

    @property
    def subscribed(self) -> bool:
        """A ``subscriptions/listen`` stream is held or being (re)opened (R6.4.7)."""
        return self._listen_scope is not None and not self._listen_done.is_set()

    @property
    def capabilities(self) -> dict[str, Any] | None:
        """The server's capabilities as a wire dict, once connected."""
        client = self._client()
        return _wire(client.server_capabilities) if client is not None else None

    @property
    def server_info(self) -> dict[str, Any] | None:
        """The server's ``serverInfo`` as a wire dict, if it sent one."""
        client = self._client()
        info = client.server_info if client is not None else None
        return _wire(info) if info is not None else None

    @property
    def instructions(self) -> str | None:
        """The server's instructions, if any."""
        client = self._client()
        return client.instructions if client is not None else None

    def _client(self) -> Client | None:
        link = self._current
        if link is None or link.finished.is_set():
            return None
        return link.client

    # ----------------------------------------------------------------- requests

    async def list_tools(self) -> list[dict[str, Any]]:
        """Every tool the server offers, following ``nextCursor`` across pages.

        Returns:
            Tool definitions as wire dicts (``name``, ``inputSchema``, …).

        Raises:
            As :meth:`list_tool_listing`.
        """
        return (await self.list_tool_listing()).tools

    async def list_tool_listing(self) -> ToolListing:
        """Every tool the server offers, with the result's cache hints (HTTP7-9).

        Returns:
            The tools and, from a stateless revision, the hints of all pages
            combined (:func:`combine_hints`).

        Raises:
            MCPProtocolError: A JSON-RPC error, a repeated cursor, or more than
                ``max_pages`` pages.
            SessionExpired: The session expired twice.
            RequestTimeout: The deadline passed.
            NetworkError: The server could not be reached.
            AuthorizationRequired: From the auth flow.
        """

        async def walk(client: Client) -> ToolListing:
            tools: list[dict[str, Any]] = []
            hints: list[tuple[int, str]] = []
            cursor: str | None = None
            seen: set[str] = set()
            for _ in range(self._max_pages):
                page = await client.list_tools(cursor=cursor, cache_mode="bypass")
                tools.extend(_wire(tool) for tool in page.tools)
                hints.append((page.ttl_ms, page.cache_scope))
                cursor = page.next_cursor
                if not cursor:
                    link = self._current
                    if link is not None and link.client is client:
                        link.listed = {tool["name"] for tool in tools}
                    if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                        return ToolListing(tools)  # no hints before 2026-07-28
                    return ToolListing(tools, *combine_hints(hints))
                if cursor in seen:
                    raise MCPProtocolError(
                        "tools/list repeated a cursor",
                        server=self.server,
                        step="tools/list",
                    )
                seen.add(cursor)
            raise MCPProtocolError(
                f"tools/list did not end within {self._max_pages} pages",
                server=self.server,
                step="tools/list",
            )

        return await self._request("tools/list", walk)

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        progress_callback: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Call a tool and return its ``CallToolResult`` as a wire dict.

        A result with ``isError: true`` is returned like any other (TOOL-1).

        Args:
            name: The tool's name on the server.
            arguments: Its arguments.
            progress_callback: Receives the call's progress notifications.

        Returns:
            The result (``content``, ``structuredContent``, ``isError``, …).

        Raises:
            TetherError: As for :meth:`list_tools`.
        """

        async def relay(
            progress: float, total: float | None, message: str | None
        ) -> None:
            if progress_callback is not None:
                await progress_callback(progress, total, message)

        async def call(client: Client) -> dict[str, Any]:
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                await self._ensure_listed(client, name)
            result = await client.call_tool(
                name,
                arguments or {},
                progress_callback=relay if progress_callback is not None else None,
            )
            return _wire(result)

        return await self._request("tools/call", call)

    # ----------------------------------------------------------------- skills

    @property
    def offers_skills(self) -> bool:
        """Whether the server declared the Skills extension (SEP-2640), once connected."""
        extensions = (self.capabilities or {}).get("extensions") or {}
        return isinstance(extensions, dict) and EXTENSION in extensions

    async def list_skills(self) -> list[SkillEntry]:
        """Every skill the server lists (``skills/list``, all pages); no file is read.

        A server without the extension has none (no request is sent). A malformed
        entry is dropped, with a warning, and the others kept.

        Raises:
            MCPProtocolError: A JSON-RPC error, a repeated cursor, or too many pages.
            InvalidResponse: The result has no ``skills`` array.
            TetherError: As for :meth:`list_tools`.
        """
        await self.connect()
        await self.describe()
        if not self.offers_skills:
            return []

        async def walk(client: Client) -> list[SkillEntry]:
            skills: list[SkillEntry] = []
            cursor: str | None = None
            seen: set[str] = set()
            for _ in range(self._max_pages):
                params = {"cursor": cursor} if cursor else {}
                page = await client.session.send_request(
                    Request[Any, Any](method="skills/list", params=params), _SkillsPage
                )
                entries, problems = parse_listing(page.skills, server=self.server)
                for problem in problems:
                    logger.warning("ignoring a skill: %s", problem)
                skills.extend(entries)
                cursor = page.next_cursor
                if not isinstance(cursor, str) or not cursor:
                    return skills
                if cursor in seen:
                    break
                seen.add(cursor)
            raise MCPProtocolError(
                "skills/list did not end (a repeated cursor or too many pages)",
                server=self.server,
                step="skills/list",
            )

        return await self._request("skills/list", walk)

    async def read_skill(self, entry: SkillEntry) -> Skill:
        """Load a skill: read its ``SKILL.md`` and verify it against ``entry``.

        Supporting files are not read (SEP-2640: never ahead of need); use
        :meth:`read_skill_file` when the skill asks for one.

        Raises:
            SkillVerificationFailed: Size, digest or frontmatter differ from ``entry``;
                nothing of the file is returned.
            TetherError: As for :meth:`list_tools`.
        """
        content = await self._read_resource(entry.uri)
        return verify_manifest(entry, content, server=self.server)

    async def read_skill_file(self, entry: SkillEntry, uri: str) -> bytes:
        """Read one file of a skill and verify its size and digest.

        Raises:
            UsageError: ``entry`` lists no file ``uri``.
            SkillVerificationFailed: Size or digest differ from the listing.
            TetherError: As for :meth:`list_tools`.
        """
        listed = entry.file(uri)
        content = await self._read_resource(uri)
        verify_file(listed, content, server=self.server, skill=entry.name)
        return content

    async def _read_resource(self, uri: str) -> bytes:
        async def read(client: Client) -> bytes:
            result = _wire(await client.read_resource(uri))
            return content_bytes(result.get("contents", []), uri, server=self.server)

        return await self._request("resources/read", read)

    async def _ensure_listed(self, client: Client, name: str) -> None:
        """List the tools first when this connection has not seen ``name`` (HTTP7-4).

        In the stateless revision a call must carry the tool's ``x-mcp-header``
        arguments as ``Mcp-Param-*`` headers, which the SDK derives from its own
        listing; a tool the listing drops (invalid annotations) is not called.

        Raises:
            MCPProtocolError: The server does not list the tool (``tool_unavailable``).
        """
        link = self._current
        if link is None or link.client is not client or name in link.listed:
            return
        if self._known_tools is not None and await self._adopt_known(
            client, link, name
        ):
            return
        listed: set[str] = set()
        cursor: str | None = None
        for _ in range(self._max_pages):
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            listed.update(tool.name for tool in page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        link.listed = listed
        if name not in listed:
            raise MCPProtocolError(
                f"the server does not offer the tool {name!r} (not listed, or its "
                "x-mcp-header annotations are invalid)",
                server=self.server,
                step="tools/call",
                details={"reason": "tool_unavailable", "tool": name},
            )

    async def _adopt_known(self, client: Client, link: _Link, name: str) -> bool:
        """Take ``name``'s definition from the caller's cache instead of listing.

        The definition goes through the SDK's own listing filter (invalid
        ``x-mcp-header`` annotations drop it, HTTP7-4), so the call mirrors its
        headers and its result is checked against its output schema as if the
        tool had been listed here. A stale definition costs one HeaderMismatch
        (-32020), on which the SDK lists again and resends (HTTP7-4).
        """
        assert self._known_tools is not None
        try:
            known = await self._known_tools()
            found = [dict(tool) for tool in known if tool.get("name") == name]
            page = (
                ListToolsResult(tools=[Tool.model_validate(found[0])])
                if found
                else None
            )
        except (TetherError, ValidationError):  # only an optimisation: list instead
            logger.debug("no usable cached definition of %r", name, exc_info=True)
            return False
        if page is None:
            return False
        client.session._absorb_tool_listing(page, complete=False)  # the SDK's filter
        if not page.tools:
            return False
        link.listed.add(name)
        return True

    def _version_retry(self, exc: Exception) -> str | None:
        """The connect mode to retry with after ``UnsupportedProtocolVersion`` (-32022).

        The newest revision both sides speak, stateless ones first (HTTP7-7,
        design-notes R6.1.3); ``None`` when there is none or the error is another.
        """
        if (
            not isinstance(exc, MCPError)
            or exc.error.code != UNSUPPORTED_PROTOCOL_VERSION
        ):
            return None
        try:
            data = UnsupportedProtocolVersionErrorData.model_validate(exc.error.data)
        except ValidationError:
            return None
        version = retry_version(data.supported)
        if version is None or version in MODERN_PROTOCOL_VERSIONS:
            return version
        return "legacy"

    def _era_failed(self, link: _Link, exc: Exception, probe: _Probe) -> bool:
        """An assumed stateless era met a server that is not stateless (HTTP7-8).

        Streamable HTTP ``07`` "Backward Compatibility": a 400 (or 404/405) whose
        body is not a recognised modern JSON-RPC error means the server predates
        the revision; ``initialize`` follows. Only before a request succeeded on
        the connection; or a ``server/discover`` answer that is no DiscoverResult.
        Likewise a success answer whose result is not the revision's shape (an older
        stateless server answers ``tools/list`` without ``initialize``, but with no
        ``ttlMs`` or ``cacheScope``): that is no modern evidence either.
        """
        if isinstance(exc, _NotStateless):
            return True
        client = link.client
        if not (
            link.assumed
            and not link.confirmed
            and probe.error is None
            and client is not None
            and client.protocol_version in MODERN_PROTOCOL_VERSIONS
        ):
            return False
        if isinstance(exc, ValidationError):
            return True
        return (
            probe.status in (400, 404, 405)
            and not probe.modern_error
            and isinstance(exc, MCPError)
        )

    def _confirm(self, link: _Link) -> None:
        """A success on a connection: the first makes an assumed era known."""
        if link.confirmed:
            return
        link.confirmed = True
        client = link.client
        if link.assumed and client is not None:
            version = client.protocol_version
            if version in MODERN_PROTOCOL_VERSIONS:
                self._eras.put(self.url, Era(version))

    async def _request(
        self, step: str, operation: Callable[[Client], Awaitable[_T]]
    ) -> _T:
        """Run one operation under the deadline, renewing an expired session once."""
        self._in_flight += 1
        try:
            return await self._request_once(step, operation)
        finally:
            self._in_flight -= 1

    async def _request_once(
        self, step: str, operation: Callable[[Client], Awaitable[_T]]
    ) -> _T:
        async with deadline(self.timeout, server=self.server, step=step):
            renewed = resent = renegotiated = fell_back = False
            while True:
                link = await self._link(step)
                if self.subscribed and not self._listen_settled.is_set():
                    # A change this request causes is announced on the subscription
                    # only once the server has it; as for the GET stream, wait a
                    # moment (a server that never answers costs LISTEN_WAIT once).
                    with anyio.move_on_after(LISTEN_WAIT):
                        await self._listen_settled.wait()
                probe = _Probe(owner=self)
                token = _PROBE.set(probe)
                try:
                    assert link.client is not None
                    result = await operation(link.client)
                    self._confirm(link)
                    return result
                except TetherError:
                    raise
                except Exception as exc:
                    if self._closed:  # closed meanwhile: nothing is retried
                        raise (
                            error := self._translate(exc, probe, link, step)
                        ) from _cause(error, exc)
                    if probe.expired:
                        if renewed:
                            raise SessionExpired(
                                "the server forgot the new MCP session too",
                                server=self.server,
                                step=step,
                            ) from exc
                        logger.info(
                            "MCP session at %s expired; starting a new one", self.url
                        )
                        renewed = True
                        await self._retire(link)
                        continue
                    if not resent and self._stream_broke(link, exc, probe):
                        resent = True  # HTTP7-1: re-issue once, the SDK picks a new id
                        continue
                    if not fell_back and self._era_failed(link, _leaf(exc), probe):
                        logger.info(
                            "MCP server at %s is not stateless; connecting with "
                            "initialize",
                            self.url,
                        )
                        fell_back = True
                        self._next_mode = "legacy"
                        await self._retire(link)
                        continue
                    mode = None if renegotiated else self._version_retry(_leaf(exc))
                    if mode is not None and probe.error is None:
                        logger.info(
                            "MCP server at %s rejected the protocol version; "
                            "connecting again with %s",
                            self.url,
                            mode,
                        )
                        renegotiated = True
                        self._next_mode = mode
                        await self._retire(link)
                        continue
                    raise (
                        error := self._translate(exc, probe, link, step)
                    ) from _cause(error, exc)
                finally:
                    probe.sealed = True
                    _PROBE.reset(token)
                    if self._close_later and self._tg is not None:
                        self._close_later = False  # closed from inside (aclose)
                        self._tg.start_soon(self._close_links)

    # ----------------------------------------------------------------- connecting

    async def _link(self, step: str) -> _Link:
        link = self._current
        if link is not None and not link.finished.is_set():
            return link
        async with self._connect_lock:  # held while connecting, never across a request
            link = self._current
            if link is not None and not link.finished.is_set():
                return link
            if self._closed:
                raise UsageError("the MCP session is closed", server=self.server)
            if self._tg is None:
                raise UsageError(
                    "enter the MCP session (async with) or give it a task group"
                )
            for attempt in range(2):
                mode, prior, assumed = self._plan()
                link, probe = _Link(assumed=assumed), _Probe()
                self._links.add(link)
                self._http.new_connection()
                try:
                    await self._tg.start(self._run, link, probe, mode, prior)
                except Exception as exc:
                    self._links.discard(link)
                    if attempt == 0 and assumed and probe.error is None:
                        # a remembered era that no longer holds: probe again
                        self._eras.forget(self.url)
                        continue
                    raise (
                        error := self._translate(exc, probe, None, step)
                    ) from _cause(error, exc)
                break
            assert link is not None
            if self._http.session_started:
                # The SDK opens the server-to-client GET stream in the background after
                # `initialized`. A server may deliver responses and notifications on it
                # (Streamable HTTP, "Listening for messages"), so give it a moment to be
                # open before the first request; a server without one answers at once.
                with anyio.move_on_after(LISTEN_WAIT):
                    await self._http.listening.wait()
            self._current = link
            return link

    async def _retire(self, link: _Link) -> None:
        """Drop a connection the server forgot; the next request makes a new one."""
        async with self._connect_lock:
            if self._current is link:
                self._current = None
        link.stop.set()

    def _plan(self) -> tuple[str, DiscoverResult | None, bool]:
        """How to connect (R6.4.3, HTTP7-8).

        Returns:
            The SDK's mode, a remembered ``DiscoverResult`` to adopt, and whether the
            era is assumed rather than negotiated on the connection.
        """
        mode = self._next_mode or self._mode
        era = self._eras.get(self.url)
        if mode in ("auto", MODERN_FIRST):
            if era is not None:
                return era.mode, era.discover, True
            if mode == MODERN_FIRST:
                return LATEST_MODERN_VERSION, None, True
        if mode in MODERN_PROTOCOL_VERSIONS and era is not None and era.mode == mode:
            return mode, era.discover, False
        return mode, None, False

    def _remember(self, client: Client) -> None:
        """Keep the era the SDK negotiated on this connection for later sessions."""
        version = client.protocol_version
        if version in MODERN_PROTOCOL_VERSIONS:
            self._eras.put(self.url, Era(version, client.session.discover_result))
        elif version in HANDSHAKE_PROTOCOL_VERSIONS:
            self._eras.put(self.url, Era("legacy"))

    async def _run(
        self,
        link: _Link,
        probe: _Probe,
        mode: str,
        prior: DiscoverResult | None,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Own one SDK connection from connect to close (see the module docstring)."""
        _PROBE.set(probe)
        started = False
        try:
            # drained: no server message lands on the closed session (mcp/drain.py)
            transport = drained(
                streamable_http_client(self.url, http_client=self._http)
            )
            async with Client(
                transport,
                mode=mode,
                prior_discover=prior,
                cache=None,  # the tool registry caches; every list hits the server
                message_handler=self._on_message,
                elicitation_callback=self._on_elicitation,
                client_info=self._client_info,
            ) as client:
                probe.sealed = True
                link.client = client
                link.described = (
                    mode not in MODERN_PROTOCOL_VERSIONS or prior is not None
                )
                if mode in ("auto", "legacy"):
                    self._remember(client)
                started = True
                task_status.started()
                self._maybe_listen(link)
                await link.stop.wait()
        except Exception as exc:
            if not started:
                raise
            link.failure = _leaf(exc)
            logger.warning("MCP connection to %s failed: %r", self.url, link.failure)
        finally:
            link.finished.set()
            self._links.discard(link)

    def _maybe_listen(self, link: _Link | None) -> None:
        """Start the tool-list subscription if it is wanted and not running (R6.4.7).

        What the server speaks comes from the live connection, else from the era
        memory (a released connection's era and capabilities are remembered).
        """
        if self._tg is None or self._closed or not self._watching:
            return
        version = self._subscription_version(link)
        if version is None:
            return
        self._listen_version = version
        if self._listen_scope is not None:
            return  # started before: it lives with the session, not the connection
        self._listen_scope = anyio.CancelScope()
        self._tg.start_soon(self._listen, self._listen_scope)

    def _subscription_version(self, link: _Link | None) -> str | None:
        """The stateless revision to subscribe at, or ``None`` when not wanted.

        Wanted when someone is told of changes and the server speaks 2026-07-28 and
        advertises ``tools.listChanged``: at that revision ``listChanged`` says the
        server delivers the change on ``subscriptions/listen`` streams (the only place
        it can). When the capabilities are not known (no ``server/discover`` yet) it
        asks, and a server that does not serve the subscription says so once
        (declined, or -32601).
        """
        if self._on_tools_changed is None:
            return None
        capabilities: ServerCapabilities | None
        if link is not None and link.client is not None:
            version = link.client.protocol_version
            capabilities = link.client.server_capabilities if link.described else None
        elif (era := self._eras.get(self.url)) is not None:
            version = era.mode
            capabilities = era.discover.capabilities if era.discover else None
        elif self._released is not None:  # the memory is bounded; this session knows
            version, capabilities = self._released
        else:
            return None
        if version not in MODERN_PROTOCOL_VERSIONS:
            return None
        if capabilities is None:
            return version
        tools = capabilities.tools
        return version if tools is not None and tools.list_changed is True else None

    async def _listen(self, scope: anyio.CancelScope) -> None:
        """Keep one tool-list subscription open for the session's life (R6.4.7).

        Runs in the session's task group, apart from any connection: a released or
        renewed connection leaves it open. A stream that ends or drops is re-opened
        after a pause that doubles up to ``SUBSCRIBE_BACKOFF[1]`` (reset once a stream
        is acknowledged), and so is one silent for ``LISTEN_READ_TIMEOUT``; events are
        not replayed, so a re-opened stream calls ``on_tools_gap`` first. A server that declines, or does not know
        ``subscriptions/listen``, is not asked again by this session. Nothing here
        raises: failures are logged.
        """
        _PROBE.set(None)  # not part of whichever request started it
        first, longest = SUBSCRIBE_BACKOFF
        pause = first
        opened_before = False

        async def acknowledged() -> None:
            nonlocal pause, opened_before
            self._listen_settled.set()
            self._listen_live = True
            pause = first
            if opened_before and self._on_tools_gap is not None:
                try:  # what changed meanwhile was not heard
                    await self._on_tools_gap()
                except Exception:
                    logger.exception(
                        "the tool-list gap callback for %s failed", self.url
                    )
            opened_before = True

        try:
            with scope:
                while True:
                    version = self._listen_version
                    assert version is not None
                    try:
                        end = await listen_for_tool_changes(
                            self._http,
                            self.url,
                            version=version,
                            client_info=self._client_info.model_dump(
                                by_alias=True, mode="json", exclude_none=True
                            ),
                            ack_timeout=self.timeout,
                            read_timeout=LISTEN_READ_TIMEOUT,
                            on_acknowledged=acknowledged,
                            on_changed=self._tools_changed,
                        )
                    except ListenLost as exc:
                        logger.debug("MCP subscription at %s lost: %s", self.url, exc)
                    else:
                        self._listen_live = False
                        if end != "closed":
                            logger.info(
                                "MCP server at %s %s",
                                self.url,
                                "declined tool-list subscriptions"
                                if end == "declined"
                                else "does not serve subscriptions/listen",
                            )
                            return
                        logger.debug(
                            "MCP server at %s closed the subscription", self.url
                        )
                    self._listen_live = False
                    self._listen_settled.set()
                    await anyio.sleep(pause)
                    pause = min(pause * 2, longest)
        except Exception:
            logger.warning("MCP subscription at %s failed", self.url, exc_info=True)
        finally:
            self._listen_live = False
            self._listen_settled.set()
            self._listen_done.set()

    async def _on_message(self, message: Any) -> None:
        """The SDK's message handler: server notifications and transport exceptions."""
        if isinstance(message, Exception):
            logger.debug("MCP transport at %s reported %r", self.url, message)
            return
        changed = getattr(message, "method", None) == "notifications/tools/list_changed"
        if changed and _on_subscription(message):
            return  # the SDK copies listen-stream events here; _subscribe handles them
        if changed and self._on_tools_changed is not None and self._tg is not None:
            self._tg.start_soon(self._tools_changed)

    async def _on_elicitation(
        self, context: Any, params: ElicitRequestParams
    ) -> ElicitResult:
        """The SDK's elicitation callback: ask the handler, answer in the wire type."""
        schema = (
            dict(params.requested_schema)
            if isinstance(params, ElicitRequestFormParams)
            else None
        )
        answer = await self._elicitation(params.message, schema)
        if answer.action != "accept" or schema is None:
            return ElicitResult(action=answer.action)
        return ElicitResult(action="accept", content=dict(answer.content))

    async def _tools_changed(self) -> None:
        assert self._on_tools_changed is not None
        try:
            await self._on_tools_changed()
        except Exception:
            logger.exception("the tools/list_changed callback for %s failed", self.url)

    # ----------------------------------------------------------------- errors

    def _stream_broke(self, link: _Link, exc: Exception, probe: _Probe) -> bool:
        """A stateless request whose response stream ended before the answer.

        Either the stream ended early (the SDK's ``CONNECTION_CLOSED``), or the
        request's connection broke before any answer came (a reset or an EOF: a
        server closing an idle pooled connection as it is reused looks so). Both are
        a broken stream to HTTP7-1; a refused connect or a timeout is not.
        """
        if (
            link.client is None
            or link.client.protocol_version not in MODERN_PROTOCOL_VERSIONS
        ):
            return False
        if isinstance(exc, MCPError) and exc.error.code == CONNECTION_CLOSED:
            return probe.error is None or broken_connection(probe.error)
        return probe.error is not None and broken_connection(probe.error)

    def _translate(
        self, exc: BaseException, probe: _Probe, link: _Link | None, step: str
    ) -> TetherError:
        """Map what the SDK raised, preferring the cause the HTTP layer recorded."""
        exc = _leaf(exc)
        cause = probe.error or (link.failure if link is not None else None)
        if cause is not None:
            return _from_http(cause, self.server, step)
        if isinstance(exc, TetherError):
            return exc
        if isinstance(exc, MCPError):
            return self._from_jsonrpc(exc, probe, step)
        if isinstance(exc, ValidationError):
            return MCPProtocolError(
                f"the server's {step} result is malformed: {exc.error_count()} errors",
                server=self.server,
                step=step,
            )
        if isinstance(exc, RuntimeError):  # the SDK's version and output-schema checks
            return MCPProtocolError(str(exc), server=self.server, step=step)
        return _from_http(exc, self.server, step)

    def _from_jsonrpc(self, exc: MCPError, probe: _Probe, step: str) -> TetherError:
        """Label a JSON-RPC error: the SDK's own (closed, timed out) or the server's.

        The SDK reports a lost connection with code -32000, which servers also use as
        the generic "server error" of JSON-RPC 2.0 §5.1; only the SDK's own messages
        mean the connection is gone. The server's message is remote text: cleaned
        and bounded.
        """
        code, message = exc.error.code, clean_text(exc.error.message)
        if code == REQUEST_TIMEOUT:
            return RequestTimeout(message, server=self.server, step=step)
        if code == CONNECTION_CLOSED and _SSE_TOO_LARGE.search(message):
            return ResponseTooLarge(
                f"an event of the response stream is too large: {message}",
                server=self.server,
                step=step,
            )
        if code == CONNECTION_CLOSED and message.startswith(_SDK_CLOSED):
            return NetworkError(
                f"the connection closed: {message}", server=self.server, step=step
            )
        details: dict[str, Any] = {"code": code, "message": message}
        if probe.status is not None:
            details["status"] = probe.status
        text = f"JSON-RPC error {code}: {message}"
        if probe.status is not None:
            text = f"HTTP {probe.status}, {text}"
        return MCPProtocolError(text, server=self.server, step=step, details=details)


def _on_subscription(message: Any) -> bool:
    """Whether a notification came on a ``subscriptions/listen`` stream."""
    meta = getattr(getattr(message, "params", None), "meta", None)
    return isinstance(meta, dict) and SUBSCRIPTION_ID_META_KEY in meta


def _cause(error: Exception, exc: Exception) -> BaseException | None:
    """The cause to raise ``error`` from: its own if it has one, else ``exc``.

    The error recorded by a probe (the guarded transport's, raised from the
    ``httpcore2`` error that says what happened on the wire, a reset or an EOF) keeps
    that cause instead of the SDK's generic error, so a log shows the real one.
    """
    if error is exc:
        return exc.__cause__
    return error.__cause__ or exc


def _leaf(exc: BaseException) -> Exception:
    """The first real exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [
            e
            for e in exc.exceptions
            if not isinstance(e, anyio.get_cancelled_exc_class())
        ]
        exc = (inner or list(exc.exceptions))[0]
    if isinstance(exc, Exception):
        return exc
    return NetworkError(f"{type(exc).__name__}: {exc}")


def _from_http(cause: Exception, server: str, step: str) -> TetherError:
    """A Tether error for an exception from ``httpx2``, ``tether.net`` or the auth flow."""
    try:
        with mapped_errors(server=server, step=step):
            raise cause
    except TetherError as mapped:
        return mapped
    except Exception as other:
        return NetworkError(
            f"{type(other).__name__}: {other}", server=server, step=step
        )


def _wire(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
