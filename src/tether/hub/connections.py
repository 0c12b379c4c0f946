"""The OAuth connection flow: start, complete, refresh, disconnect (design-notes D3.1, D3.3).

Two-phase and stateless between requests: :meth:`Connections.start` stores a pending
authorization under its ``state`` and returns the URL; :meth:`Connections.complete` takes
it (atomically, once) on whichever worker the callback lands. Protocol rules live in
``oauth/``; this module orders the steps, sends requests through ``net/`` and writes
records through ``store/``.

Refresh is single-flight per connection: take the connection's lock, re-read, refresh
only if nobody else did, write with compare-and-set on ``version`` (RFR-5). The lock
comes from the store's :class:`~tether.store.base.LockProvider`, in-process today and
cross-process when scaled out.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import anyio
from pydantic import SecretStr

from tether.errors import (
    AuthorizationRequired,
    CallbackRejected,
    ConfigurationError,
    InvalidClient,
    NetworkError,
    NotFound,
    OAuthError,
    StorageError,
    TetherError,
    UsageError,
)
from tether.hub.context import HubContext, profile_of
from tether.hub.discovery import Discoverer, as_metadata
from tether.hub.dpop import check_token_type, connection_key, grant_key, post_token
from tether.hub.flight import SingleFlight
from tether.hub.grants import (
    TRANSIENT_OAUTH,
    GrantWriter,
    cleared_change,
    dead_grant_change,
    event_change,
    failure_fields,
    refreshed_change,
    step_up_change,
)
from tether.hub.machine import MachineGrants, is_machine_grant
from tether.hub.recovery import Recovery
from tether.hub.registration import Registrar, auth_for
from tether.hub.status import Event
from tether.oauth.authorize import (
    authorization_url,
    select_scopes,
    union_scopes,
    with_offline_access,
)
from tether.oauth.callback import callback_state, validate_callback
from tether.oauth.challenge import BearerChallenge
from tether.oauth.client_auth import FormPost
from tether.oauth.dpop import DPoPKey
from tether.oauth.models import AuthorizationServerMetadata
from tether.oauth.pkce import code_challenge, code_verifier
from tether.oauth.revocation import (
    check_revocation_response,
    retry_after_seconds,
    revocation_requests,
)
from tether.oauth.tokens import (
    TokenSet,
    authorization_code_request,
    merge_refreshed,
    parse_token_response,
    refresh_request,
    require_refresh_token,
)
from tether.store.base import (
    SHARED,
    ClientRegistration,
    Connection,
    DiscoveryRecord,
    PendingAuthorization,
    ServerRecord,
)

__all__ = ["Connections", "StartedAuthorization", "subject_for"]

logger = logging.getLogger(__name__)

CallbackParams = Mapping[str, str | Sequence[str]]
_MAX_ERROR = 1000


@dataclass(frozen=True, slots=True)
class StartedAuthorization:
    """The result of starting a connect.

    Attributes:
        authorization_url: Where to send the user's browser.
        state: The one-time state (also in the URL).
        expires_at: When the pending authorization lapses.
        server_id: The server being connected.
        subject: ``"shared"`` or the user id.
        initiator: Who started it; only they can complete it.
    """

    authorization_url: str
    state: str
    expires_at: datetime
    server_id: str
    subject: str
    initiator: str = ""


def subject_for(server: ServerRecord, user: str | None) -> str:
    """The connection subject for a user at a server (design-notes D1).

    Raises:
        UsageError: A per-user server without a user.
    """
    if not server.oauth.per_user:
        return SHARED
    if not user:
        raise UsageError(
            f"server '{server.name}' connects per user; say which user",
            server=server.name,
        )
    return user


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _short(error: BaseException) -> str:
    return str(error)[:_MAX_ERROR]


class Connections:
    """Connect, refresh and disconnect OAuth grants for (server, subject)."""

    def __init__(self, ctx: HubContext) -> None:
        self._ctx = ctx
        self.discoverer = Discoverer(ctx)
        self.registrar = Registrar(ctx)
        self.grants = GrantWriter(ctx)
        self.recovery = Recovery(ctx, self.grants)
        self._unstored: dict[tuple[str, str], Connection] = {}
        """Tokens journaled but not stored (the store refused them), per connection:
        this process keeps using them until a replay stores them (DUR-2)."""
        self._flights: SingleFlight[Connection] = SingleFlight()
        self.refresh_lease = True
        self.observer: Callable[[str, float], None] | None = None
        """Told ``("refresh.<outcome>", 1)`` per refresh at an AS and
        ``("lease_wait", seconds)`` per lease taken (metrics; never raises into us)."""
        self.on_change: Callable[[str, str | None], Awaitable[None]] | None = None

    async def _changed(self, server_id: str, subject: str | None) -> None:
        """Invalidate tool caches and MCP sessions after a grant changed."""
        await self._ctx.stores.tools.delete(server_id, subject)
        if self.on_change is not None:
            await self.on_change(server_id, subject)

    # ------------------------------------------------------------------ helpers

    async def _server(self, server_id: str) -> ServerRecord:
        server = await self._ctx.stores.servers.get(server_id)
        if server is None:
            raise NotFound(f"no server '{server_id}'")
        return server

    @staticmethod
    def _require_oauth(server: ServerRecord) -> None:
        if server.auth_mode != "oauth":
            raise ConfigurationError(
                f"server '{server.name}' does not use OAuth (auth mode "
                f"'{server.auth_mode}')",
                server=server.name,
                hint="set the server's auth mode to oauth before connecting",
            )

    async def get(self, server: ServerRecord, subject: str) -> Connection:
        """The connection record, or an empty disconnected one."""
        return await self.grants.read(server.id, subject)

    async def _mark_failed(
        self, server: ServerRecord, subject: str, event: Event, error: TetherError
    ) -> None:
        """Record a failure that keeps the tokens (rule 2); never loses a peer's write."""
        now = self._ctx.clock.now()
        await self.grants.apply(
            server.id, subject, event_change(event, now, **failure_fields(error, now))
        )

    # ------------------------------------------------------------------ start

    async def start(
        self,
        server: ServerRecord,
        *,
        subject: str,
        user: str | None,
        challenge: BearerChallenge | None = None,
    ) -> StartedAuthorization:
        """Discover, register, and build the authorization URL (design-notes R3.6).

        Without ``challenge`` the server is first asked without a token
        (:meth:`Discoverer.challenge`), so a connect a person starts uses the same
        challenge an MCP request would have met.

        Scopes (SCP-2 … SCP-5): the admin's configured list as is; otherwise the
        challenge's ``scope`` (authoritative, SCP-3), else all of the PRM's
        ``scopes_supported``, plus ``offline_access`` when the AS lists it (SCP-4, which
        also adds ``prompt=consent``, SCP-5); then any scopes a step-up recorded.

        Args:
            server: An OAuth server.
            subject: ``"shared"`` or the user id (see :func:`subject_for`).
            user: The user starting the connect; only they may complete it.
            challenge: The ``WWW-Authenticate`` Bearer challenge that triggered the
                connect: its ``resource_metadata`` is tried first (PRM-3) and its
                ``scope`` chosen (SCP-2).

        Returns:
            The URL to send the browser to, and the state.

        Raises:
            ConfigurationError: Not an OAuth server, or no usable registration path.
            DiscoveryError: Discovery or metadata validation failed.
            OAuthError: Dynamic registration was refused.
        """
        self._require_oauth(server)
        if not user:
            # issue 7 item 11: a start nobody can be held to could be completed by
            # anybody holding the URL's state
            raise UsageError(
                f"say who connects server '{server.name}'",
                server=server.name,
                hint="pass user= (the end user's id, or the admin's for a shared "
                "connection); only that user can complete the connect",
            )
        discovery, challenge = await self.discoverer.for_connect(server, challenge)
        metadata = as_metadata(discovery)
        current = await self.get(server, subject)
        scopes = select_scopes(
            configured=server.oauth.scopes,
            challenge_scope=challenge.scope if challenge else (),
            prm_scopes_supported=discovery.scopes_supported,
        )
        if not server.oauth.scopes:  # a configured list is the admin's, verbatim
            scopes = with_offline_access(scopes, metadata.scopes_supported)
        # step-up (SCP-6, SCP-7): ask for what was missing as well
        scopes = union_scopes(scopes, current.required_scopes)
        # a dynamic client must be registered for them (re-registered on step-up)
        registration = await self.registrar.ensure(
            server,
            metadata,
            scopes=union_scopes(scopes, discovery.scopes_supported or ()),
        )
        auth_for(registration)  # an unusable client fails now, before any redirect
        state = _b64(self._ctx.random.token(32))
        verifier = code_verifier(self._ctx.random.token(32))
        url = authorization_url(
            metadata.authorization_endpoint or "",
            client_id=registration.client_id,
            redirect_uri=self._ctx.config.redirect_uri,
            state=state,
            code_challenge=code_challenge(verifier),
            resource=discovery.resource,
            scopes=scopes,
            custom_params=server.oauth.authorization_params,
        )
        now = self._ctx.clock.now()
        await self._ctx.stores.pending.put(
            PendingAuthorization(
                state=state,
                server_id=server.id,
                subject=subject,
                user_id=user,
                code_verifier=_secret(verifier),
                issuer=metadata.issuer,
                resource=discovery.resource,
                redirect_uri=self._ctx.config.redirect_uri,
                client_id=registration.client_id,
                scopes=" ".join(scopes) or None,
                created_at=now,
                server_version=server.version,
                discovery=discovery,
            ),
            ttl=self._ctx.config.pending_ttl,
        )
        await self._ctx.auditor.record(
            "connection.start",
            actor=user,
            target_type="connection",
            target_id=f"{server.id}:{subject}",
            server_id=server.id,
            after={
                "issuer": metadata.issuer,
                "scopes": list(scopes),
                "client_id": registration.client_id,
                "registration": registration.source,
            },
        )
        return StartedAuthorization(
            url, state, now + self._ctx.config.pending_ttl, server.id, subject, user
        )

    # ------------------------------------------------------------------ complete

    async def complete(self, params: CallbackParams, *, user: str | None) -> Connection:
        """Finish a connect from the callback's query parameters (design-notes R3.7).

        The pending authorization is taken by ``state`` once; the RFC 9207 ``iss`` is
        checked before ``error`` is read (CB-2 … CB-4) and before the code is used.

        Args:
            params: The callback's decoded query parameters.
            user: The user the callback request belongs to.

        Returns:
            The connected connection.

        Raises:
            CallbackRejected: Unknown, expired, replayed or foreign state; ``iss``
                mismatch; no code; the server changed since the start.
            OAuthError: The AS returned an error, or refused the code exchange.
            ConfigurationError: ``require_refresh_token`` and none was granted.
        """
        state = callback_state(params)
        pending = await self._ctx.stores.pending.take(state)
        if pending is None:
            validate_callback(
                params,
                pending_found=False,
                expected_issuer=None,
                iss_parameter_supported=False,
            )
            raise CallbackRejected("unknown state", step="callback")  # unreachable
        if pending.user_id is None or pending.user_id != user:
            raise CallbackRejected(
                "this connection was started by another user; start it again yourself",
                step="callback",
            )
        server = await self._ctx.stores.servers.get(pending.server_id)
        if server is None:
            raise CallbackRejected(
                "the server was deleted during the connect", step="callback"
            )
        try:
            return await self._complete(server, pending, params)
        except TetherError as exc:
            # A failed exchange is a connect failure, even for invalid_grant: there
            # is no grant yet to re-authorize.
            # a store that refused the tokens is no connect failure: its journal
            # record (DUR-2) must find the connection untouched to be replayed
            if not isinstance(exc, CallbackRejected | StorageError):
                await self._mark_failed(server, pending.subject, "failed", exc)
            if exc.server != server.name:  # GEN-4: name the admin's server
                if exc.server:
                    exc.details.setdefault("url", exc.server)
                exc.server = server.name
            raise

    async def _complete(
        self,
        server: ServerRecord,
        pending: PendingAuthorization,
        params: CallbackParams,
    ) -> Connection:
        # this connect's own discovery (the stored one is the live grants')
        discovery = pending.discovery or await self._ctx.stores.discovery.get(server.id)
        if discovery is None or discovery.issuer != pending.issuer:
            raise CallbackRejected(
                "the server's authorization server changed since the connect started",
                step="callback",
                hint="start the connection again",
            )
        if server.version != pending.server_version:
            raise CallbackRejected(
                "the server's settings changed since the connect started",
                step="callback",
                hint="start the connection again",
            )
        metadata = as_metadata(discovery)
        code = validate_callback(
            params,
            pending_found=True,
            expected_issuer=pending.issuer,
            iss_parameter_supported=metadata.authorization_response_iss_parameter_supported,
        )
        try:  # the client this connect was started with, live or staged
            registration = await self.registrar.for_grant(
                server, pending.issuer, pending.client_id
            )
        except AuthorizationRequired:
            raise CallbackRejected(
                "the client registration changed during the connect",
                step="callback",
                hint="start the connection again",
            ) from None
        key = grant_key(server, discovery, None)  # a new grant gets a new key
        post = authorization_code_request(
            metadata.token_endpoint or "",
            code=code,
            code_verifier=pending.code_verifier.get_secret_value(),
            redirect_uri=pending.redirect_uri,
            resource=pending.resource,
            auth=auth_for(registration),
            custom_params=server.oauth.token_params,
        )
        tokens = await self._token_call(
            server, post, discovery, (pending.scopes or ""), key=key
        )
        try:
            require_refresh_token(tokens, required=server.oauth.require_refresh_token)
            dpop_key = check_token_type(server, tokens, key)
        except ConfigurationError as exc:
            # The grant is dropped, so the AS should drop it too (REV, best effort):
            # an access token nobody holds any more must not stay valid until expiry.
            outcome = await self._revoke_dropped(server, metadata, registration, tokens)
            exc.details["revocation"] = outcome
            raise
        now = self._ctx.clock.now()
        fields: dict[str, object] = {
            **_token_fields(tokens),  # replaces the whole set (G-11)
            "dpop_key": dpop_key,
            "required_scopes": (),
            "issuer": pending.issuer,
            "client_id": registration.client_id,
            "resource": pending.resource,
            "connected_by": pending.user_id,
            "connected_at": now,
            "refreshed_at": now,
            "retry_at": None,
            "grant_epoch": server.grant_epoch,
            "last_error_code": None,
            "last_error": None,
            "last_error_at": None,
        }
        # DUR-1: sealed in the journal before the store write, replayed if it fails
        record = self.recovery.journal(
            "connect",
            Connection(server_id=server.id, subject=pending.subject),
            now,
            fields,
            grant_epoch=server.grant_epoch,
        )
        conn = await self.grants.apply(
            server.id,
            pending.subject,
            event_change("authorized", now, **fields),
            retry_storage=True,  # the AS issued these tokens: never drop them
        )
        self.recovery.settle(record)
        await self.registrar.promote(server, registration)
        if pending.discovery is not None:  # the flow completed: now it is the live one
            await self._ctx.stores.discovery.put(pending.discovery)
        await self._changed(server.id, pending.subject)
        await self._ctx.auditor.record(
            "connection.connect",
            actor=pending.user_id,
            target_type="connection",
            target_id=f"{server.id}:{pending.subject}",
            server_id=server.id,
            after={
                "status": conn.status,
                "scopes": list(conn.scopes),
                "expires_at": conn.expires_at.isoformat() if conn.expires_at else None,
                "refresh_token": conn.refresh_token is not None,
            },
        )
        return conn

    async def _revoke_dropped(
        self,
        server: ServerRecord,
        metadata: AuthorizationServerMetadata,
        registration: ClientRegistration,
        tokens: TokenSet,
    ) -> str:
        """Revoke tokens that were issued but will not be kept; never raises."""
        if metadata.revocation_endpoint is None:
            return "no revocation endpoint: the access token stays valid until expiry"
        posts = revocation_requests(
            metadata.revocation_endpoint,
            auth=auth_for(registration),
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
        )
        try:
            for post in posts:
                await self._revoke_one(server, post)
        except TetherError as exc:  # REV-5: failing to revoke changes nothing here
            return f"not revoked: {exc.message}"
        return "revoked"

    async def _token_call(
        self,
        server: ServerRecord,
        post: FormPost,
        discovery: DiscoveryRecord,
        requested_scopes: str,
        *,
        key: DPoPKey | None = None,
    ) -> TokenSet:
        # with a DPoP proof when the grant is sender-constrained (RFC 9449 §5, §8)
        response = await post_token(self._ctx, server, post, key)
        try:
            return parse_token_response(
                response.status,
                response.body,
                response.content_type,
                now=self._ctx.clock.now(),
                url=post.url,
                requested_scopes=requested_scopes.split(),
                dpop=key is not None,
            )
        except TetherError as exc:
            # the refresh classifier reads the status and Retry-After (RFC 9110 §10.2.3)
            exc.details.setdefault("status", response.status)
            wait = _header_seconds(response.header("retry-after"), self._ctx)
            if wait is not None:
                exc.details.setdefault("retry_after", wait)
            # GEN-4: name the admin's server; the token endpoint stays in the details
            if exc.server != server.name:
                exc.details.setdefault("url", exc.server or post.url)
                exc.server = server.name
            if isinstance(exc, InvalidClient):
                # REG-11: a dynamic client the AS no longer knows is registered afresh.
                await self._forget_dynamic(server, discovery.issuer)
            raise

    async def _forget_dynamic(self, server: ServerRecord, issuer: str) -> None:
        registration = await self._ctx.stores.registrations.get(server.id, issuer)
        if registration is not None and registration.source == "dynamic":
            await self._ctx.stores.registrations.delete(server.id, issuer)

    # ------------------------------------------------------------------ tokens

    def refresh_due(self, conn: Connection) -> datetime | None:
        """When the access token should be refreshed proactively (RFR-2), if ever.

        The margin before expiry is the configured one (60 s), capped at half the
        token's lifetime (``expires_at`` minus ``refreshed_at``, else
        ``connected_at``), so a 5-second token is refreshed after 2.5 s rather than
        on every request.
        """
        if conn.expires_at is None:
            return None
        margin = self._ctx.config.refresh_margin
        issued = conn.refreshed_at or conn.connected_at
        if issued is not None and issued < conn.expires_at:
            margin = min(margin, (conn.expires_at - issued) / 2)
        return conn.expires_at - margin

    def needs_refresh(self, conn: Connection) -> bool:
        """True when the access token is due for a proactive refresh (RFR-2)."""
        due = self.refresh_due(conn)
        return due is not None and due <= self._ctx.clock.now()

    async def usable(self, server: ServerRecord, subject: str) -> Connection:
        """A connection with an access token, refreshed proactively (RFR-2).

        Raises:
            AuthorizationRequired: Not connected, or the grant is dead; names the issuer.
            NetworkError: The token expired and its refresh is backing off after a
                transient failure (the tokens are kept; the error says when).
        """
        if is_machine_grant(server):  # client credentials / enterprise: no browser
            return await MachineGrants(self).usable(server, subject)
        conn = await self.get(server, subject)
        if self.outdated(server, conn):
            raise await self._retire(server, conn)
        if conn.access_token is None or conn.status in ("disconnected", "needs_reauth"):
            raise self._auth_required(server, conn)
        if self.needs_refresh(conn) and conn.refresh_token is not None:
            if self._backing_off(conn):
                return self._during_backoff(server, conn)
            return await self.refresh(server, subject, stale=conn)
        return conn

    @staticmethod
    def outdated(server: ServerRecord, conn: Connection) -> bool:
        """True for tokens granted before the server's grants were invalidated."""
        holds = conn.access_token is not None or conn.refresh_token is not None
        return holds and conn.grant_epoch != server.grant_epoch

    async def _retire(
        self, server: ServerRecord, conn: Connection
    ) -> AuthorizationRequired:
        """Revoke and clear a grant of an older epoch; it is never used.

        That is the clean-up a configuration change did not finish (the process
        died after saving the change).
        """
        reason = "configuration changed; connect again"
        await self.disconnect(server, conn.subject, actor=None, reason=reason)
        return self._auth_required(
            server, conn, f"server '{server.name}' changed since it was connected"
        )

    def _backing_off(self, conn: Connection) -> bool:
        return conn.retry_at is not None and conn.retry_at > self._ctx.clock.now()

    def _during_backoff(self, server: ServerRecord, conn: Connection) -> Connection:
        """Use a token that still works while a failed refresh waits (rule 2)."""
        now = self._ctx.clock.now()
        if conn.access_token is not None and (
            conn.expires_at is None or conn.expires_at > now
        ):
            return conn
        retry_at = conn.retry_at.isoformat() if conn.retry_at else None
        raise NetworkError(
            f"the token of server '{server.name}' expired and its refresh failed "
            f"({conn.last_error_code or 'unreachable'}); the next try is at {retry_at}",
            server=server.name,
            step="refresh",
            hint="the authorization server is unreachable or overloaded; "
            "the grant is kept and retried automatically",
            details={"retry_at": retry_at, "status": conn.status},
        )

    def _auth_required(
        self, server: ServerRecord, conn: Connection, why: str | None = None
    ) -> AuthorizationRequired:
        issuer = conn.issuer or "its authorization server"
        return AuthorizationRequired(
            why or f"server '{server.name}' needs to be connected at {issuer}",
            server=server.name,
            hint="connect it (tether connect) and try again",
            details={
                "issuer": conn.issuer,
                "status": conn.status,
                "required_scopes": list(conn.required_scopes),
                "last_error_code": conn.last_error_code,
            },
        )

    def _adoptable(self, conn: Connection, stale: Connection | None) -> bool:
        """A peer's token replaces the caller's stale one only while it is fresh."""
        now = self._ctx.clock.now()
        return (
            stale is not None
            and conn.access_token is not None
            and conn.access_token != stale.access_token
            and conn.status in ("connected", "refresh_failed", "error")
            and not self.needs_refresh(conn)
            and (conn.expires_at is None or conn.expires_at > now)
        )

    async def refresh(
        self,
        server: ServerRecord,
        subject: str,
        *,
        stale: Connection | None = None,
        force: bool = False,
    ) -> Connection:
        """Refresh the grant once for all concurrent callers (RFR-5, issue 7).

        Callers in this process share one flight; the flight takes the connection's
        cross-process lease, re-reads, and refreshes only if no peer did. The token
        request and the persist of its answer run shielded from cancellation, so a
        caller's deadline never throws away tokens the AS issued.

        Args:
            server: The server.
            subject: The connection subject.
            stale: The connection the caller saw; if the stored one already has another
                fresh access token, a peer refreshed and that one is returned.
            force: Refresh even when the token is not close to expiry.

        Returns:
            The connection after the refresh (or a peer's).

        Raises:
            AuthorizationRequired: No refresh token, or the AS refused the grant (any
                OAuth error: the provider's code is in ``details``).
            NetworkError, RemoteError: A transient failure (network, 5xx, 429); the
                tokens are kept and the connection backs off.
        """
        if is_machine_grant(server):  # the grant itself is re-run (RFC 6749 §4.4.3)
            return await MachineGrants(self).renew(server, subject, stale=stale)
        if not self.refresh_lease:  # benchmarks only: the unguarded baseline
            return await self._refresh_flight(server, subject, stale, force)
        key = (server.id, subject)
        try:
            conn = await self._flights.run(
                key, lambda: self._refresh_flight(server, subject, stale, force)
            )
        except StorageError:
            # the store refuses writes: tokens this process journaled still serve
            held = self._unstored.get(key)
            if held is None or self.needs_refresh(held):
                raise
            return held
        if stale is not None and conn.access_token == stale.access_token:
            # the flight we joined started before our token was refused: one more
            conn = await self._flights.run(
                key, lambda: self._refresh_flight(server, subject, stale, True)
            )
        return conn

    async def _refresh_flight(
        self,
        server: ServerRecord,
        subject: str,
        stale: Connection | None,
        force: bool,
    ) -> Connection:
        conn = await self.get(server, subject)
        if self._adoptable(conn, stale):
            return conn
        if not self.refresh_lease:  # benchmarks only: the unguarded baseline
            return await self._refresh_held(server, conn, stale, force)
        waiting = time.monotonic()
        async with self.grants.lease(server.id, subject):
            self._observe("lease_wait", time.monotonic() - waiting)
            await self._replay(server, subject)
            conn = await self.get(server, subject)
            if self._adoptable(conn, stale):
                return conn  # a peer refreshed while we waited for the lease
            return await self._refresh_held(server, conn, stale, force)

    async def _replay(self, server: ServerRecord, subject: str) -> None:
        """Replay this connection's journaled tokens before refreshing it (DUR-2).

        Raises:
            StorageError: The store still refuses them (they stay journaled).
        """
        await self.recovery.replay(server.id, subject)
        self._unstored.pop((server.id, subject), None)

    async def _refresh_held(
        self,
        server: ServerRecord,
        conn: Connection,
        stale: Connection | None,
        force: bool,
    ) -> Connection:
        if self.outdated(server, conn):
            raise await self._retire(server, conn)
        if conn.refresh_token is None or conn.status in (
            "disconnected",
            "needs_reauth",
        ):
            if conn.access_token is not None and conn.status not in (
                "disconnected",
                "needs_reauth",
            ):
                raise self._auth_required(
                    server,
                    conn,
                    f"server '{server.name}' holds no refresh token; connect it again",
                )
            raise self._auth_required(server, conn)
        if not force and stale is None and not self.needs_refresh(conn):
            return conn
        if self._backing_off(conn):
            return self._during_backoff(server, conn)
        return await self._refresh_exchange(server, conn)

    async def _refresh_exchange(
        self, server: ServerRecord, conn: Connection
    ) -> Connection:
        discovery = await self.discoverer.stored_or_fresh(server)
        if conn.issuer is not None and discovery.issuer != conn.issuer:
            # PRM-9: the PRM now names another AS (SEP-2352); this grant and its
            # client belong to the old one and are never presented to the new one.
            raise self._auth_required(
                server,
                conn,
                f"server '{server.name}' moved to authorization server "
                f"{discovery.issuer}; connect it again",
            )
        metadata = as_metadata(discovery)
        registration = await self.registrar.for_grant(
            server, conn.issuer or discovery.issuer, conn.client_id
        )
        used = conn.refresh_token.get_secret_value() if conn.refresh_token else ""
        post = refresh_request(
            metadata.token_endpoint or "",
            refresh_token=_secret(used),
            resource=conn.resource,
            auth=auth_for(registration),
            custom_params=server.oauth.token_params,
        )
        # From the request to the commit nothing may cancel us: the AS rotates the
        # refresh token when it answers, so its answer must reach the store (issue 7
        # item 3). The fetcher's own deadline (the server's timeout) bounds the wait.
        with anyio.CancelScope(shield=True):
            try:
                tokens = await self._token_call(
                    server,
                    post,
                    discovery,
                    " ".join(conn.scopes),
                    key=connection_key(server, conn),  # RFC 9449 §5: the grant's key
                )
            except TetherError as exc:
                return await self._refresh_failed(server, conn, used, exc)
            now = self._ctx.clock.now()
            tokens = merge_refreshed(tokens, current_refresh_token=conn.refresh_token)
            fields = _token_fields(tokens)
            if not tokens.scopes:  # design-notes R3.3: keep the old granted scopes
                fields["scopes"] = conn.scopes
            # DUR-1: sealed in the journal first, so a kill before the commit (or a
            # store that stays unwritable) loses nothing the AS issued
            record = self.recovery.journal(
                "refresh", conn, now, fields, used_refresh_token=used
            )
            change = refreshed_change(used, now, **fields)
            try:
                stored = await self.grants.apply(
                    server.id, conn.subject, change, retry_storage=True
                )
            except StorageError as exc:
                if record is None:
                    raise
                return self._hold(server, conn, change, exc)
            self.recovery.settle(record)
        if stored.access_token != tokens.access_token:
            # a reconnect or disconnect replaced the grant meanwhile; it wins
            if stored.access_token is None or stored.status == "needs_reauth":
                raise self._auth_required(server, stored)
            return stored
        self._observe("refresh.ok")
        await self._audit_grant(server, stored, "connection.refresh")
        return stored

    def _hold(
        self,
        server: ServerRecord,
        conn: Connection,
        change: Callable[[Connection], Connection | None],
        exc: StorageError,
    ) -> Connection:
        """The store refused the new tokens after its retries: the journal path (DUR-2).

        The record stays pending in the journal; this process keeps the tokens in
        memory and uses them until a replay (the next start, or the next refresh of
        this connection) stores them.
        """
        held = change(conn)
        if held is None:  # unreachable: the change was built over ``conn``
            raise exc
        self._unstored[(server.id, conn.subject)] = held
        self._observe("refresh.journaled")
        logger.warning(
            "server '%s': the store refused the refreshed tokens (%s); they are kept "
            "in the token journal and replayed when the store accepts writes",
            server.name,
            exc.message,
        )
        return held

    async def _refresh_failed(
        self, server: ServerRecord, conn: Connection, used: str, exc: TetherError
    ) -> Connection:
        """Classify a failed refresh (issue 7 item 5) and record it; raise or adopt.

        * transient (network, timeout, HTTP 5xx or 429, ``server_error``,
          ``temporarily_unavailable``): tokens kept, back-off per connection;
        * any other OAuth error, standard or not, in any status (Slack answers with
          HTTP 200): the grant is dead - unless a peer already replaced the refused
          refresh token, whose tokens are then adopted;
        * anything else (an answer that is not a token response): tokens kept.
        """
        now = self._ctx.clock.now()
        subject = conn.subject
        if _retryable(exc):
            self._observe("refresh.transient")
            retry_at = self.grants.backoff(conn, _retry_after(exc))
            change = event_change(
                "unreachable", now, retry_at=retry_at, **failure_fields(exc, now)
            )
            await self.grants.apply(server.id, subject, change, retry_storage=True)
            await self._audit_grant(server, conn, "connection.refresh_failed", exc)
            raise exc
        if not isinstance(exc, OAuthError):
            self._observe("refresh.error")
            await self._mark_failed(server, subject, "failed", exc)
            await self._audit_grant(server, conn, "connection.refresh_failed", exc)
            raise exc
        stored = await self.grants.apply(
            server.id, subject, dead_grant_change(used, exc, now), retry_storage=True
        )
        if stored.refresh_token is not None and stored.access_token is not None:
            self._observe("refresh.adopted")
            return stored  # a peer replaced the refused token: adopt its grant
        self._observe("refresh.needs_reauth")
        await self._audit_grant(server, stored, "connection.needs_reauth", exc)
        described = exc.error
        if exc.error_description:
            described += f": {exc.error_description[:200]}"
        raise self._auth_required(
            server,
            stored,
            f"the authorization server refused the refresh token of server "
            f"'{server.name}' ({described})",
        ) from exc

    def _observe(self, event: str, value: float = 1.0) -> None:
        if self.observer is not None:
            with contextlib.suppress(Exception):  # metrics never break a refresh
                self.observer(event, value)

    async def _audit_grant(
        self,
        server: ServerRecord,
        conn: Connection,
        action: str,
        error: TetherError | None = None,
    ) -> None:
        """Refreshes, their failures and ``needs_reauth`` are audit events (issue 11)."""
        after: dict[str, object] = {"status": conn.status}
        if conn.expires_at is not None:
            after["expires_at"] = conn.expires_at.isoformat()
        if error is not None:
            after["error"] = error.code
            if isinstance(error, OAuthError):
                after["oauth_error"] = error.error
        await self._ctx.auditor.record(
            action,
            actor=None,
            target_type="connection",
            target_id=f"{server.id}:{conn.subject}",
            server_id=server.id,
            after=after,
        )

    async def record_step_up(
        self,
        server: ServerRecord,
        subject: str,
        scopes: Sequence[str],
    ) -> Connection:
        """Record the scopes a 403 ``insufficient_scope`` asked for (SCP-6).

        The connection keeps its tokens and its status (other tools still work, and
        one user's call must not take a shared connection down); the next
        :meth:`start` requests the union of granted and required scopes.
        """
        now = self._ctx.clock.now()
        return await self.grants.apply(
            server.id, subject, step_up_change(tuple(scopes), now)
        )

    # ------------------------------------------------------------------ disconnect

    async def disconnect(
        self,
        server: ServerRecord,
        subject: str,
        *,
        actor: str | None,
        reason: str = "disconnect",
    ) -> list[str]:
        """Revoke (RFC 7009) and clear the grant, whatever revocation says (REV-5).

        Returns:
            One line per revocation attempt, for the audit log and the caller.
        """
        conn = await self._ctx.stores.connections.get(server.id, subject)
        if conn is None:
            return []
        outcomes = await self._revoke(server, conn)
        event: Event = "config_changed" if reason != "disconnect" else "disconnect"
        await self.grants.apply(
            server.id,
            subject,
            cleared_change(
                event,
                self._ctx.clock.now(),
                None if reason == "disconnect" else reason,
            ),
            retry_storage=True,
        )
        await self._changed(server.id, subject)
        await self._ctx.auditor.record(
            "connection.disconnect",
            actor=actor,
            target_type="connection",
            target_id=f"{server.id}:{subject}",
            server_id=server.id,
            detail="; ".join([reason, *outcomes]),
        )
        return outcomes

    async def _revoke(self, server: ServerRecord, conn: Connection) -> list[str]:
        discovery = await self._ctx.stores.discovery.get(server.id)
        if discovery is None or conn.issuer is None:
            return []
        if discovery.issuer != conn.issuer:  # PRM-9: not at the new AS's endpoint
            return ["authorization server changed: tokens cleared locally only"]
        metadata = as_metadata(discovery)
        registration = await self._ctx.stores.registrations.get(server.id, conn.issuer)
        if metadata.revocation_endpoint is None or registration is None:
            return ["no revocation endpoint: tokens cleared locally only"]
        outcomes = []
        for post in revocation_requests(
            metadata.revocation_endpoint,
            auth=auth_for(registration),
            access_token=conn.access_token,
            refresh_token=conn.refresh_token,
        ):
            hint = post.body.get("token_type_hint", "token")
            try:
                await self._revoke_one(server, post)
                outcomes.append(f"{hint} revoked")
            except TetherError as exc:  # REV-5: clear locally whatever happens
                outcomes.append(f"{hint} not revoked: {exc.message}")
        return outcomes

    async def _revoke_one(self, server: ServerRecord, post: FormPost) -> None:
        for attempt in range(2):
            response = await self._ctx.fetcher.request(
                "POST",
                post.url,
                profile=profile_of(server),
                server=server.name,
                step="revocation",
                headers=post.headers,
                form=post.body,
            )
            try:
                check_revocation_response(
                    response.status, response.body, response.content_type, url=post.url
                )
                return
            except OAuthError:
                wait = retry_after_seconds(
                    response.header("retry-after"), now=self._ctx.clock.now()
                )
                if response.status != 503 or attempt or wait is None:
                    raise
                await anyio.sleep(min(wait, 5.0))  # REV-4: MAY retry after Retry-After

    async def clear_server(self, server: ServerRecord, reason: str) -> None:
        """Revoke and clear every grant of a server.

        Also forgets discovery and dynamic registrations (design-notes R3.3 after-save
        effects, G-29, REV).
        """
        for conn in await self._ctx.stores.connections.list(server.id):
            if conn.access_token is not None or conn.refresh_token is not None:
                await self.disconnect(server, conn.subject, actor=None, reason=reason)
        await self._ctx.stores.discovery.delete(server.id)
        if server.oauth.registration != "manual":
            await self._ctx.stores.registrations.delete(server.id)
        await self._ctx.stores.tools.delete(server.id)


def _retryable(exc: TetherError) -> bool:
    """True for a transient failure.

    The network, HTTP 5xx or 429, or an RFC 6749 §5.2 / §4.1.2.1 code that says the AS
    itself is failing.
    """
    if isinstance(exc, NetworkError):
        return True
    if isinstance(exc, OAuthError) and exc.error in TRANSIENT_OAUTH:
        return True
    status = exc.details.get("status")
    return isinstance(status, int) and (status >= 500 or status == 429)


def _header_seconds(value: str | None, ctx: HubContext) -> float | None:
    try:
        return retry_after_seconds(value, now=ctx.clock.now())
    except (TypeError, ValueError, OverflowError):  # a garbled header: no hint
        return None


def _retry_after(exc: TetherError) -> float | None:
    value = exc.details.get("retry_after")
    return float(value) if isinstance(value, int | float) else None


def _secret(value: str) -> SecretStr:
    return SecretStr(value)


def _token_fields(tokens: TokenSet) -> dict[str, object]:
    return {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": tokens.token_type,
        "expires_at": tokens.expires_at,
        "scopes": tuple(tokens.scopes),
    }
