"""Grants without a browser: client credentials, enterprise, workload identity (JWT bearer).

Issue #4 item 3; requirements.md EXT-1 … EXT-6; SEP-1046 (OAuth client credentials),
SEP-990 (enterprise-managed authorization, ID-JAG).

A server whose ``oauth.grant`` is

* ``client_credentials`` gets its token from the client alone (RFC 6749 §4.4): the first
  :meth:`~tether.hub.connections.Connections.usable` (or :meth:`MachineGrants.connect`)
  runs the grant, and on expiry or a 401 it simply runs again — no refresh token is needed
  (RFC 6749 §4.4.3);
* ``enterprise`` trades a user's ID token at the enterprise IdP for an ID-JAG (RFC 8693)
  and redeems it at the MCP authorization server with the JWT bearer grant (RFC 7523
  §2.1). The ID token comes from the caller (:meth:`MachineGrants.connect` with
  ``id_token``) or from a configured credential; without a stored one, an expired grant
  is renewed with a refresh token when the AS issued one, else the user must connect
  again;
* ``jwt_bearer`` presents a JWT the workload got from its own identity provider
  (workload identity federation, SEP-1933) directly at the MCP authorization server with
  the RFC 7523 §2.1 grant. The JWT comes from the credential ``assertion_credential_id``
  (rotated by whatever refreshes the workload's token); client authentication is
  optional (``none`` is accepted, RFC 7523 §3.1). A rejected assertion is never sent
  again and no other grant is tried: the connection records the refusal and the next
  use raises :class:`~tether.errors.AuthorizationRequired` until the credential changes
  or an admin connects again.

When the AS supports it, every grant asks for DPoP-bound tokens (RFC 9449,
:mod:`tether.hub.dpop`); the connection's key is reused when the grant is run again.

The first two authenticate the client at the MCP AS with a pre-registered secret
(``client_secret_basic`` / ``client_secret_post`` per the negotiation table) or a private
key (``private_key_jwt``, RFC 7523 §2.2, assertion built by
:mod:`tether.oauth.assertions`). Scopes follow the code flow: configured, else the PRM's
``scopes_supported``, plus any step-up scopes; ``resource`` is the validated PRM resource
(RFC 8707). Protocol rules live in ``oauth/``; this module orders the steps and does the
I/O. Every error names the admin's server and the step (``discovery``,
``client_assertion``, ``token_exchange``, ``token``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio
from pydantic import SecretStr

from tether.errors import (
    AuthorizationRequired,
    ConfigurationError,
    NotFound,
    TetherError,
    UsageError,
)
from tether.hub.context import profile_of
from tether.hub.discovery import as_metadata
from tether.hub.dpop import check_token_type, grant_key, post_token
from tether.hub.grants import (
    TRANSIENT_OAUTH,
    dead_grant_change,
    event_change,
    failure_fields,
)
from tether.hub.status import Event
from tether.oauth.assertions import client_assertion, load_signing_key
from tether.oauth.authorize import select_scopes, union_scopes
from tether.oauth.challenge import BearerChallenge
from tether.oauth.client_auth import (
    ClientAuth,
    FormPost,
    choose_auth_method,
    client_auth,
)
from tether.oauth.dpop import DPoPKey
from tether.oauth.models import AuthorizationServerMetadata
from tether.oauth.token_exchange import (
    JWT_BEARER_GRANT,
    id_jag_request,
    jwt_bearer_request,
    parse_id_jag_response,
    supports_id_jag,
)
from tether.oauth.tokens import (
    TokenSet,
    client_credentials_request,
    parse_token_response,
)
from tether.store.base import (
    ClientRegistration,
    Connection,
    DiscoveryRecord,
    ServerRecord,
)

if TYPE_CHECKING:
    from tether.hub.connections import Connections

__all__ = ["MachineGrants", "is_machine_grant"]

_MAX_ERROR = 1000
_GRANT_TYPE = {
    "client_credentials": "client_credentials",
    "enterprise": JWT_BEARER_GRANT,
    "jwt_bearer": JWT_BEARER_GRANT,
}
#: OAuth errors that are not worth another try with the same assertion.
_TRANSIENT = frozenset(f"oauth.{code}" for code in TRANSIENT_OAUTH)


def is_machine_grant(server: ServerRecord) -> bool:
    """True for an OAuth server whose tokens are obtained without a browser."""
    return server.auth_mode == "oauth" and server.oauth.grant != "authorization_code"


def _name(exc: TetherError, server: ServerRecord, step: str) -> TetherError:
    """GEN-4: name the admin's server and the step; keep the URL in the details."""
    if exc.server != server.name:
        if exc.server:
            exc.details.setdefault("url", exc.server)
        exc.server = server.name
    if exc.step is None:
        exc.step = step
    return exc


