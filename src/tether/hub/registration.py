"""Getting a client id at an authorization server (RFC 7591; CIMD; manual; REG-*).

Which path to take is decided by :func:`tether.oauth.registration.choose_registration`
(manual, client ID metadata document, dynamic); this module performs it and stores the
result keyed by ``(server_id, issuer)``, so a new issuer means a new registration
(design-notes D1, REG-9) and a registration is never reused at another AS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pydantic import SecretStr

from tether.errors import (
    AuthorizationRequired,
    ConfigurationError,
    NotFound,
    TetherError,
)
from tether.hub.context import HubContext, profile_of
from tether.net.fetch import HttpResponse
from tether.oauth.authorize import union_scopes
from tether.oauth.client_auth import ClientAuth, choose_auth_method, client_auth
from tether.oauth.models import AuthorizationServerMetadata
from tether.oauth.registration import (
    choose_registration,
    parse_registration_response,
    registration_request,
)
from tether.store.base import ClientRegistration, ServerRecord

__all__ = ["Registrar"]

_SCOPE = "scope"  # ClientRegistration.metadata: the scope registered ("" = no limit)


class Registrar:
    """Ensures a usable client registration for a server at its current issuer."""

    def __init__(self, ctx: HubContext) -> None:
        self._ctx = ctx

    async def _manual_secret(self, server: ServerRecord) -> SecretStr | None:
        ref = server.oauth.client_secret_credential_id
        if not ref:
            return None
        credential = await self._ctx.stores.credentials.get(ref)
        if credential is None:
            raise NotFound(
                f"the client secret credential of server '{server.name}' is gone",
                server=server.name,
                hint="edit the server and choose an existing credential",
            )
        return credential.value

    async def ensure(
        self,
        server: ServerRecord,
        metadata: AuthorizationServerMetadata,
        *,
        scopes: Sequence[str] = (),
    ) -> ClientRegistration:
        """Return the registration to use, registering dynamically when needed.

        A dynamic registration is made for the admin's configured scopes plus
        ``scopes`` (the ones about to be requested, and the resource's
        ``scopes_supported``), or without a scope restriction when none are
        configured. When a later request (a step-up) needs scopes outside what a
        dynamic registration covers, the registration is widened: updated in place
        (RFC 7592 §2.2) when the AS gave a management URL and token, else made afresh.

        Raises:
            ConfigurationError: No registration path works (the hint names the redirect
                URI to register manually), or only unsupported auth methods exist.
            OAuthError: The registration endpoint refused (RFC 7591 §3.2.2).
        """
        cfg = self._ctx.config
        path = choose_registration(
            server.oauth.registration,
            metadata=metadata,
            has_manual_client=server.oauth.client_id is not None,
            client_metadata_url=cfg.client_metadata_url,
            redirect_uri=cfg.redirect_uri,
        )
        issuer = metadata.issuer
        now = self._ctx.clock.now()
        if path == "manual":
            secret = await self._manual_secret(server)
            method = choose_auth_method(
                supported=metadata.token_endpoint_auth_methods_supported,
                has_secret=secret is not None,
                issuer=issuer,
                override=server.oauth.token_auth_method,
            )
            registration = ClientRegistration(
                server_id=server.id,
                issuer=issuer,
                client_id=server.oauth.client_id or "",
                source="manual",
                auth_method=method,
                client_secret=secret,
                redirect_uri=cfg.redirect_uri,
                created_at=now,
            )
            await self._ctx.stores.registrations.put(registration)
            return registration
        # one registration at a time per server and issuer (issue 7 item 8)
        async with self._ctx.stores.locks.lock(f"register:{server.id}:{issuer}"):
            return await self._ensure_held(server, metadata, path, scopes)

    async def _ensure_held(
        self,
        server: ServerRecord,
        metadata: AuthorizationServerMetadata,
        path: str,
        scopes: Sequence[str],
    ) -> ClientRegistration:
        cfg = self._ctx.config
        issuer = metadata.issuer
        existing = await self._ctx.stores.registrations.get(server.id, issuer)
        if existing is not None and self._reusable(existing, path):
            missing = self._uncovered(server, existing, scopes)
            if not missing:
                return existing
            registration = await self._widen(server, metadata, existing, scopes)
            return await self._keep(registration, existing)
        if path == "metadata_document":
            registration = ClientRegistration(
                server_id=server.id,
                issuer=issuer,
                client_id=cfg.client_metadata_url or "",
                source="metadata_document",
                auth_method="none",
                redirect_uri=cfg.redirect_uri,
                created_at=self._ctx.clock.now(),
            )
        else:
            registration = await self._register(server, metadata, scopes)
        return await self._keep(registration, existing)

    async def _keep(
        self, registration: ClientRegistration, live: ClientRegistration | None
    ) -> ClientRegistration:
        """Store a registration without touching a live grant's client (issue 7 item 10).

        The same client (an RFC 7592 update), or the first one at this issuer, is
        stored as the live registration. A new client beside a live one is staged
        under its own key: only the connect that made it uses it, and it replaces the
        live one when that connect completes (:meth:`promote`).
        """
        if live is None or live.client_id == registration.client_id:
            await self._ctx.stores.registrations.put(registration)
            return registration
        staged = replace(
            registration, issuer=_client_key(live.issuer, registration.client_id)
        )
        await self._ctx.stores.registrations.put(staged)
        return replace(staged, issuer=live.issuer)

    async def for_grant(
        self, server: ServerRecord, issuer: str, client_id: str | None
    ) -> ClientRegistration:
        """The registration of the client that holds a grant (or a started connect).

        Raises:
            AuthorizationRequired: That client is gone; connect again.
        """
        store = self._ctx.stores.registrations
        live = await store.get(server.id, issuer)
        if live is not None and client_id in (None, live.client_id):
            return live
        if client_id is not None:
            kept = await store.get(server.id, _client_key(issuer, client_id))
            if kept is not None:
                return replace(kept, issuer=issuer)
        raise AuthorizationRequired(
            f"the OAuth client of server '{server.name}' at {issuer} is no longer "
            "registered",
            server=server.name,
            step="registration",
            hint="connect the server again (a new client is registered)",
        )

    async def promote(
        self, server: ServerRecord, registration: ClientRegistration
    ) -> None:
        """Make a completed connect's client the live one.

        The previous live client is kept under its own key for the grants that still
        use it (their refreshes must present the client that holds them).
        """
        store = self._ctx.stores.registrations
        issuer = registration.issuer
        async with self._ctx.stores.locks.lock(f"register:{server.id}:{issuer}"):
            live = await store.get(server.id, issuer)
            if live is None or live.client_id == registration.client_id:
                return
            await store.put(replace(live, issuer=_client_key(issuer, live.client_id)))
            await store.put(registration)
            await store.delete(server.id, _client_key(issuer, registration.client_id))

    @staticmethod
    def _registered_scopes(
        server: ServerRecord, registration: ClientRegistration
    ) -> tuple[str, ...] | None:
        """The scopes a dynamic client was registered for; ``None`` for no limit."""
        if _SCOPE not in registration.metadata:  # registered before this was kept
            return tuple((server.oauth.scopes or "").split()) or None
        return tuple(str(registration.metadata[_SCOPE] or "").split()) or None

    def _uncovered(
        self,
        server: ServerRecord,
        registration: ClientRegistration,
        scopes: Sequence[str],
    ) -> tuple[str, ...]:
        if registration.source != "dynamic":
            return ()
        registered = self._registered_scopes(server, registration)
        if registered is None:
            return ()
        return tuple(s for s in scopes if s not in registered)

    def _scopes_for(self, server: ServerRecord, scopes: Sequence[str]) -> list[str]:
        """What to register for: nothing (no limit) unless the admin set scopes."""
        configured = (server.oauth.scopes or "").split()
        return list(union_scopes(configured, scopes)) if configured else []

    async def _widen(
        self,
        server: ServerRecord,
        metadata: AuthorizationServerMetadata,
        existing: ClientRegistration,
        scopes: Sequence[str],
    ) -> ClientRegistration:
        """Re-register a dynamic client for more scopes (step-up, SCP-6)."""
        registered = self._registered_scopes(server, existing) or ()
        wanted = union_scopes(registered, scopes)
        if existing.registration_client_uri and existing.registration_access_token:
            try:
                return await self._update(server, metadata, existing, wanted)
            except TetherError:
                pass  # the AS refused the update: a new registration still works
        return await self._register(server, metadata, wanted)

    def _reusable(self, existing: ClientRegistration, path: str) -> bool:
        cfg = self._ctx.config
        if existing.source != path or existing.redirect_uri != cfg.redirect_uri:
            return False
        if path == "metadata_document":
            return existing.client_id == cfg.client_metadata_url
        expires = existing.client_secret_expires_at
        return expires is None or expires > self._ctx.clock.now()

    async def _register(
        self,
        server: ServerRecord,
        metadata: AuthorizationServerMetadata,
        scopes: Sequence[str],
    ) -> ClientRegistration:
        cfg = self._ctx.config
        endpoint = metadata.registration_endpoint or ""
        body = registration_request(
            metadata,
            client_name=cfg.client_name,
            redirect_uris=[cfg.redirect_uri],
            scopes=self._scopes_for(server, scopes),
        )
        response = await self._ctx.fetcher.request(
            "POST",
            endpoint,
            profile=profile_of(server),
            server=server.name,
            step="registration",
            json_body=body,
        )
        return self._registered(server, metadata, endpoint, body, response)

    async def _update(
        self,
        server: ServerRecord,
        metadata: AuthorizationServerMetadata,
        existing: ClientRegistration,
        scopes: Sequence[str],
    ) -> ClientRegistration:
        """RFC 7592 §2.2: PUT the full metadata, with the client id (and secret)."""
        cfg = self._ctx.config
        endpoint = existing.registration_client_uri or ""
        token = existing.registration_access_token
        body = registration_request(
            metadata,
            client_name=cfg.client_name,
            redirect_uris=[cfg.redirect_uri],
            scopes=self._scopes_for(server, scopes),
        )
        body["client_id"] = existing.client_id
        body["token_endpoint_auth_method"] = existing.auth_method
        if existing.client_secret is not None:
            body["client_secret"] = existing.client_secret.get_secret_value()
        response = await self._ctx.fetcher.request(
            "PUT",
            endpoint,
            profile=profile_of(server),
            server=server.name,
            step="registration",
            headers={
                "Authorization": f"Bearer {token.get_secret_value() if token else ''}"
            },
            json_body=body,
        )
        updated = self._registered(server, metadata, endpoint, body, response)
        return replace(
            updated,
            # RFC 7592 §2.2: the AS may omit what did not change
            client_secret=updated.client_secret or existing.client_secret,
            registration_access_token=updated.registration_access_token or token,
            registration_client_uri=updated.registration_client_uri or endpoint,
        )

    def _registered(
        self,
        server: ServerRecord,
        metadata: AuthorizationServerMetadata,
        endpoint: str,
        body: dict[str, Any],
        response: HttpResponse,
    ) -> ClientRegistration:
        cfg = self._ctx.config
        client = parse_registration_response(
            response.status,
            response.body,
            response.content_type,
            url=endpoint,
            redirect_uri=cfg.redirect_uri,
            requested_auth_method=body["token_endpoint_auth_method"],
            supported_auth_methods=metadata.token_endpoint_auth_methods_supported or (),
        )
        method = client.token_endpoint_auth_method
        override = server.oauth.token_auth_method
        if override is not None and override != "private_key_jwt":
            # the admin's override wins for every registration kind (issue 7 item 7)
            if override != "none" and client.client_secret is None:
                raise ConfigurationError(
                    f"server '{server.name}' forces {override}, but the registration "
                    "at its authorization server issued no client secret",
                    server=server.name,
                    step="registration",
                    hint="clear the token auth method override, or use a manual client",
                )
            method = override
        return ClientRegistration(
            server_id=server.id,
            issuer=metadata.issuer,
            client_id=client.client_id,
            source="dynamic",
            auth_method=method,
            client_secret=client.client_secret,
            redirect_uri=cfg.redirect_uri,
            client_secret_expires_at=client.client_secret_expires_at,
            registration_access_token=client.registration_access_token,
            registration_client_uri=client.registration_client_uri,
            metadata={_SCOPE: body.get("scope", "")},
            created_at=self._ctx.clock.now(),
        )

    async def current(self, server: ServerRecord, issuer: str) -> ClientRegistration:
        """The stored registration at ``issuer``.

        Raises:
            AuthorizationRequired-like NotFound: none is stored; connect again.
        """
        registration = await self._ctx.stores.registrations.get(server.id, issuer)
        if registration is None:
            raise NotFound(
                f"no client registration for server '{server.name}' at {issuer}",
                server=server.name,
                hint="connect the server again",
            )
        return registration


def _client_key(issuer: str, client_id: str) -> str:
    """Where a client other than the live one is kept (same issuer, same table)."""
    return f"{issuer}#client:{client_id}"


def auth_for(registration: ClientRegistration) -> ClientAuth:
    """Client authentication for the token and revocation endpoints (TOK-3, REV-2)."""
    method = registration.auth_method
    if method == "private_key_jwt":  # not negotiated by the authorization-code flow
        method = "none"
    return client_auth(
        method,
        client_id=registration.client_id,
        client_secret=registration.client_secret,
    )
