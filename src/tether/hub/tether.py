"""The ``Tether`` facade (design-notes D4).

The async Python API that embedding apps, the CLI and the web service all call.

Build one with :meth:`Tether.open` (plain arguments, no settings object) and close it with
:meth:`Tether.aclose` or ``async with``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from tether.errors import (
    NetworkError,
    NotFound,
    TetherError,
    UsageError,
)
from tether.hub.audit import Auditor
from tether.hub.cache import ServerCache
from tether.hub.clock import Clock, Random, SystemClock, SystemRandom
from tether.hub.connections import Connections, StartedAuthorization, subject_for
from tether.hub.context import HubConfig, HubContext, profile_of
from tether.hub.credentials import CredentialService
from tether.hub.discovery import Unauthenticated, unauthenticated_challenge
from tether.hub.jobs import Jobs
from tether.hub.machine import MachineGrants, is_machine_grant
from tether.hub.servers import ServerService
from tether.hub.tools import FAN_OUT, ConnectionTest, ToolRegistry
from tether.hub.toolsets import ToolsetService, ToolsetView
from tether.mcp.elicitation import ElicitationHandler
from tether.mcp.results import ToolResult, result_from_error
from tether.mcp.session import MCPSession, ProgressCallback
from tether.mcp.skills import Skill, SkillEntry
from tether.net.backend import Resolver, system_resolver, vet_url
from tether.net.fetch import Fetcher, NetworkProfile, RequestObserver
from tether.net.policy import NetworkPolicy
from tether.oauth.challenge import BearerChallenge, bearer_challenge
from tether.oauth.registration import client_metadata_document
from tether.store.base import (
    AuditEvent,
    ClientRegistration,
    Connection,
    DiscoveryRecord,
    ServerRecord,
    Stores,
)
from tether.store.crypto import KeyRing
from tether.store.factory import open_stores
from tether.store.journal import TokenJournal, journal_location
from tether.store.lease import LeaseLockProvider
from tether.store.paging import DEFAULT_LIMIT, Page

__all__ = ["ConnectionInfo", "Tether"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What may be shown about a connection: never a token.

    Attributes mirror :class:`~tether.store.base.Connection`, with ``has_refresh_token``
    instead of the token itself.
    """

    server_id: str
    server_name: str
    subject: str
    status: str
    issuer: str | None
    client_id: str | None
    scopes: tuple[str, ...]
    required_scopes: tuple[str, ...]
    expires_at: datetime | None
    has_refresh_token: bool
    connected_at: datetime | None
    refreshed_at: datetime | None
    last_error_code: str | None
    last_error: str | None

    @classmethod
    def of(cls, server: ServerRecord, conn: Connection) -> ConnectionInfo:
        """Strip the tokens from a connection."""
        return cls(
            server.id,
            server.name,
            conn.subject,
            conn.status,
            conn.issuer,
            conn.client_id,
            conn.scopes,
            conn.required_scopes,
            conn.expires_at,
            conn.refresh_token is not None,
            conn.connected_at,
            conn.refreshed_at,
            conn.last_error_code,
            conn.last_error,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


class Tether:
    """Servers, credentials, connections (and, later, tools and toolsets) in one place.

    Args:
        stores: The storage backend (see :func:`tether.store.factory.open_stores`).
        fetcher: The guarded HTTP façade for the OAuth steps.
        config: Callback URL, metadata document URL, client name.
        clock: Time source (tests inject a fake).
        random: Randomness source.
        resolver: DNS resolution for URL checks (tests inject a fake).
    """

    def __init__(
        self,
        *,
        stores: Stores,
        fetcher: Fetcher,
        config: HubConfig,
        clock: Clock | None = None,
        random: Random | None = None,
        resolver: Resolver = system_resolver,
        journal: TokenJournal | None = None,
    ) -> None:
        self.stores = stores
        self.fetcher = fetcher
        clock = clock or SystemClock()
        self.ctx = HubContext(
            stores=stores,
            clock=clock,
            random=random or SystemRandom(),
            fetcher=fetcher,
            auditor=Auditor(stores.audit, clock),
            config=config,
            journal=journal,
        )
        self._resolver = resolver
        self.connections = Connections(self.ctx)
        self.servers = ServerService(
            stores, clock, self.ctx.auditor, self._check_url, self._server_changed
        )
        self.credentials = CredentialService(stores, clock, self.ctx.auditor)
        self.tools = ToolRegistry(self.ctx, self.connections)
        self.toolsets = ToolsetService(stores, clock, self.ctx.auditor, self.tools)
        self.connections.on_change = self.tools.invalidate
        # the tool-call path reads servers through a short-lived cache (hub/cache.py)
        self._tool_servers = ServerCache(self.servers.get, clock)
        self.servers.on_change = self._server_record_changed
        self.jobs = Jobs(self)  # background jobs; the web service runs them

    @classmethod
    async def open(
        cls,
        *,
        database_url: str,
        key_ring: KeyRing,
        redirect_uri: str,
        client_metadata_url: str | None = None,
        client_name: str = "Tether",
        allow_networks: Sequence[str] = (),
        ca_bundle: str | None = None,
        resolver: Resolver = system_resolver,
        clock: Clock | None = None,
        refresh_lease: bool = True,
        pool_size: int | None = None,
        lease_ttl_seconds: float | None = None,
        journal_path: str | os.PathLike[str] | None = None,
        elicitation: ElicitationHandler | None = None,
        on_request: RequestObserver | None = None,
    ) -> Tether:
        """Open the stores (migrating SQL databases) and build a ready facade.

        ``allow_networks`` and ``ca_bundle`` are the installation's network settings:
        every server's flows use them, merged with (for the CA bundle: replaced by)
        the server's own.

        ``refresh_lease=False`` turns off the in-process single-flight and the
        cross-process lease around refreshes: only for measuring what they prevent
        (``bench/refresh_storm.py``); never in production. ``pool_size`` caps the
        database connections of this process (SQL backends). ``lease_ttl_seconds``
        is how long a dead lease holder blocks others (default 30 s; a live holder
        extends its lease, so a shorter one only speeds up recovery from crashes).

        ``journal_path`` is the sealed token journal (DUR-1): by default beside a
        SQLite file (``<file>.token-journal``); PostgreSQL has one only when a path is
        given (the shells pass ``<home>/token-journal``: one per host); memory stores
        never have one. Pending records are replayed here (DUR-2).

        ``elicitation`` answers servers' ``elicitation/create`` (``None`` declines;
        :func:`tether.accept_defaults` accepts a form's defaults). ``on_request`` is
        told of every HTTP request sent, OAuth steps and MCP sessions alike
        (:class:`~tether.net.fetch.RequestRecord`; ``tether probe`` lists them).
        """
        # settings are checked (bad entries, CA bundle, redirect URI) before the
        # stores are opened, so a refusal leaves nothing open
        fetcher = Fetcher(
            NetworkPolicy.from_allowlist(allow_networks),
            resolver=resolver,
            user_agent=f"{client_name} (Tether)",
            ca_bundle=ca_bundle,
            observer=on_request,
        )
        config = HubConfig(
            redirect_uri=redirect_uri,
            client_metadata_url=client_metadata_url,
            client_name=client_name,
            elicitation=elicitation,
        )
        # one clock for the hub and the stores, so pending expiry follows it (AUTHZ-5)
        stores = await open_stores(
            database_url,
            key_ring,
            now=clock.now if clock is not None else None,
            pool_size=pool_size,
        )
        path = journal_location(database_url, journal_path)
        tether = cls(
            stores=stores,
            fetcher=fetcher,
            config=config,
            clock=clock,
            resolver=resolver,
            journal=None if path is None else TokenJournal(path, key_ring),
        )
        tether.connections.refresh_lease = refresh_lease
        if lease_ttl_seconds is not None and stores.leases is not None:
            ttl = timedelta(seconds=lease_ttl_seconds)
            stores.locks = LeaseLockProvider(stores.leases, ttl=ttl)
        await tether.start()
        await tether.replay_journal()
        return tether

    async def replay_journal(self) -> None:
        """Store tokens a crash or a refusing store left in the journal (DUR-2).

        A store that still refuses them is logged, not raised: the records stay
        pending, and the next refresh of each connection tries again.
        """
        try:
            await self.connections.recovery.replay()
        except TetherError as exc:  # the store still refuses, or peers kept writing
            logger.warning("token journal not replayed yet: %s", exc.message)

    async def start(self) -> None:
        """Start background machinery (the MCP session pool)."""
        await self.tools.start()

    async def aclose(self) -> None:
        """Close MCP sessions, network clients and storage."""
        await self.toolsets.aclose()
        await self.tools.aclose()
        await self.fetcher.aclose()
        await self.stores.aclose()

    async def __aenter__(self) -> Tether:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ hooks

    async def _check_url(self, url: str, allow_networks: Sequence[str]) -> None:
        # the same merge as every request of the server's flows (Fetcher.policy_for)
        policy = self.fetcher.policy_for(
            NetworkProfile(allow_networks=tuple(allow_networks))
        )
        try:
            await vet_url(policy, url, resolver=self._resolver)
        except NetworkError as exc:
            # A server can be registered offline: a name that does not
            # resolve now is a warning, not a refusal. Nothing is lost: the transport
            # checks every address again when it connects (SSRF-5).
            logger.warning("%s; the URL is checked again at connect", exc.message)

    def _server_record_changed(self, server_id: str) -> None:
        """A server was updated or deleted: drop its record and the views naming it."""
        self._tool_servers.forget(server_id)
        self.toolsets.forget_server(server_id)

    async def _server_changed(self, server: ServerRecord, reason: str) -> None:
        self._tool_servers.forget(server.id)
        await self.connections.clear_server(
            server, f"configuration changed ({reason}); connect again"
        )
        await self.tools.invalidate(server.id)

    # ------------------------------------------------------------------ tools

    async def list_tools(
        self, server_ref: str, *, user: str | None = None, refresh: bool = False
    ) -> list[dict[str, Any]]:
        """A server's tools (cached; see :class:`~tether.hub.tools.ToolRegistry`)."""
        server = await self._tool_servers.get(server_ref)
        subject = self.tools.subject(server, user)
        return await self.tools.list_tools(server, subject, refresh=refresh)

    async def list_tools_many(
        self,
        server_refs: Sequence[str] | None = None,
        *,
        user: str | None = None,
        refresh: bool = False,
        concurrency: int = FAN_OUT,
    ) -> dict[str, list[dict[str, Any]] | TetherError]:
        """Many servers' tools at once, by server name (issue 9).

        The servers are asked concurrently, at most ``concurrency`` at a time, each
        within its own deadline (its ``timeout_seconds``): one slow or failing server
        holds up no other and shows up as the error in its slot. With ``refresh`` every
        list is fetched anew and every server's health recorded (a health sweep, see
        :meth:`sweep`).

        Args:
            server_refs: Server ids or names; ``None`` for every server.
            user: The user asking (needed for per-user servers).
            refresh: Fetch anew instead of serving the tool cache.
            concurrency: How many servers are asked at once.

        Raises:
            NotFound: A named server does not exist.
        """
        if server_refs is None:
            servers = await self.stores.servers.list()
        else:
            servers = [await self._tool_servers.get(ref) for ref in server_refs]
        out: dict[str, list[dict[str, Any]] | TetherError] = {}
        targets = []
        for server in servers:
            try:
                targets.append((server, self.tools.subject(server, user)))
            except TetherError as exc:
                out[server.name] = exc
        listed = await self.tools.list_many(targets, refresh=refresh, limit=concurrency)
        for (server, _), result in zip(targets, listed, strict=True):
            out[server.name] = result
        return {server.name: out[server.name] for server in servers}

    async def sweep(
        self, *, user: str | None = None, concurrency: int = FAN_OUT
    ) -> dict[str, list[dict[str, Any]] | TetherError]:
        """Health sweep: re-list every server's tools concurrently, recording health.

        See :meth:`list_tools_many`; a disabled server reports a ``UsageError``.
        """
        return await self.list_tools_many(
            None, user=user, refresh=True, concurrency=concurrency
        )

    async def call_tool(
        self,
        server_ref: str,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        user: str | None = None,
        raise_errors: bool = False,
        progress: ProgressCallback | None = None,
    ) -> ToolResult:
        """Call one server's tool by its MCP name; errors become error results.

        Args:
            server_ref: The server's id or name.
            tool: The tool's MCP name.
            arguments: Its arguments.
            user: The user calling (needed for per-user servers).
            raise_errors: Raise :class:`~tether.errors.TetherError` instead of
                returning an error result.
            progress: Receives ``(progress, total, message)`` for each
                ``notifications/progress`` the server sends during the call.
        """
        try:
            server = await self._tool_servers.get(server_ref)
            subject = self.tools.subject(server, user)
        except TetherError as exc:
            if raise_errors:
                raise
            return result_from_error(exc)
        return await self.tools.call(
            server,
            subject,
            tool,
            arguments,
            raise_errors=raise_errors,
            progress=progress,
        )

    # ------------------------------------------------------------------ skills

    async def list_skills(
        self, server_ref: str, *, user: str | None = None
    ) -> list[SkillEntry]:
        """The skills a server offers (SEP-2640 ``skills/list``); no file is read.

        A server that does not declare the Skills extension has none.

        Args:
            server_ref: The server's id or name.
            user: The user asking (needed for per-user servers).

        Raises:
            TetherError: The server could not be reached or answered badly.
        """
        session = await self._skill_session(server_ref, user)
        return await session.list_skills()

    async def read_skill(
        self, server_ref: str, name: str, *, user: str | None = None
    ) -> Skill:
        """Load one skill: its ``SKILL.md``, verified against a fresh listing.

        Only now is a file of the skill read; supporting files wait for
        :meth:`read_skill_file`.

        Raises:
            NotFound: The server lists no skill ``name``.
            SkillVerificationFailed: Size, digest or frontmatter differ from the
                listing; nothing of the skill is returned.
            TetherError: The server could not be reached or answered badly.
        """
        session = await self._skill_session(server_ref, user)
        entry = await self._skill_entry(session, name)
        return await session.read_skill(entry)

    async def read_skill_file(
        self, server_ref: str, name: str, uri: str, *, user: str | None = None
    ) -> bytes:
        """Read one file a skill lists, verified against its size and digest.

        Raises:
            NotFound: The server lists no skill ``name``.
            UsageError: The skill lists no file ``uri``.
            SkillVerificationFailed: Size or digest differ from the listing.
            TetherError: The server could not be reached or answered badly.
        """
        session = await self._skill_session(server_ref, user)
        entry = await self._skill_entry(session, name)
        return await session.read_skill_file(entry, uri)

    async def _skill_session(self, server_ref: str, user: str | None) -> MCPSession:
        server = await self._tool_servers.get(server_ref)
        if not server.enabled:
            raise UsageError(f"server '{server.name}' is disabled", server=server.name)
        return await self.tools.session(server, self.tools.subject(server, user))

    @staticmethod
    async def _skill_entry(session: MCPSession, name: str) -> SkillEntry:
        for entry in await session.list_skills():
            if entry.name == name:
                return entry
        raise NotFound(
            f"the server lists no skill {name!r}",
            server=session.server,
            step="skills/list",
        )

    async def test_connection(
        self, server_ref: str, *, user: str | None = None
    ) -> ConnectionTest:
        """Connect and list tools without touching the cache or health."""
        server = await self.servers.get(server_ref)
        return await self.tools.test_connection(
            server, self.tools.subject(server, user)
        )

    async def toolset(
        self,
        ref: str,
        *,
        user: str | None = None,
        reserved: Sequence[str] = (),
        refresh: bool = False,
    ) -> ToolsetView:
        """A toolset's model-ready tools for ``user``.

        Served from the view cache (built once, dropped when the toolset, one of its
        servers, their tools or the user's connections change); ``refresh`` builds it
        anew.
        """
        return await self.toolsets.view(
            ref, user=user, reserved=reserved, refresh=refresh
        )

    async def call(
        self,
        toolset_ref: str,
        tool_name: str,
        arguments: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        raise_errors: bool = False,
        reserved: Sequence[str] = (),
        progress: ProgressCallback | None = None,
    ) -> ToolResult:
        """Call a toolset's tool by its exposed name (design-notes D3.7).

        ``progress`` receives the call's progress notifications, as for
        :meth:`call_tool`.
        """
        return await self.toolsets.call(
            toolset_ref,
            tool_name,
            arguments,
            user=user,
            raise_errors=raise_errors,
            reserved=reserved,
            progress=progress,
        )

    # ------------------------------------------------------------------ connections

    async def connect(
        self,
        server_ref: str,
        *,
        user: str | None = None,
        challenge: BearerChallenge | str | Sequence[str] | None = None,
    ) -> StartedAuthorization:
        """Start connecting a server; send the user to ``authorization_url``.

        For a shared server the connection belongs to the server; for a per-user
        server (``oauth.per_user``) to ``user``.

        Args:
            server_ref: Server id or name.
            user: The user connecting.
            challenge: The ``WWW-Authenticate`` header value(s) (or parsed Bearer
                challenge) of the 401/403 that made the app connect; its
                ``resource_metadata`` and ``scope`` are used (PRM-3, SCP-2). Without
                it, Tether asks the server itself.
        """
        server = await self.servers.get(server_ref)
        if not server.enabled:
            raise UsageError(
                f"server '{server.name}' is disabled",
                server=server.name,
                hint="enable it first",
            )
        if is_machine_grant(server):
            raise UsageError(
                f"server '{server.name}' uses the {server.oauth.grant} grant: there is "
                "no browser step",
                server=server.name,
                hint="call connect_machine (client_credentials) or connect_enterprise "
                "(enterprise); tool calls also connect it on first use",
            )
        subject = subject_for(server, user)
        return await self.connections.start(
            server, subject=subject, user=user, challenge=_challenge(challenge)
        )

    async def complete(
        self, params: Mapping[str, str | Sequence[str]], *, user: str | None = None
    ) -> ConnectionInfo:
        """Finish a connect with the callback's query parameters."""
        conn = await self.connections.complete(params, user=user)
        server = await self.servers.get(conn.server_id)
        return ConnectionInfo.of(server, conn)

    async def connect_machine(
        self,
        server_ref: str,
        *,
        user: str | None = None,
        challenge: BearerChallenge | str | Sequence[str] | None = None,
    ) -> ConnectionInfo:
        """Connect a ``client_credentials`` server now, without a browser (EXT-1 … 3).

        Not required: the first tool call does the same. Use it to check the settings,
        or to fail early. Renewal on expiry needs no call at all.

        Raises:
            UsageError: The server uses another grant.
            TetherError: A step failed; the error names the server and the step.
        """
        server = await self._enabled(server_ref)
        if server.oauth.grant == "enterprise":
            raise UsageError(
                f"server '{server.name}' uses enterprise-managed authorization",
                server=server.name,
                hint="call connect_enterprise with the user's ID token",
            )
        conn = await MachineGrants(self.connections).connect(
            server,
            subject_for(server, user),
            user=user,
            challenge=_challenge(challenge),
        )
        return ConnectionInfo.of(server, conn)

    async def connect_enterprise(
        self,
        server_ref: str,
        *,
        user: str | None = None,
        id_token: str | SecretStr | None = None,
        challenge: BearerChallenge | str | Sequence[str] | None = None,
    ) -> ConnectionInfo:
        """Connect an ``enterprise`` server with the user's ID token (EXT-4).

        The ID token (from the app's own sign-in at the enterprise IdP) is exchanged at
        the IdP for an ID-JAG (RFC 8693), which the MCP authorization server redeems
        (RFC 7523 JWT bearer grant). Neither token is stored; only the resulting access
        (and refresh) token is.

        Args:
            server_ref: Server id or name.
            user: The signed-in user (required for a per-user server).
            id_token: The user's ID token; ``None`` uses the configured static one.
            challenge: The Bearer challenge that made the app connect, if any.

        Raises:
            UsageError: The server uses another grant, or no ID token is available.
            TetherError: A step failed; the error names the server and the step.
        """
        server = await self._enabled(server_ref)
        if server.oauth.grant != "enterprise":
            raise UsageError(
                f"server '{server.name}' does not use enterprise-managed authorization",
                server=server.name,
                hint="set the server's oauth.grant to 'enterprise'",
            )
        if isinstance(id_token, str):
            id_token = SecretStr(id_token)
        conn = await MachineGrants(self.connections).connect(
            server,
            subject_for(server, user),
            user=user,
            id_token=id_token,
            challenge=_challenge(challenge),
        )
        return ConnectionInfo.of(server, conn)

    async def challenge(
        self, server_ref: str, *, protocol_version: str | None = None
    ) -> Unauthenticated:
        """Ask the server without a token whether, and how, it wants authorization.

        The first request of a cold connect (PRM-2, PRM-5): its status, content type
        and ``Bearer`` challenge, if any. ``protocol_version`` is the MCP revision to
        try first (``None`` detects it). Nothing is stored.

        Raises:
            NetworkError: The server could not be reached (or was refused).
        """
        server = await self.servers.get(server_ref)
        return await unauthenticated_challenge(
            self.fetcher,
            server.url,
            profile=profile_of(server),
            server=server.name,
            protocol_version=protocol_version,
        )

    async def discovery(self, server_ref: str) -> DiscoveryRecord | None:
        """What discovery last found for a server (RFC 9728 §3, RFC 8414 §3), if any."""
        server = await self.servers.get(server_ref)
        return await self.stores.discovery.get(server.id)

    async def registration(self, server_ref: str) -> ClientRegistration | None:
        """The OAuth client Tether holds at the server's discovered issuer, if any.

        Its secret stays a :class:`~pydantic.SecretStr`; never print it.
        """
        server = await self.servers.get(server_ref)
        record = await self.stores.discovery.get(server.id)
        if record is None:
            return None
        return await self.stores.registrations.get(server.id, record.issuer)

    async def follow_authorization(
        self, server_ref: str, authorization_url: str
    ) -> dict[str, str | list[str]]:
        """Complete an authorization headlessly, for an AS that approves at once.

        Follows the redirects of ``authorization_url`` (from :meth:`connect`) under the
        server's network settings until one reaches Tether's callback URL, and returns
        that callback's query parameters for :meth:`complete`. For diagnostics and
        tests (``tether probe --follow-redirects``); a person's consent needs a browser.
        """
        server = await self.servers.get(server_ref)
        return await self.fetcher.follow_authorization(
            authorization_url, self.ctx.config.redirect_uri, profile=profile_of(server)
        )

    async def _enabled(self, server_ref: str) -> ServerRecord:
        server = await self.servers.get(server_ref)
        if not server.enabled:
            raise UsageError(
                f"server '{server.name}' is disabled",
                server=server.name,
                hint="enable it first",
            )
        return server

    async def connection(
        self, server_ref: str, *, user: str | None = None
    ) -> ConnectionInfo:
        """The connection of a server for the user (or the shared one)."""
        server = await self.servers.get(server_ref)
        subject = subject_for(server, user) if server.oauth.per_user else "shared"
        return ConnectionInfo.of(server, await self.connections.get(server, subject))

    async def refresh(
        self, server_ref: str, *, user: str | None = None
    ) -> ConnectionInfo:
        """Refresh the connection's tokens now."""
        server = await self.servers.get(server_ref)
        subject = subject_for(server, user)
        conn = await self.connections.refresh(server, subject, force=True)
        return ConnectionInfo.of(server, conn)

    async def disconnect(
        self, server_ref: str, *, user: str | None = None, actor: str | None = None
    ) -> list[str]:
        """Revoke and forget the connection's tokens; returns the revocation outcomes."""
        server = await self.servers.get(server_ref)
        subject = subject_for(server, user)
        return await self.connections.disconnect(server, subject, actor=actor or user)

    async def delete_server(self, server_ref: str, *, actor: str | None) -> None:
        """Revoke every grant of a server, then delete it."""
        server = await self.servers.get(server_ref)
        self._tool_servers.forget(server.id)
        await self.connections.clear_server(server, "server deleted")
        await self.tools.invalidate(server.id)
        await self.servers.delete(server.id, actor=actor)

    async def audit(
        self, *, server_ref: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        """Newest audit events, optionally for one server."""
        server_id = (await self.servers.get(server_ref)).id if server_ref else None
        return await self.stores.audit.list(server_id=server_id, limit=limit)

    # ------------------------------------------------------------------ listings

    async def list_servers(
        self, *, limit: int = DEFAULT_LIMIT, after: str | None = None
    ) -> Page[ServerRecord]:
        """One page of servers by name (keyset; pass ``page.next`` as ``after``).

        Raises:
            ValidationFailed: ``limit`` outside 1 … 1000, or a foreign cursor.
        """
        return await self.stores.servers.list_page(limit=limit, after=after)

    async def list_connections(
        self,
        server_ref: str | None = None,
        *,
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
    ) -> Page[ConnectionInfo]:
        """One page of connections (never a token), by server id and subject.

        Only the page's connections are read and decrypted, so memory stays flat
        however many there are.

        Raises:
            NotFound: ``server_ref`` names no server.
            ValidationFailed: ``limit`` outside 1 … 1000, or a foreign cursor.
        """
        server_id = (await self.servers.get(server_ref)).id if server_ref else None
        page = await self.stores.connections.list_page(
            server_id, limit=limit, after=after
        )
        servers: dict[str, ServerRecord] = {}
        infos: list[ConnectionInfo] = []
        for conn in page.items:
            if conn.server_id not in servers:
                servers[conn.server_id] = await self._tool_servers.get(conn.server_id)
            infos.append(ConnectionInfo.of(servers[conn.server_id], conn))
        return Page(infos, page.next)

    async def audit_page(
        self,
        *,
        server_ref: str | None = None,
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
    ) -> Page[AuditEvent]:
        """One page of audit events, newest first (keyset by event id).

        Raises:
            NotFound: ``server_ref`` names no server.
            ValidationFailed: ``limit`` outside 1 … 1000, or a foreign cursor.
        """
        server_id = (await self.servers.get(server_ref)).id if server_ref else None
        return await self.stores.audit.list_page(
            server_id=server_id, limit=limit, after=after
        )

    def client_metadata_document(self) -> dict[str, Any]:
        """The client ID metadata document Tether serves (CIMD-1 … CIMD-4).

        Raises:
            UsageError: No metadata document URL is configured.
        """
        url = self.ctx.config.client_metadata_url
        if url is None:
            raise UsageError(
                "no client metadata document URL is configured",
                hint="set a public https base URL",
            )
        return client_metadata_document(
            url,
            client_name=self.ctx.config.client_name,
            redirect_uris=[self.ctx.config.redirect_uri],
        )


def _challenge(
    value: BearerChallenge | str | Sequence[str] | None,
) -> BearerChallenge | None:
    if value is None or isinstance(value, BearerChallenge):
        return value
    return bearer_challenge(value)
