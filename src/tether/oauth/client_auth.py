"""Client authentication at the token and revocation endpoints.

RFC 6749 §2.3, §2.3.1; RFC 8414 §2; design-notes R3.8; requirements.md TOK-3, REV-2.

Three methods are implemented: ``none`` (public client, ``client_id`` in the body),
``client_secret_basic`` and ``client_secret_post``. Exactly one is used per request
(RFC 6749 §2.3: never Basic and a body secret together). ``private_key_jwt``,
``client_secret_jwt`` and ``tls_client_auth`` are later work.

Which method: an admin override wins, then the method the registration returned (REG-7),
then the negotiation table of design-notes R3.8:

===========================  =======  ==================================================
Advertised methods           Secret?  Chosen
===========================  =======  ==================================================
absent or empty              yes      ``client_secret_basic`` (RFC 8414 §2 default)
absent or empty              no       ``none``
a list                       yes      first of basic, post, none that is listed, else
                                      *unsupported methods*
a list                       no       ``none`` if listed; else *client secret required*
                                      when basic or post is listed; else *unsupported*
===========================  =======  ==================================================
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Literal
from urllib.parse import quote_plus, urlencode

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from tether.errors import ConfigurationError

__all__ = [
    "SUPPORTED_AUTH_METHODS",
    "AuthMethod",
    "ClientAuth",
    "ClientAuthMethod",
    "FormPost",
    "choose_auth_method",
    "client_auth",
    "negotiate_auth_method",
]

AuthMethod = Literal["none", "client_secret_basic", "client_secret_post"]
SUPPORTED_AUTH_METHODS: tuple[AuthMethod, ...] = (
    "client_secret_basic",
    "client_secret_post",
    "none",
)
"""Implemented methods, in the preference order used when a secret is held."""

ClientAuthMethod = Literal[
    "none", "client_secret_basic", "client_secret_post", "private_key_jwt"
]
"""What a :class:`ClientAuth` may carry: the secret methods, or a JWT client assertion
(``private_key_jwt``, built by :func:`tether.oauth.assertions.jwt_client_auth`)."""


class ClientAuth(BaseModel):
    """What one request adds to authenticate the client.

    Attributes:
        method: The method applied.
        headers: Headers to add (``Authorization`` for Basic); masked in reprs.
        body: Form fields to add (``client_id``, maybe ``client_secret``); masked.
    """

    model_config = ConfigDict(frozen=True)

    method: ClientAuthMethod
    headers: Mapping[str, str] = Field(default_factory=dict, repr=False)
    body: Mapping[str, str] = Field(default_factory=dict, repr=False)


class FormPost(BaseModel):
    """A form-encoded POST for the caller to send through ``net/``.

    Attributes:
        url: The endpoint.
        body: The form fields (contains codes, tokens or secrets; masked in reprs).
        headers: Headers, including ``Accept: application/json`` (TOK-4).
    """

    model_config = ConfigDict(frozen=True)

    url: str
    body: Mapping[str, str] = Field(repr=False)
    headers: Mapping[str, str] = Field(repr=False)

    def encoded_body(self) -> bytes:
        """Return the body as ``application/x-www-form-urlencoded`` bytes."""
        return urlencode(self.body).encode("ascii")


def _methods_text(supported: Sequence[str]) -> str:
    return ", ".join(supported)


def negotiate_auth_method(
    supported: Sequence[str] | None, *, has_secret: bool, issuer: str
) -> AuthMethod:
    """Pick a method from the advertised list (the table in the module docstring).

    Args:
        supported: ``token_endpoint_auth_methods_supported`` (or the revocation list),
            in the AS's order; ``None`` or empty when not advertised.
        has_secret: Whether a client secret is configured or was issued.
        issuer: The AS issuer, named in errors.

    Returns:
        The method to use.

    Raises:
        ConfigurationError: *client secret required* or *unsupported methods*; both
            carry ``details["issuer"]`` and ``details["methods"]``.
    """
    if not supported:
        return "client_secret_basic" if has_secret else "none"
    details = {"issuer": issuer, "methods": _methods_text(supported)}
    if has_secret:
        for method in SUPPORTED_AUTH_METHODS:
            if method in supported:
                return method
    elif "none" in supported:
        return "none"
    elif "client_secret_basic" in supported or "client_secret_post" in supported:
        raise ConfigurationError(
            f"{issuer} requires client authentication at its token endpoint "
            f"(supported: {details['methods']})",
            server=issuer,
            hint="register a client manually and configure its client secret",
            details=details,
        )
    raise ConfigurationError(
        f"{issuer} supports only token endpoint auth methods Tether does not implement "
        f"({details['methods']}); Tether implements none, client_secret_basic and "
        "client_secret_post",
        server=issuer,
        details=details,
    )


def choose_auth_method(
    *,
    supported: Sequence[str] | None,
    has_secret: bool,
    issuer: str,
    override: str | None = None,
    registered: str | None = None,
) -> AuthMethod:
    """Choose the method for a client (TOK-3): override, registration, negotiation.

    Args:
        supported: The advertised methods, ``None`` when absent.
        has_secret: Whether a client secret is held.
        issuer: The AS issuer, named in errors.
        override: The admin's forced method (*Known disagreements* #11), if any.
        registered: The ``token_endpoint_auth_method`` the registration returned.

    Returns:
        The method to use.

    Raises:
        ConfigurationError: The forced or registered method is not implemented, or
            negotiation failed (see :func:`negotiate_auth_method`).
    """
    chosen = override or registered
    if chosen is None:
        return negotiate_auth_method(supported, has_secret=has_secret, issuer=issuer)
    for method in SUPPORTED_AUTH_METHODS:
        if method == chosen:
            return method
    raise ConfigurationError(
        f"token endpoint auth method {chosen!r} is not implemented; Tether implements "
        "none, client_secret_basic and client_secret_post",
        server=issuer,
        details={"issuer": issuer, "methods": chosen},
    )


def client_auth(
    method: AuthMethod, *, client_id: str, client_secret: SecretStr | None = None
) -> ClientAuth:
    """Build the headers and body fields for one method (RFC 6749 §2.3.1).

    ``client_id`` is always in the body (design-notes R3.8), the secret in exactly
    one place. Basic form-encodes id and secret before base64 (RFC 6749 §2.3.1, Appendix
    B). With ``none`` a held secret is simply not sent.

    Args:
        method: The chosen method.
        client_id: The client identifier.
        client_secret: The secret; required for the two secret methods.

    Returns:
        What to add to the request.

    Raises:
        ConfigurationError: A secret method without a secret.
    """
    body = {"client_id": client_id}
    if method == "none":
        return ClientAuth(method=method, body=body)
    if client_secret is None or not client_secret.get_secret_value():
        raise ConfigurationError(
            f"token endpoint auth method {method} needs a client secret, "
            "and none is configured",
            hint="configure the client secret, or choose the 'none' method",
        )
    secret = client_secret.get_secret_value()
    if method == "client_secret_post":
        return ClientAuth(method=method, body={**body, "client_secret": secret})
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    basic = base64.b64encode(pair.encode("utf-8")).decode("ascii")
    return ClientAuth(
        method=method, headers={"Authorization": f"Basic {basic}"}, body=body
    )
