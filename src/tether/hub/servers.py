"""Server registry use cases (design-notes R2.1, R3.3; D1).

Validation follows the reference: a unique name of at most 100 characters, a description of
at most 1000, a URL of at most 1000 that must be public HTTPS (or reachable through the
server's or the installation's allowlist), a timeout of 1–300 seconds, credential
references that exist, and params that are JSON objects. Tether adds: params may not
override the security-critical OAuth parameters (checked again when a URL is built), and a
change to any re-authorization trigger clears the old grant (gap G-29).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tether.errors import ConfigurationError, NotFound, ValidationFailed
from tether.hub.audit import Auditor, server_view
from tether.hub.clock import Clock
from tether.net.policy import parse_allow_entry
from tether.store.base import (
    AuthMode,
    GrantType,
    OAuthSettings,
    RegistrationMode,
    ServerRecord,
    Stores,
    TokenAuthMethod,
)

__all__ = [
    "REAUTH_TRIGGERS",
    "OAuthSpec",
    "ServerService",
    "ServerSpec",
    "UrlCheck",
    "grant_problems",
]

UrlCheck = Callable[[str, Sequence[str]], Awaitable[None]]
"""Checks a server URL against the network policy; raises ``BlockedDestination``."""

#: Fields whose change invalidates every grant of the server (design-notes R3.3 + G-29).
REAUTH_TRIGGERS: Final = (
    "url",
    "auth_mode",
    "oauth.registration",
    "oauth.client_id",
    "oauth.client_secret_credential_id",
    "oauth.token_auth_method",
    "oauth.scopes",
    "oauth.authorization_params",
    "oauth.token_params",
    "oauth.authorization_server",
    "oauth.per_user",
    "oauth.resource_match",
    "oauth.resource_expected",
    "oauth.legacy_endpoints",
    "oauth.grant",
    "oauth.private_key_credential_id",
    "oauth.signing_algorithm",
    "oauth.idp_token_endpoint",
    "oauth.idp_client_id",
    "oauth.idp_client_secret_credential_id",
    "oauth.idp_id_token_credential_id",
    "oauth.assertion_credential_id",
    "oauth.dpop",
)

#: Authorization and token parameters that custom params may never set or remove.
PROTECTED_PARAMS: Final = frozenset(
    {
        "state",
        "code_challenge",
        "code_challenge_method",
        "redirect_uri",
        "client_id",
        "response_type",
        "grant_type",
        "code",
        "code_verifier",
        "refresh_token",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
    }
)


class OAuthSpec(BaseModel):
    """An admin's OAuth settings for one server, as submitted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registration: RegistrationMode = "auto"
    client_id: str | None = Field(default=None, max_length=1000)
    client_secret_credential_id: str | None = None
    token_auth_method: TokenAuthMethod | None = None
    scopes: str | None = Field(default=None, max_length=2000)
    authorization_params: dict[str, str | None] = Field(default_factory=dict)
    token_params: dict[str, str | None] = Field(default_factory=dict)
    require_refresh_token: bool = False
    allow_missing_pkce_metadata: bool = False
    authorization_server: str | None = Field(default=None, max_length=1000)
    per_user: bool = False
    resource_match: Literal["exact", "prefix"] = "exact"
    resource_expected: str | None = Field(default=None, max_length=1000)
    legacy_endpoints: bool = False
    grant: GrantType = "authorization_code"
    private_key_credential_id: str | None = None
    signing_algorithm: Literal["ES256", "ES384", "RS256", "PS256"] | None = None
    idp_token_endpoint: str | None = Field(default=None, max_length=1000)
    idp_client_id: str | None = Field(default=None, max_length=1000)
    idp_client_secret_credential_id: str | None = None
    idp_id_token_credential_id: str | None = None
    assertion_credential_id: str | None = None
    dpop: Literal["auto", "always", "never"] = "never"

    @field_validator("authorization_params", "token_params", mode="before")
    @classmethod
    def _object_of_strings(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError("must be a JSON object mapping names to strings or null")
        out: dict[str, str | None] = {}
        for key, item in value.items():
            if item is not None and not isinstance(item, str | int | float | bool):
                raise ValueError(f"value of '{key}' must be a string or null")
            if isinstance(item, bool):  # JSON spelling, not Python's "True"
                item = "true" if item else "false"
            out[str(key)] = None if item is None else str(item)
        return out

    @field_validator("authorization_params", "token_params")
    @classmethod
    def _no_protected(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        bad = sorted(k for k in value if k in PROTECTED_PARAMS)
        if bad:
            raise ValueError(
                f"may not set or remove {', '.join(bad)}: Tether controls these "
                "parameters for security (PKCE, state, client authentication)"
            )
        return value

    @field_validator(
        "client_id",
        "scopes",
        "authorization_server",
        "resource_expected",
        "idp_token_endpoint",
        "idp_client_id",
    )
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        return value or None


class ServerSpec(BaseModel):
    """A server as an admin submits it (create, or the full state after an update)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    url: str = Field(min_length=1, max_length=1000)
    description: str = Field(default="", max_length=1000)
    enabled: bool = True
    timeout_seconds: int = Field(default=30, ge=1, le=300)
    auth_mode: AuthMode = "none"
    header_name: str | None = Field(default=None, max_length=100)
    header_scheme: str | None = Field(default=None, max_length=100)
    credential_id: str | None = None
    oauth: OAuthSpec = Field(default_factory=OAuthSpec)
    allow_networks: tuple[str, ...] = ()
    ca_bundle: str | None = None

    @field_validator("name", "url")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    def normalised(self) -> ServerSpec:
        """Apply the reference's save-time defaults (design-notes R3.3)."""
        changes: dict[str, Any] = {}
        if self.auth_mode == "header":
            changes["header_name"] = self.header_name or "Authorization"
            if self.header_scheme is None:
                changes["header_scheme"] = "Bearer"
        else:
            changes.update(header_name=None, header_scheme=None, credential_id=None)
        return self.model_copy(update=changes)

    @classmethod
    def from_record(cls, server: ServerRecord) -> ServerSpec:
        """The spec that produced a stored record."""
        o = server.oauth
        return cls(
            name=server.name,
            url=server.url,
            description=server.description,
            enabled=server.enabled,
            timeout_seconds=int(server.timeout_seconds),
            auth_mode=server.auth_mode,
            header_name=server.header_name,
            header_scheme=server.header_scheme,
            credential_id=server.credential_id,
            oauth=OAuthSpec(**_oauth_fields(o)),
            allow_networks=server.allow_networks,
            ca_bundle=server.ca_bundle,
        )


def _oauth_fields(oauth: OAuthSpec | OAuthSettings) -> dict[str, Any]:
    """The OAuth settings as keyword arguments; both types share their field names."""
    values = {name: getattr(oauth, name) for name in OAuthSpec.model_fields}
    for name in ("authorization_params", "token_params"):
        values[name] = dict(values[name])
    return values


def parse_spec(data: Mapping[str, Any]) -> ServerSpec:
    """Validate raw input into a :class:`ServerSpec`.

    Raises:
        ValidationFailed: with one message per offending field.
    """
    try:
        return ServerSpec.model_validate(dict(data)).normalised()
    except ValidationError as exc:
        fields = {
            ".".join(str(p) for p in err["loc"]) or "server": err["msg"]
            for err in exc.errors()
        }
        raise ValidationFailed(
            "the server settings are invalid: "
            + "; ".join(f"{k}: {v}" for k, v in fields.items()),
            fields=fields,
            hint="correct the named fields and save again",
        ) from None


def _record_from_spec(spec: ServerSpec, base: ServerRecord) -> ServerRecord:
    o = spec.oauth
    return base.replace(
        name=spec.name,
        url=spec.url,
        description=spec.description,
        enabled=spec.enabled,
        timeout_seconds=float(spec.timeout_seconds),
        auth_mode=spec.auth_mode,
        header_name=spec.header_name,
        header_scheme=spec.header_scheme,
        credential_id=spec.credential_id,
        oauth=OAuthSettings(**_oauth_fields(o)),
        allow_networks=tuple(spec.allow_networks),
        ca_bundle=spec.ca_bundle,
    )


def changed_triggers(before: ServerRecord, after: ServerRecord) -> list[str]:
    """Names of the re-authorization trigger fields that differ."""
    changed = []
    for name in REAUTH_TRIGGERS:
        owner_before: Any = before.oauth if name.startswith("oauth.") else before
        owner_after: Any = after.oauth if name.startswith("oauth.") else after
        key = name.removeprefix("oauth.")
        if getattr(owner_before, key) != getattr(owner_after, key):
            changed.append(name)
    return changed


#: Credential references of the machine and enterprise grants.
_GRANT_CREDENTIALS: Final = (
    "private_key_credential_id",
    "idp_client_secret_credential_id",
    "idp_id_token_credential_id",
    "assertion_credential_id",
)


def grant_problems(oauth: OAuthSpec) -> dict[str, str]:
    """Settings a non-browser grant needs but lacks (EXT-1, EXT-4), by field.

    ``client_credentials`` and ``enterprise`` use a pre-registered client (no dynamic
    registration, EXT-1), authenticated with a secret or a private key (checked at
    connect time, so the grant can be switched before the credential is chosen);
    ``enterprise`` also needs the IdP's token endpoint and Tether's client id there.
    """
    problems: dict[str, str] = {}
    has_key = oauth.private_key_credential_id is not None
    if oauth.token_auth_method == "private_key_jwt" and not has_key:  # noqa: S105
        problems["oauth.private_key_credential_id"] = (
            "private_key_jwt needs a private key credential"
        )
    if oauth.grant == "authorization_code":
        return problems
    if oauth.grant == "jwt_bearer":
        # RFC 7523 §2.1: the workload's JWT is the grant; client authentication and
        # a client id are optional (SEP-1933: the AS may accept "none").
        if not oauth.assertion_credential_id:
            problems["oauth.assertion_credential_id"] = (
                "the jwt_bearer grant needs a credential holding the workload's JWT"
            )
        return problems
    if not oauth.client_id:
        problems["oauth.client_id"] = (
            f"the {oauth.grant} grant needs a pre-registered client id"
        )
    if oauth.token_auth_method == "none":  # noqa: S105 - a method name
        problems["oauth.token_auth_method"] = (
            f"the {oauth.grant} grant needs client authentication (RFC 6749 §4.4)"
        )
    if oauth.grant == "enterprise":
        if not oauth.idp_token_endpoint:
            problems["oauth.idp_token_endpoint"] = (
                "enterprise-managed authorization needs the IdP's token endpoint"  # noqa: S105
            )
        if not oauth.idp_client_id:
            problems["oauth.idp_client_id"] = (
                "enterprise-managed authorization needs Tether's client id at the IdP"
            )
    return problems


Invalidate = Callable[[ServerRecord, str], Awaitable[None]]


class ServerService:
    """Create, read, update and delete servers, with validation and audit."""

    def __init__(
        self,
        stores: Stores,
        clock: Clock,
        auditor: Auditor,
        url_check: UrlCheck,
        on_reauth: Invalidate,
    ) -> None:
        self._stores = stores
        self._clock = clock
        self._audit = auditor
        self._url_check = url_check
        self._on_reauth = on_reauth
        #: Called with a server's id after it was updated or deleted (the facade
        #: drops its in-process caches of the record).
        self.on_change: Callable[[str], None] | None = None

    async def _validate_refs(self, spec: ServerSpec) -> None:
        fields: dict[str, str] = {}
        if spec.auth_mode == "header" and not spec.credential_id:
            fields["credential_id"] = "header authentication needs a credential"
        refs = {
            "credential_id": spec.credential_id,
            "oauth.client_secret_credential_id": spec.oauth.client_secret_credential_id,
        }
        refs.update(
            {f"oauth.{name}": getattr(spec.oauth, name) for name in _GRANT_CREDENTIALS}
        )
        for field, ref in refs.items():
            if ref and await self._stores.credentials.get(ref) is None:
                fields[field] = f"credential '{ref}' does not exist"
        if spec.auth_mode == "oauth":
            fields.update(grant_problems(spec.oauth))
        for entry in spec.allow_networks:  # e.g. a bad port, before any URL check
            try:
                parse_allow_entry(entry)
            except ConfigurationError as exc:
                fields["allow_networks"] = exc.message
                break
        if (
            spec.auth_mode == "oauth"
            and spec.oauth.registration == "manual"
            and not spec.oauth.client_id
        ):
            fields["oauth.client_id"] = "manual client registration needs a client id"
        if fields:
            raise ValidationFailed(
                "the server settings are invalid: "
                + "; ".join(f"{k}: {v}" for k, v in fields.items()),
                fields=fields,
                hint="correct the named fields and save again",
            )
        try:
            await self._url_check(spec.url, spec.allow_networks)
            if spec.auth_mode == "oauth" and spec.oauth.idp_token_endpoint:
                await self._url_check(
                    spec.oauth.idp_token_endpoint, spec.allow_networks
                )
        except ValidationFailed:
            raise
        except Exception as exc:  # BlockedDestination and friends become field errors
            message = getattr(exc, "message", str(exc))
            raise ValidationFailed(
                f"the server URL is not allowed: {message}",
                fields={"url": message},
                hint="use a public https URL, or add the host to the server's "
                "allow_networks for a self-hosted server",
            ) from exc

    async def create(
        self, data: Mapping[str, Any], *, actor: str | None
    ) -> ServerRecord:
        """Validate and store a new server; audit ``server.create``."""
        spec = parse_spec(data)
        await self._validate_refs(spec)
        await self._ensure_unique(spec.name, None)
        now = self._clock.now()
        record = _record_from_spec(
            spec,
            ServerRecord(
                id=uuid.uuid4().hex,
                name=spec.name,
                url=spec.url,
                created_at=now,
                updated_at=now,
            ),
        )
        stored = await self._stores.servers.add(record)
        await self._audit.record(
            "server.create",
            actor=actor,
            target_type="server",
            target_id=stored.id,
            server_id=stored.id,
            after=server_view(stored),
        )
        return stored

    async def preview(self, data: Mapping[str, Any]) -> ServerRecord:
        """Validate a server as :meth:`create` would, without storing it.

        For "test connection" on an unsaved form (design-notes R3.18); the record has a
        fresh id that nothing else refers to.

        Raises:
            ValidationFailed: As for :meth:`create` (the name need not be unique).
        """
        spec = parse_spec(data)
        await self._validate_refs(spec)
        return _record_from_spec(
            spec, ServerRecord(id=uuid.uuid4().hex, name=spec.name, url=spec.url)
        )

    async def _ensure_unique(self, name: str, server_id: str | None) -> None:
        other = await self._stores.servers.get_by_name(name)
        if other is not None and other.id != server_id:
            raise ValidationFailed(
                f"a server named '{name}' already exists",
                fields={"name": "is already taken"},
                hint="choose another name",
            )

    async def get(self, ref: str) -> ServerRecord:
        """Find a server by id or name.

        Raises:
            NotFound: no such server.
        """
        server = await self._stores.servers.get(ref)
        if server is None:
            server = await self._stores.servers.get_by_name(ref)
        if server is None:
            raise NotFound(
                f"no server '{ref}'", hint="list servers with `tether servers list`"
            )
        return server

    async def list(self) -> list[ServerRecord]:
        """All servers by name."""
        return await self._stores.servers.list()

    async def update(
        self, ref: str, changes: Mapping[str, Any], *, actor: str | None
    ) -> ServerRecord:
        """Apply ``changes`` (top-level fields; ``oauth`` merged key by key)."""
        current = await self.get(ref)
        merged = ServerSpec.from_record(current).model_dump()
        for key, value in changes.items():
            if key == "oauth" and isinstance(value, Mapping):
                merged["oauth"] = {**merged["oauth"], **value}
            else:
                merged[key] = value
        spec = parse_spec(merged)
        await self._validate_refs(spec)
        await self._ensure_unique(spec.name, current.id)
        updated = _record_from_spec(spec, current).replace(updated_at=self._clock.now())
        triggers = changed_triggers(current, updated)
        if triggers:
            # the grants die in the same write as the change (issue 11 item 3): a
            # connection of another epoch is never used; revocation comes after
            updated = updated.replace(grant_epoch=current.grant_epoch + 1)
        stored = await self._stores.servers.update(
            updated, expected_version=current.version
        )
        await self._audit.record(
            "server.update",
            actor=actor,
            target_type="server",
            target_id=stored.id,
            server_id=stored.id,
            before=server_view(current),
            after=server_view(stored),
            detail=("re-authorization required: " + ", ".join(triggers))
            if triggers
            else None,
        )
        await self._stores.tools.delete(stored.id)  # design-notes R3.3 after-save 1
        if self.on_change is not None:
            self.on_change(stored.id)
        if triggers:
            await self._on_reauth(stored, ", ".join(triggers))
        return stored

    async def delete(self, ref: str, *, actor: str | None) -> None:
        """Delete a server and everything keyed by it; audit ``server.delete``."""
        current = await self.get(ref)
        await self._stores.servers.delete(current.id)
        if self.on_change is not None:
            self.on_change(current.id)
        await self._audit.record(
            "server.delete",
            actor=actor,
            target_type="server",
            target_id=current.id,
            server_id=current.id,
            before={"id": current.id, "name": current.name},
        )
