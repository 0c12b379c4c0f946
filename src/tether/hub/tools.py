"""The tool registry: MCP sessions per (server, subject), cached tool lists, calls.

* Credentials per auth mode (design-notes R3.2): none; one header credential; OAuth
  through :class:`HubTokenSource`, which the MCP layer's ``BearerAuth`` asks for tokens —
  refreshed 60 s before expiry (RFR-2), once more after a 401 (TOK-10), and recorded as a
  step-up after a 403 ``insufficient_scope`` (SCP-6).
* Tool lists: all pages of ``tools/list``, cached per (server, subject) with a soft expiry
  of 1 h (serve stale, refresh in the background) and a hard expiry of 2 h (design-notes
  R2.5); invalidated on connect, disconnect, server change and
  ``notifications/tools/list_changed``. Every refresh records the server's health.
* Calls never raise into an agent loop: every failure becomes a model-visible error result
  with a stable code (design-notes D3.7), unless the caller asks for the exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.abc

from tether.errors import (
    AuthorizationRequired,
    PermissionDenied,
    RequestTimeout,
    StepUpRequired,
    TetherError,
    UsageError,
)
from tether.hub.cache import SERVER_TTL, TTLCache
from tether.hub.clock import Clock
from tether.hub.connections import Connections
from tether.hub.context import HubContext, profile_of
from tether.hub.writes import CacheWriter
from tether.mcp.auth import AccessToken, BearerAuth, HeaderAuth
from tether.mcp.pool import SessionPool
from tether.mcp.results import (
    ToolErrorCode,
    ToolResult,
    normalize_result,
    result_from_error,
)
from tether.mcp.session import MODERN_FIRST, MCPSession, ProgressCallback, ToolListing
from tether.oauth.challenge import BearerChallenge
from tether.oauth.dpop import DPoPKey
from tether.store.base import (
    SHARED,
    Connection,
    ServerHealth,
    ServerRecord,
    ToolCacheEntry,
)

__all__ = ["FAN_OUT", "ConnectionTest", "HubTokenSource", "ToolRegistry"]

FAN_OUT = 16
"""How many servers a fan-out (a toolset's first view, a sweep) asks at once."""

TOKEN_TTL = timedelta(seconds=5)
"""How long a token read from the store is reused before the store is read again."""
SOFT_EXPIRY = timedelta(hours=1)
HARD_EXPIRY = timedelta(hours=2)
TTL_FLOOR = timedelta(minutes=1)
"""The soonest a server's ``ttlMs`` makes a held list revalidate (HTTP7-9, R2.5)."""


def soft_expiry(ttl_ms: int | None) -> timedelta:
    """When a cached tool list is revalidated in the background (R2.5, HTTP7-9).

    ``SOFT_EXPIRY`` by default. A server's ``ttlMs`` (MCP ``07`` *Caching*: how long
    the client MAY consider the result fresh) brings it forward, never before
    ``TTL_FLOOR``, so a hint of 0 (immediately stale; the SDK's default) costs at
    most one background ``tools/list`` a minute per server and subject while the
    held list keeps serving. A longer hint never delays the cache's own expiry.
    Pure.
    """
    if ttl_ms is None:
        return SOFT_EXPIRY
    return min(SOFT_EXPIRY, max(TTL_FLOOR, timedelta(milliseconds=ttl_ms)))


class HubTokenSource:
    """Tokens for one (server, subject), backed by the hub's connection flow.

    The last token read is kept in memory and handed out without touching the store
    until the earliest of: its refresh time (the margin before expiry, see
    :meth:`Connections.refresh_due`), :data:`TOKEN_TTL` after it was read, or a
    rejection by the server. Refresh itself stays single-flight across workers (the
    store's lock, a re-read and compare-and-set in :meth:`Connections.refresh`), and a
    401 always re-reads the store. A disconnect or reconnect on this worker drops the
    session and this source with it; one on another worker shows up within
    :data:`TOKEN_TTL` (or at the first 401).
    """

    def __init__(
        self,
        connections: Connections,
        server: ServerRecord,
        subject: str,
        *,
        clock: Clock,
    ) -> None:
        self._connections = connections
        self._server = server
        self._subject = subject
        self._clock = clock
        self._cached: AccessToken | None = None
        self._reread_at: datetime | None = None

    async def current(self) -> AccessToken:
        """A usable token, refreshed proactively (RFR-2)."""
        now = self._clock.now()
        if (
            self._cached is not None
            and self._reread_at is not None
            and now < self._reread_at
        ):
            return self._cached
        conn = await self._connections.usable(self._server, self._subject)
        token = _token(conn)
        due = self._connections.refresh_due(conn)
        reread = now + TOKEN_TTL
        self._cached, self._reread_at = (
            token,
            reread if due is None else min(due, reread),
        )
        return token

    def forget(self) -> None:
        """Drop the cached token; the next :meth:`current` reads the store."""
        self._cached = self._reread_at = None

    async def rejected(
        self, token: AccessToken, challenge: BearerChallenge | None, *, status: int
    ) -> AccessToken:
        """Refresh once after a 401; record a step-up after a 403 (TOK-10, SCP-6).

        Only a 403 ``insufficient_scope`` records a step-up, and it keeps the
        connection's status; any other 403 refuses that one call and changes nothing
        stored (issue 7 item 6).
        """
        self.forget()
        server, subject = self._server, self._subject
        if challenge is not None and challenge.error == "insufficient_scope":
            scopes = tuple(challenge.scope)
            conn = await self._connections.record_step_up(server, subject, scopes)
            raise StepUpRequired(
                f"server '{server.name}' needs more scope: "
                f"{' '.join(conn.required_scopes) or 'unspecified'}",
                server=server.name,
                step="mcp",
                hint="connect the server again to approve the extra permissions",
                details={
                    "required_scopes": list(conn.required_scopes),
                    "issuer": conn.issuer,
                },
            )
        if status == 403:
            raise PermissionDenied(
                f"server '{server.name}' refused this call (HTTP 403)",
                server=server.name,
                step="mcp",
                hint="the connected account may not do this; nothing was changed",
                details={"status": 403},
            )
        stored = await self._connections.get(server, subject)
        if stored.access_token is not None and (
            stored.access_token.get_secret_value() != token.access_token
        ):
            return _token(stored)
        try:
            conn = await self._connections.refresh(server, subject, stale=stored)
        except AuthorizationRequired:
            await self._rediscover(challenge)
            raise
        return _token(conn)

    async def _rediscover(self, challenge: BearerChallenge | None) -> None:
        """Store fresh discovery after an unfixable 401 (TOK-10); never masks the 401."""
        try:
            await self._connections.discoverer.discover(
                self._server, challenge=challenge
            )
        except TetherError:
            return


def _token(conn: Connection) -> AccessToken:
    if conn.access_token is None:
        raise AuthorizationRequired("no access token is held; connect the server")
    key = DPoPKey(pem=conn.dpop_key) if conn.dpop_key is not None else None
    return AccessToken(
        conn.access_token.get_secret_value(),
        conn.expires_at,
        conn.scopes,
        token_type=conn.token_type,  # DPoP tokens are presented with a proof
        dpop_key=key,
    )


@dataclass(frozen=True, slots=True)
class ConnectionTest:
    """What ``test_connection`` learned, without touching the cache or health."""

    protocol_version: str | None
    capabilities: Mapping[str, Any]
    server_info: Mapping[str, Any]
    tool_names: tuple[str, ...]

    @property
    def tool_count(self) -> int:
        """Number of tools."""
        return len(self.tool_names)


class ToolRegistry:
    """MCP sessions, cached tool lists and tool calls for every server."""

    def __init__(self, ctx: HubContext, connections: Connections) -> None:
        self._ctx = ctx
        self._connections = connections
        self._servers: dict[str, ServerRecord] = {}
        self._secrets: dict[str, str | None] = {}
        self._secret_checked: TTLCache[str, bool] = TTLCache(ctx.clock, SERVER_TTL)
        # the hub's clock, so idle eviction (R6.4.6) follows a test's fake clock
        self._pool = SessionPool(
            self._make_session, clock=lambda: ctx.clock.now().timestamp()
        )
        self._background: set[asyncio.Task[None]] = set()
        self._refreshing: set[tuple[str, str]] = set()
        # (server, subject) pairs whose tool list this process has served: their
        # sessions keep a tool-list subscription (R6.4.4), opened with the connection
        self._watched: set[tuple[str, str]] = set()
        self._listeners: list[Callable[[str], None]] = []
        # Tool lists and health are written a batch per transaction (G-31):
        # concurrent SQLite writers otherwise wait out each other's busy timeout.
        self.writes = CacheWriter(ctx.stores.tools)

    def on_tools_changed(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(server_id)`` whenever a server's tools may have changed.

        That is: on :meth:`invalidate` (a connection or server change, or
        ``notifications/tools/list_changed``), after a background refresh that found
        a different list and after a forced refresh. Toolset views use it to drop
        themselves (issue 9).
        """
        self._listeners.append(listener)

    def _tools_changed(self, server_id: str) -> None:
        for listener in self._listeners:
            listener(server_id)

    @property
    def open_sessions(self) -> int:
        """How many MCP sessions this process holds (idle ones are evicted, R6.4.6)."""
        return len(self._pool)

    @property
    def open_connections(self) -> int:
        """How many of those sessions hold an MCP connection now (R6.4.7).

        A session a fan-out listed holds its subscription but no connection.
        """
        return self._pool.connected()

    async def start(self) -> None:
        """Start the session pool (the facade does this on open; R6.4.5)."""
        await self._pool.start()

    async def aclose(self) -> None:
        """Stop background refreshes and close every session."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._pool.aclose()

    # ------------------------------------------------------------------ sessions

    def subject(self, server: ServerRecord, user: str | None) -> str:
        """The subject whose credentials a call uses (per-user only for OAuth)."""
        if server.auth_mode == "oauth" and server.oauth.per_user:
            if not user:
                raise AuthorizationRequired(
                    f"server '{server.name}' is connected per user; no user was given",
                    server=server.name,
                )
            return user
        return SHARED

    def _auth(self, server: ServerRecord, subject: str, secret: str | None) -> Any:
        if server.auth_mode == "oauth":
            return BearerAuth(
                HubTokenSource(
                    self._connections, server, subject, clock=self._ctx.clock
                ),
                server=server.name,
                now=self._ctx.clock.now,
                random=self._ctx.random.token,
            )
        if server.auth_mode == "header":
            return HeaderAuth(
                secret,
                header=server.header_name or "Authorization",
                scheme=server.header_scheme or "",
            )
        return None

    def _make_session(
        self, server_id: str, subject: str, task_group: anyio.abc.TaskGroup
    ) -> MCPSession:
        server = self._servers[server_id]
        return self._session_for(
            server, subject, self._secrets.get(server_id), task_group=task_group
        )

    def _session_for(
        self,
        server: ServerRecord,
        subject: str,
        secret: str | None,
        *,
        task_group: anyio.abc.TaskGroup | None,
    ) -> MCPSession:
        async def changed() -> None:
            await self.invalidate(server.id, subject, drop_session=False)

        async def gap() -> None:
            # a re-opened subscription may have missed a change: revalidate what is
            # held (a list that did not change drops nothing; R6.4.7)
            entry = await self._ctx.stores.tools.get(server.id, subject)
            if entry is not None:
                self._refresh_in_background(server, subject, entry.tools)

        async def known() -> Sequence[Mapping[str, Any]]:
            entry = await self._ctx.stores.tools.get(server.id, subject)
            fresh = entry is not None and (
                self._ctx.clock.now() - entry.fetched_at < HARD_EXPIRY
            )
            return entry.tools if entry is not None and fresh else ()

        # The minimum connect (issue 9): no server/discover (the first request tells
        # the era, remembered per endpoint), no listen stream until a tool list is
        # held, and a call's tool definition from the cache when there is one.
        return MCPSession(
            server.url,
            self._ctx.fetcher.client(profile_of(server)),
            auth=self._auth(server, subject, secret),
            server=server.name,
            timeout=server.timeout_seconds,
            mode=MODERN_FIRST,
            on_tools_changed=changed,
            on_tools_gap=gap,
            task_group=task_group,
            elicitation=self._ctx.config.elicitation,
            watch_tools=(server.id, subject) in self._watched,
            eras=self._pool.eras,
            known_tools=known,
        )

    async def _header_secret(self, server: ServerRecord) -> str | None:
        if server.auth_mode != "header" or not server.credential_id:
            return None
        credential = await self._ctx.stores.credentials.get(server.credential_id)
        return credential.value.get_secret_value() if credential else None

    async def _current_secret(self, server: ServerRecord) -> None:
        """Re-read the header credential at most every :data:`SERVER_TTL`.

        A changed value (rotated by any worker) drops the server's sessions, whose
        ``HeaderAuth`` holds the old one.
        """
        if server.auth_mode != "header" or self._secret_checked.get(server.id):
            return
        secret = await self._header_secret(server)
        if server.id in self._secrets and self._secrets[server.id] != secret:
            await self._pool.drop(server.id)
        self._secrets[server.id] = secret
        self._secret_checked.put(server.id, True)

    async def session(self, server: ServerRecord, subject: str) -> MCPSession:
        """The pooled session for (server, subject), rebuilt when the server changed."""
        known = self._servers.get(server.id)
        if known is not None and known.version != server.version:
            await self._pool.drop(server.id)
            self._secret_checked.discard(lambda key, _: key == server.id)
        self._servers[server.id] = server
        await self._current_secret(server)
        return await self._pool.get(server.id, subject)

    async def invalidate(
        self, server_id: str, subject: str | None = None, *, drop_session: bool = True
    ) -> None:
        """Forget cached tools (and sessions) for a server or one subject."""
        self._tools_changed(server_id)
        await self._ctx.stores.tools.delete(server_id, subject)
        if drop_session:
            self._watched -= {
                key
                for key in self._watched
                if key[0] == server_id and subject in (None, key[1])
            }
            await self._pool.drop(server_id, subject)
            self._secret_checked.discard(lambda key, _: key == server_id)

    # ------------------------------------------------------------------ tool lists

    async def list_tools(
        self,
        server: ServerRecord,
        subject: str,
        *,
        refresh: bool = False,
        cached: Mapping[tuple[str, str], ToolCacheEntry] | None = None,
        watch: bool = True,
    ) -> list[dict[str, Any]]:
        """The server's tools, cached (design-notes R2.5).

        Stale-while-revalidate after 1 h; refetched after 2 h or with ``refresh``.
        ``cached`` is the cache already read for many servers at once (a fan-out,
        G-31); without it the store is asked. The caller holds the list from now on,
        so the session subscribes to its changes once it is had (R6.4.4); a fan-out
        passes ``watch=False`` and calls :meth:`watch` for every list once all are
        in, so the subscriptions do not compete with the listing.

        Raises:
            TetherError: The list could not be fetched and no usable cache exists.
        """
        tools = await self._list(server, subject, refresh=refresh, cached=cached)
        if watch:
            self.watch(server.id, subject)
        return tools

    async def _list(
        self,
        server: ServerRecord,
        subject: str,
        *,
        refresh: bool,
        cached: Mapping[tuple[str, str], ToolCacheEntry] | None,
    ) -> list[dict[str, Any]]:
        if refresh:
            entry = None
        elif cached is not None:
            entry = cached.get((server.id, subject))
        else:
            entry = await self._ctx.stores.tools.get(server.id, subject)
        now = self._ctx.clock.now()
        if entry is not None and now - entry.fetched_at < HARD_EXPIRY:
            session = self._pool.peek(server.id, subject)
            # a live subscription announces changes: the list's ttlMs is not needed
            hint = (
                None if session is not None and session.hears_changes else entry.ttl_ms
            )
            if now - entry.fetched_at >= soft_expiry(hint):
                self._refresh_in_background(server, subject, entry.tools)
            return [dict(tool) for tool in entry.tools]
        tools = await self.refresh_tools(server, subject)
        if refresh:
            self._tools_changed(server.id)
        return tools

    def watch(self, server_id: str, subject: str) -> None:
        """Whoever holds this list wants to hear when it goes stale (R6.4.4).

        A session already open subscribes now; one opened later subscribes when it
        connects. Serving a cached list makes no session.
        """
        self._watched.add((server_id, subject))
        session = self._pool.peek(server_id, subject)
        if session is not None:
            session.watch_tools()

    def release(self, server_id: str, subject: str) -> None:
        """Close the session's stateless connection if nobody uses it (R6.4.7).

        For a fan-out, which lists many servers to hold their lists, not to call
        them all: each connection is closed as soon as its list is in, so a fan-out
        holds at most ``limit`` at a time. The session stays, with its subscription;
        the next call makes a new connection without a request.
        """
        session = self._pool.peek(server_id, subject)
        if session is not None:
            session.release()

    def _refresh_in_background(
        self, server: ServerRecord, subject: str, held: Sequence[Mapping[str, Any]]
    ) -> None:
        key = (server.id, subject)
        if key in self._refreshing:
            return
        self._refreshing.add(key)

        async def run() -> None:
            try:
                tools = await self.refresh_tools(server, subject)
                if tools != list(held):  # a revalidation that changes nothing is quiet
                    self._tools_changed(server.id)
            except TetherError:
                pass  # recorded in health; the stale list keeps serving
            finally:
                self._refreshing.discard(key)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def refresh_tools(
        self, server: ServerRecord, subject: str
    ) -> list[dict[str, Any]]:
        """Fetch every page of ``tools/list`` now; record health either way.

        The store writes are batched with other servers' (G-31) and shielded: a
        caller's deadline (a toolset view's, a sweep's) cancels the network part,
        never a half-done write.
        """
        now = self._ctx.clock.now()
        try:
            session = await self.session(server, subject)
            listing = await session.list_tool_listing()
            await session.describe()  # the health record keeps the capabilities
        except TetherError as exc:
            await self._record_failure(server, subject, exc, now)
            raise
        await self._record(server, subject, session, listing, now)
        return listing.tools

    async def _record_failure(
        self, server: ServerRecord, subject: str, exc: TetherError, now: datetime
    ) -> None:
        health = ServerHealth(
            server_id=server.id,
            subject=subject,
            status="error",
            last_error=str(exc)[:1000],
            checked_at=now,
        )
        await self.writes.write(None, health)

    async def _record(
        self,
        server: ServerRecord,
        subject: str,
        session: MCPSession,
        listing: ToolListing,
        now: datetime,
    ) -> None:
        await self.writes.write(
            ToolCacheEntry(
                server_id=server.id,
                subject=subject,
                tools=listing.tools,
                fetched_at=now,
                protocol_version=session.protocol_version,
                ttl_ms=listing.ttl_ms,
            ),
            ServerHealth(
                server_id=server.id,
                subject=subject,
                status="ok",
                checked_at=now,
                tools_synced_at=now,
                protocol_version=session.protocol_version,
                capabilities=dict(session.capabilities or {}),
            ),
        )

    async def list_many(
        self,
        targets: Sequence[tuple[ServerRecord, str]],
        *,
        refresh: bool = False,
        limit: int = FAN_OUT,
    ) -> list[list[dict[str, Any]] | TetherError]:
        """``tools/list`` of many (server, subject) pairs at once (issue 9).

        At most ``limit`` servers are asked at a time, each within its own deadline
        (its ``timeout_seconds``); a slow or failing server becomes an error in its
        slot and holds up no other. With ``refresh`` every list is fetched anew, which
        records every server's health: a health sweep.

        Returns:
            One entry per target, in order: the tools, or why they could not be had.
        """
        results: list[list[dict[str, Any]] | TetherError] = [
            UsageError("not listed") for _ in targets
        ]
        limiter = anyio.CapacityLimiter(max(1, limit))
        cached = None if refresh else await self.cached(targets)

        async def one(index: int, server: ServerRecord, subject: str) -> None:
            async with limiter:
                results[index] = await self.list_within(
                    server, subject, refresh=refresh, cached=cached, watch=False
                )
                self.release(server.id, subject)

        async with anyio.create_task_group() as group:
            for index, (server, subject) in enumerate(targets):
                group.start_soon(one, index, server, subject)
        for (server, subject), result in zip(targets, results, strict=True):
            if not isinstance(result, TetherError):
                self.watch(server.id, subject)
        return results

    async def cached(
        self, targets: Sequence[tuple[ServerRecord, str]]
    ) -> dict[tuple[str, str], ToolCacheEntry]:
        """The cached lists of many (server, subject) pairs, in one read (G-31)."""
        keys = [(server.id, subject) for server, subject in targets]
        return await self._ctx.stores.tools.get_many(keys)

    async def list_within(
        self,
        server: ServerRecord,
        subject: str,
        *,
        refresh: bool = False,
        cached: Mapping[tuple[str, str], ToolCacheEntry] | None = None,
        watch: bool = True,
    ) -> list[dict[str, Any]] | TetherError:
        """:meth:`list_tools` within the server's deadline; an error is returned."""
        if not server.enabled:
            return UsageError(f"server '{server.name}' is disabled", server=server.name)
        started = self._ctx.clock.now()
        try:
            with anyio.fail_after(server.timeout_seconds):
                return await self.list_tools(
                    server, subject, refresh=refresh, cached=cached, watch=watch
                )
        except TimeoutError:
            timeout = RequestTimeout(
                f"server '{server.name}' did not list its tools within "
                f"{server.timeout_seconds:g} s",
                server=server.name,
                step="tools/list",
            )
            await self._record_failure(server, subject, timeout, started)
            return timeout
        except TetherError as exc:
            return exc

    async def test_connection(
        self, server: ServerRecord, subject: str
    ) -> ConnectionTest:
        """Connect and list tools with a throw-away session: no cache, no health."""
        secret = await self._header_secret(server)
        async with self._session_for(
            server, subject, secret, task_group=None
        ) as session:
            tools = await session.list_tools()
            await session.describe()
            return ConnectionTest(
                session.protocol_version,
                dict(session.capabilities or {}),
                dict(session.server_info or {}),
                tuple(str(t.get("name", "")) for t in tools),
            )

    # ------------------------------------------------------------------ calls

    async def call(
        self,
        server: ServerRecord,
        subject: str,
        tool: str,
        arguments: Mapping[str, Any] | None,
        *,
        raise_errors: bool = False,
        progress: ProgressCallback | None = None,
    ) -> ToolResult:
        """Call a tool; failures become model-visible error results (TOOL-1).

        ``progress`` receives the call's ``notifications/progress``.

        Raises:
            TetherError: Only with ``raise_errors``.
        """
        if not server.enabled:
            error: TetherError = UsageError(
                f"server '{server.name}' is disabled", server=server.name
            )
            if raise_errors:
                raise error
            return result_from_error(error, code=ToolErrorCode.SERVER_DISABLED)
        try:
            session = await self.session(server, subject)
            raw = await session.call_tool(
                tool, dict(arguments or {}), progress_callback=progress
            )
        except TetherError as exc:
            if raise_errors:
                raise
            return result_from_error(exc)
        return normalize_result(raw)