class MachineGrants:
    """Obtain and renew tokens for ``client_credentials`` and ``enterprise`` servers.

    Stateless: build one per use from the :class:`~tether.hub.connections.Connections`
    it serves (it reads that object's current discoverer and context).
    """

    def __init__(self, connections: Connections) -> None:
        self._conns = connections
        self._ctx = connections._ctx

    # ------------------------------------------------------------------ entry points

    async def usable(self, server: ServerRecord, subject: str) -> Connection:
        """A connection with a live access token, obtaining one when needed."""
        conn = await self._conns.get(server, subject)
        if (
            conn.access_token is not None
            and conn.status not in ("disconnected", "needs_reauth")
            and not self._conns.needs_refresh(conn)
            and not self._conns.outdated(server, conn)
        ):
            return conn
        return await self.renew(server, subject, stale=conn)

    async def renew(
        self, server: ServerRecord, subject: str, *, stale: Connection | None = None
    ) -> Connection:
        """Run the grant again, once for all concurrent callers (RFR-5's lock).

        Args:
            server: The server.
            subject: The connection subject.
            stale: The connection the caller saw (e.g. whose token got a 401); when the
                stored one already has another token, a peer renewed and it is returned.
        """
        return await self._conns._flights.run(
            ("machine", server.id, subject),
            lambda: self._renew_flight(server, subject, stale),
        )

    async def _renew_flight(
        self, server: ServerRecord, subject: str, stale: Connection | None
    ) -> Connection:
        async with self._conns.grants.lease(server.id, subject):
            conn = await self._conns.get(server, subject)
            if (
                stale is not None
                and conn.access_token is not None
                and conn.access_token != stale.access_token
                and conn.status not in ("disconnected", "needs_reauth")
                and not self._conns.needs_refresh(conn)
            ):
                return conn  # a peer renewed while we waited for the lease
            if server.oauth.grant == "jwt_bearer":
                await self._refuse_rejected_assertion(server, conn)
            if server.oauth.grant == "enterprise":
                id_token = await self._static_id_token(server)
                if id_token is None:
                    return await self._enterprise_without_id_token(server, conn)
                return await self._obtain(server, subject, id_token=id_token)
            return await self._obtain(server, subject)

    async def connect(
        self,
        server: ServerRecord,
        subject: str,
        *,
        user: str | None = None,
        id_token: SecretStr | None = None,
        challenge: BearerChallenge | None = None,
    ) -> Connection:
        """Connect now: discover afresh and run the grant (no browser involved).

        Args:
            server: A ``client_credentials`` or ``enterprise`` server.
            subject: The connection subject.
            user: Who connects (recorded; the owner of a per-user connection).
            id_token: The user's ID token from the enterprise IdP (``enterprise``; else
                the configured static ID token is used).
            challenge: The Bearer challenge that made the app connect (PRM-3).

        Raises:
            UsageError: The server uses the browser flow, or no ID token is available.
            ConfigurationError, DiscoveryError, OAuthError, NetworkError: A step failed;
                the error names the server and the step.
        """
        if not is_machine_grant(server):
            raise UsageError(
                f"server '{server.name}' uses the browser authorization flow",
                server=server.name,
                hint="use connect() and send the user to the authorization URL",
            )
        if server.oauth.grant == "enterprise" and id_token is None:
            id_token = await self._static_id_token(server)
            if id_token is None:
                raise UsageError(
                    f"server '{server.name}' uses enterprise-managed authorization; "
                    "pass the user's ID token from the enterprise IdP",
                    server=server.name,
                    hint="call connect_enterprise(server, user=..., id_token=...), or "
                    "configure a static ID token credential",
                )
        async with self._conns.grants.lease(server.id, subject):
            try:
                await self._conns.discoverer.discover(server, challenge=challenge)
            except TetherError as exc:
                raise _name(exc, server, "discovery") from None
            return await self._obtain(
                server, subject, id_token=id_token, user=user, explicit=True
            )

    # ------------------------------------------------------------------ the grant

    async def _obtain(
        self,
        server: ServerRecord,
        subject: str,
        *,
        id_token: SecretStr | None = None,
        user: str | None = None,
        explicit: bool = False,
    ) -> Connection:
        step = "discovery"
        try:
            discovery = await self._conns.discoverer.stored_or_fresh(server)
            metadata = as_metadata(discovery)
            step = "client_authentication"
            self._check_grant_supported(server, metadata)
            current = await self._conns.get(server, subject)
            scopes = union_scopes(
                select_scopes(
                    configured=server.oauth.scopes,
                    prm_scopes_supported=discovery.scopes_supported,
                ),
                current.required_scopes,
            )
            secret = await self._credential(
                server, server.oauth.client_secret_credential_id, "client secret"
            )
            auth, method = await self._client_auth(server, metadata, secret)
            step = "dpop"
            key = grant_key(server, discovery, current)
            step = "token"
            if server.oauth.grant == "jwt_bearer":
                post = jwt_bearer_request(
                    metadata.token_endpoint or "",
                    assertion=await self._workload_jwt(server),
                    scopes=scopes,
                    auth=auth,
                    resource=discovery.resource,  # RFC 8707: no ID-JAG names it here
                    custom_params=server.oauth.token_params,
                )
            elif server.oauth.grant == "enterprise":
                step = "token_exchange"
                assertion = await self._id_jag(
                    server, discovery, metadata, scopes, id_token
                )
                step = "token"
                post = jwt_bearer_request(
                    metadata.token_endpoint or "",
                    assertion=assertion,
                    scopes=scopes,
                    auth=auth,
                    custom_params=server.oauth.token_params,
                )
            else:
                post = client_credentials_request(
                    metadata.token_endpoint or "",
                    resource=discovery.resource,
                    scopes=scopes,
                    auth=auth,
                    custom_params=server.oauth.token_params,
                )
        except TetherError as exc:
            _name(exc, server, step)
            await self._mark_failed(server, subject, exc)
            raise
        # the AS issues tokens when it answers: from the request to the commit
        # nothing may cancel us (issue 7 item 3)
        with anyio.CancelScope(shield=True):
            try:
                tokens = await self._post_token(server, post, scopes, key)
                dpop_key = check_token_type(server, tokens, key)
            except TetherError as exc:
                _name(exc, server, step)
                await self._mark_failed(server, subject, exc)
                raise
            conn = await self._store(
                server,
                subject,
                discovery,
                tokens,
                user=user,
                explicit=explicit,
                dpop_key=dpop_key,
                client=(metadata, method, secret),
            )
        return conn

    def _check_grant_supported(
        self, server: ServerRecord, metadata: AuthorizationServerMetadata
    ) -> None:
        grant_type = _GRANT_TYPE[server.oauth.grant]
        listed = metadata.grant_types_supported
        if listed is not None and grant_type not in listed:
            raise ConfigurationError(
                f"the authorization server {metadata.issuer} does not list the "
                f"{grant_type} grant in grant_types_supported ({', '.join(listed)})",
                server=server.name,
                step="discovery",
                hint="check the server's grant setting, or ask the AS operator to "
                "enable the grant for this client",
                details={"issuer": metadata.issuer, "grant_types": list(listed)},
            )

    async def _client_auth(
        self,
        server: ServerRecord,
        metadata: AuthorizationServerMetadata,
        secret: SecretStr | None,
    ) -> tuple[ClientAuth, str]:
        """Client authentication at the MCP AS: a private key first, else the secret."""
        oauth = server.oauth
        client_id = oauth.client_id or ""
        supported = metadata.token_endpoint_auth_methods_supported
        use_key = oauth.private_key_credential_id is not None and (
            oauth.token_auth_method in (None, "private_key_jwt")
        )
        if use_key and (
            oauth.token_auth_method == "private_key_jwt"  # noqa: S105 - a method name
            or secret is None
            or not supported
            or "private_key_jwt" in supported
        ):
            if supported and "private_key_jwt" not in supported:
                raise ConfigurationError(
                    f"the authorization server {metadata.issuer} does not accept "
                    f"private_key_jwt (it lists {', '.join(supported)})",
                    server=server.name,
                    step="client_authentication",
                    hint="configure a client secret instead of a private key",
                )
            return await self._assertion(server, metadata, client_id), "private_key_jwt"
        method = choose_auth_method(
            supported=supported,
            has_secret=secret is not None,
            issuer=metadata.issuer,
            override=oauth.token_auth_method,
        )
        if method == "none" and oauth.grant == "jwt_bearer":
            # RFC 7523 §3.1: the assertion is the grant; the client may stay anonymous
            body = {"client_id": client_id} if client_id else {}
            return ClientAuth(method="none", body=body), "none"
        if method == "none":
            raise ConfigurationError(
                f"the {oauth.grant} grant needs client authentication, and the "
                f"authorization server {metadata.issuer} negotiated 'none'",
                server=server.name,
                step="client_authentication",
                hint="configure the client secret or a private key",
            )
        return client_auth(method, client_id=client_id, client_secret=secret), method

    async def _assertion(
        self,
        server: ServerRecord,
        metadata: AuthorizationServerMetadata,
        client_id: str,
    ) -> ClientAuth:
        pem = await self._credential(
            server, server.oauth.private_key_credential_id, "private key"
        )
        if pem is None:  # pragma: no cover - validation requires the reference
            raise ConfigurationError(
                "private_key_jwt needs a private key credential", server=server.name
            )
        key = load_signing_key(
            pem.get_secret_value(),
            algorithm=server.oauth.signing_algorithm,
            where=server.name,
        )
        algs = metadata.token_endpoint_auth_signing_alg_values_supported
        if algs and key.algorithm not in algs:
            raise ConfigurationError(
                f"the authorization server {metadata.issuer} accepts client assertions "
                f"signed with {', '.join(algs)}, not {key.algorithm}",
                server=server.name,
                step="client_assertion",
                hint="use a key (or signing algorithm) the AS accepts",
            )
        return client_assertion(
            key,
            client_id=client_id,
            audience=metadata.issuer,  # RFC 7523 §3 item 3: the AS's issuer
            now=self._ctx.clock.now(),
            jti=self._ctx.random.token(16),
        )

    async def _id_jag(
        self,
        server: ServerRecord,
        discovery: DiscoveryRecord,
        metadata: AuthorizationServerMetadata,
        scopes: Sequence[str],
        id_token: SecretStr | None,
    ) -> SecretStr:
        """RFC 8693 at the IdP: the user's ID token for an ID-JAG (EXT-4 step 2)."""
        oauth = server.oauth
        if id_token is None:  # pragma: no cover - callers resolve it first
            raise UsageError("no ID token", server=server.name)
        idp_secret = await self._credential(
            server, oauth.idp_client_secret_credential_id, "IdP client secret"
        )
        post = id_jag_request(
            oauth.idp_token_endpoint or "",
            id_token=id_token,
            audience=metadata.issuer,
            resource=discovery.resource,
            scopes=scopes,
            auth=client_auth(
                "client_secret_basic" if idp_secret is not None else "none",
                client_id=oauth.idp_client_id or "",
                client_secret=idp_secret,
            ),
        )
        response = await self._ctx.fetcher.request(
            "POST",
            post.url,
            profile=profile_of(server),
            server=server.name,
            step="token_exchange",
            headers=post.headers,
            form=post.body,
        )
        grant = parse_id_jag_response(
            response.status, response.body, response.content_type, url=post.url
        )
        await self._ctx.auditor.record(
            "connection.token_exchange",
            actor=None,
            target_type="server",
            target_id=server.id,
            server_id=server.id,
            after={  # never the ID-JAG itself (EXT-6)
                "idp_token_endpoint": post.url,
                "audience": metadata.issuer,
                "resource": discovery.resource,
                "as_advertises_id_jag": supports_id_jag(
                    metadata.authorization_grant_profiles_supported
                ),
            },
        )
        return grant.assertion

    async def _post_token(
        self,
        server: ServerRecord,
        post: FormPost,
        scopes: Sequence[str],
        key: DPoPKey | None = None,
    ) -> TokenSet:
        response = await post_token(self._ctx, server, post, key)
        return parse_token_response(
            response.status,
            response.body,
            response.content_type,
            now=self._ctx.clock.now(),
            url=post.url,
            requested_scopes=scopes,
            dpop=key is not None,
        )

    async def _workload_jwt(self, server: ServerRecord) -> SecretStr:
        """The workload's JWT for the ``jwt_bearer`` grant (SEP-1933)."""
        jwt = await self._credential(
            server, server.oauth.assertion_credential_id, "workload JWT"
        )
        if jwt is None or not jwt.get_secret_value().strip():
            raise ConfigurationError(
                f"server '{server.name}' uses the jwt_bearer grant but has no workload "
                "JWT",
                server=server.name,
                step="token",
                hint="store the JWT from the workload's identity provider in a "
                "credential and set it as the server's assertion credential",
            )
        return SecretStr(jwt.get_secret_value().strip())

    async def _refuse_rejected_assertion(
        self, server: ServerRecord, conn: Connection
    ) -> None:
        """Never resend an assertion the AS refused (SEP-1933: no retry, no fallback).

        The grant runs again only once the credential changed after the refusal (a
        rotated workload JWT) or through an explicit :meth:`connect`.
        """
        code = conn.last_error_code
        if (
            conn.status not in ("error", "needs_reauth")
            or code is None
            or not code.startswith("oauth.")
            or code in _TRANSIENT
        ):
            return
        ref = server.oauth.assertion_credential_id
        credential = await self._ctx.stores.credentials.get(ref) if ref else None
        if (
            credential is not None
            and credential.updated_at is not None
            and conn.last_error_at is not None
            and credential.updated_at > conn.last_error_at
        ):
            return
        raise AuthorizationRequired(
            f"the authorization server refused the workload JWT of server "
            f"'{server.name}' ({code}); it is not sent again",
            server=server.name,
            step="token",
            hint="update the workload JWT credential, or connect the server again",
            details={"issuer": conn.issuer, "status": conn.status, "error": code},
        )

    async def _enterprise_without_id_token(
        self, server: ServerRecord, conn: Connection
    ) -> Connection:
        """Renew an enterprise grant without an ID token: refresh if possible."""
        if conn.refresh_token is not None and conn.status != "disconnected":
            try:
                return await self._conns._refresh_exchange(server, conn)
            except AuthorizationRequired:
                pass  # the grant is dead (recorded); a new ID token is needed
        raise AuthorizationRequired(
            f"server '{server.name}' needs a fresh ID token from the enterprise IdP "
            "to connect again",
            server=server.name,
            step="token_exchange",
            hint="sign the user in at the IdP and call connect_enterprise with the "
            "new ID token",
            details={"issuer": conn.issuer, "status": conn.status},
        )

    # ------------------------------------------------------------------ storage

    async def _credential(
        self, server: ServerRecord, ref: str | None, what: str
    ) -> SecretStr | None:
        if not ref:
            return None
        credential = await self._ctx.stores.credentials.get(ref)
        if credential is None:
            raise NotFound(
                f"the {what} credential of server '{server.name}' is gone",
                server=server.name,
                step="client_authentication",
                hint="edit the server and choose an existing credential",
            )
        return credential.value

    async def _static_id_token(self, server: ServerRecord) -> SecretStr | None:
        return await self._credential(
            server, server.oauth.idp_id_token_credential_id, "ID token"
        )

    async def _remember_client(
        self,
        server: ServerRecord,
        metadata: AuthorizationServerMetadata,
        method: str,
        secret: SecretStr | None,
    ) -> None:
        """Store the pre-registered client so refresh and revocation find it."""
        existing = await self._ctx.stores.registrations.get(server.id, metadata.issuer)
        registration = ClientRegistration(
            server_id=server.id,
            issuer=metadata.issuer,
            client_id=server.oauth.client_id or "",
            source="pre_registered",
            auth_method=method,  # type: ignore[arg-type]
            client_secret=secret,
            redirect_uri=self._ctx.config.redirect_uri,
            created_at=existing.created_at if existing else self._ctx.clock.now(),
        )
        if existing != registration:
            await self._ctx.stores.registrations.put(registration)

    async def _store(
        self,
        server: ServerRecord,
        subject: str,
        discovery: DiscoveryRecord,
        tokens: TokenSet,
        *,
        user: str | None,
        explicit: bool,
        dpop_key: SecretStr | None = None,
        client: tuple[AuthorizationServerMetadata, str, SecretStr | None],
    ) -> Connection:
        now = self._ctx.clock.now()
        events: list[Event] = []

        def change(current: Connection) -> Connection | None:
            changes: dict[str, object] = {
                "access_token": tokens.access_token,
                "refresh_token": tokens.refresh_token,
                "token_type": tokens.token_type,
                "dpop_key": dpop_key,
                "expires_at": tokens.expires_at,
                "scopes": tuple(tokens.scopes),
                "required_scopes": (),
                "issuer": discovery.issuer,
                "client_id": server.oauth.client_id,
                "resource": discovery.resource,
                "refreshed_at": now,
                "retry_at": None,
                "grant_epoch": server.grant_epoch,
                "last_error_code": None,
                "last_error": None,
                "last_error_at": None,
            }
            if current.access_token is None or user is not None:
                changes.update(connected_by=user, connected_at=now)
            event: Event = "authorized" if current.access_token is None else "refreshed"
            if current.status in ("disconnected", "needs_reauth", "error"):
                event = "authorized"
            events[:] = [event]
            return event_change(event, now, **changes)(current)

        conn = await self._conns.grants.apply(
            server.id, subject, change, retry_storage=True
        )
        await self._remember_client(server, *client)
        if explicit:
            # An explicit connect starts afresh. A grant run inside a request (first
            # use, expiry, a 401) must not close the MCP session that is waiting
            # for the token; its auth flow simply reads the new one.
            await self._conns._changed(server.id, subject)
        authorized = events == ["authorized"]
        await self._ctx.auditor.record(
            "connection.connect" if authorized else "connection.renew",
            actor=user,
            target_type="connection",
            target_id=f"{server.id}:{subject}",
            server_id=server.id,
            after={
                "grant": server.oauth.grant,
                "status": conn.status,
                "scopes": list(conn.scopes),
                "expires_at": conn.expires_at.isoformat() if conn.expires_at else None,
            },
        )
        return conn

    async def _mark_failed(
        self,
        server: ServerRecord,
        subject: str,
        error: TetherError,
        event: Event = "failed",
    ) -> None:
        """Record the failure; tokens are kept unless the grant itself was refused."""
        now = self._ctx.clock.now()
        if event == "invalid_grant":
            change = dead_grant_change(None, error, now)
        else:
            change = event_change(event, now, **failure_fields(error, now))
        await self._conns.grants.apply(server.id, subject, change, retry_storage=True)
