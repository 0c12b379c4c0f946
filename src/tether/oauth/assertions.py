"""JWT client assertions: ``private_key_jwt`` client authentication.

RFC 7523 §2.2 (using JWTs for client authentication), §3 (the claims); RFC 7521 §4.2
(the request parameters); OpenID Connect Core §9 (``private_key_jwt``); SEP-1046 (OAuth
client credentials for MCP); requirements.md EXT-2.

Pure: the time (``now``) and the randomness for ``jti`` are passed in; signing is a
computation (pyjwt over ``cryptography``), no I/O. The private key arrives as a PEM string
the hub decrypted from a credential; it is never logged (it travels as
:class:`pydantic.SecretStr` inside :class:`SigningKey`).

The assertion (RFC 7523 §3):

====================  ==============================================================
Claim                 Value
====================  ==============================================================
``iss``, ``sub``      the ``client_id`` (§3 items 1, 2: both name the client)
``aud``               the authorization server's issuer identifier (§3 item 3; the
                      token endpoint URL is also allowed, the issuer is what MCP's
                      SEP-1046 and the conformance suite check)
``iat``, ``exp``      ``now`` and ``now + lifetime`` (§3 items 4, 6; default 60 s)
``jti``               random, base64url (§3 item 7: the AS may reject replays)
====================  ==============================================================

Algorithms follow the key: an EC P-256 key signs ``ES256``, P-384 ``ES384``, RSA
``RS256`` (or ``PS256`` when asked). An explicit algorithm that does not fit the key is a
configuration error, not a silent substitution.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import BaseModel, ConfigDict, SecretStr

from tether.errors import ConfigurationError
from tether.oauth.client_auth import ClientAuth

__all__ = [
    "CLIENT_ASSERTION_TYPE",
    "DEFAULT_LIFETIME",
    "SIGNING_ALGORITHMS",
    "SigningKey",
    "assertion_claims",
    "client_assertion",
    "jwt_client_auth",
    "load_signing_key",
    "sign_assertion",
]

CLIENT_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
"""``client_assertion_type`` for a JWT client assertion (RFC 7523 §2.2)."""

DEFAULT_LIFETIME: Final = timedelta(seconds=60)
"""How long an assertion is valid; short, since it is made for one request."""

#: Algorithm per key type; the first of each tuple is the default for that key.
_BY_KEY: Final[Mapping[str, tuple[str, ...]]] = {
    "secp256r1": ("ES256",),
    "secp384r1": ("ES384",),
    "rsa": ("RS256", "PS256"),
}
SIGNING_ALGORITHMS: Final = ("ES256", "ES384", "RS256", "PS256")
"""Algorithms Tether signs client assertions with."""


class SigningKey(BaseModel):
    """A private key ready to sign assertions.

    Attributes:
        pem: The PKCS#8 (or traditional) PEM private key (masked).
        algorithm: The JWS algorithm that fits the key.
        key_id: Optional ``kid`` header, when the AS's JWKS needs it to pick the key.
    """

    model_config = ConfigDict(frozen=True)

    pem: SecretStr
    algorithm: str
    key_id: str | None = None


def _key_type(pem: str, *, where: str) -> str:
    try:
        key = load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            "the private key for JWT client authentication is not an unencrypted PEM "
            "private key",
            server=where,
            step="client_assertion",
            hint="store a PKCS#8 PEM (-----BEGIN PRIVATE KEY-----) EC P-256 or RSA key "
            "in the credential",
        ) from exc
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ConfigurationError(
                f"the RSA private key has {key.key_size} bits; at least 2048 are "
                "required (RFC 7518 §3.3)",
                server=where,
                step="client_assertion",
            )
        return "rsa"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _BY_KEY:
        return key.curve.name
    raise ConfigurationError(
        "the private key type is not supported for JWT client authentication; use an "
        "EC P-256, EC P-384 or RSA key",
        server=where,
        step="client_assertion",
    )


def load_signing_key(
    pem: str,
    *,
    algorithm: str | None = None,
    key_id: str | None = None,
    where: str = "private key",
) -> SigningKey:
    """Check a PEM private key and pick (or check) its algorithm.

    Args:
        pem: The PEM text.
        algorithm: The configured algorithm; ``None`` picks the key's default.
        key_id: Optional ``kid``.
        where: The server name, for errors.

    Returns:
        The signing key.

    Raises:
        ConfigurationError: Not a usable key, or an algorithm that does not fit it.
    """
    allowed = _BY_KEY[_key_type(pem, where=where)]
    chosen = algorithm or allowed[0]
    if chosen not in allowed:
        raise ConfigurationError(
            f"signing algorithm {chosen} does not fit this private key (it signs "
            f"{', '.join(allowed)})",
            server=where,
            step="client_assertion",
            hint="set the server's signing algorithm to match the key, or leave it "
            "empty",
        )
    return SigningKey(pem=SecretStr(pem), algorithm=chosen, key_id=key_id)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def assertion_claims(
    *,
    client_id: str,
    audience: str,
    now: datetime,
    jti: bytes,
    lifetime: timedelta = DEFAULT_LIFETIME,
) -> dict[str, Any]:
    """The claims of a client assertion (RFC 7523 §3; table in the module docstring).

    Args:
        client_id: The client identifier (``iss`` and ``sub``).
        audience: The AS issuer identifier.
        now: An aware datetime.
        jti: Random bytes (at least 16) for the token id.
        lifetime: ``exp - iat``.

    Returns:
        The claims, with integer NumericDates.

    Raises:
        ValueError: ``jti`` shorter than 16 bytes or a non-positive lifetime.
    """
    if len(jti) < 16:
        raise ValueError("jti needs at least 16 random bytes")
    if lifetime <= timedelta(0):
        raise ValueError("lifetime must be positive")
    issued = int(now.timestamp())
    return {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": issued,
        "exp": issued + int(lifetime.total_seconds()),
        "jti": _b64(jti),
    }


def sign_assertion(claims: Mapping[str, Any], key: SigningKey) -> str:
    """Sign ``claims`` as a compact JWS with ``typ: JWT`` (RFC 7519 §5.1)."""
    headers: dict[str, Any] = {"typ": "JWT"}
    if key.key_id:
        headers["kid"] = key.key_id
    return jwt.encode(
        dict(claims),
        key.pem.get_secret_value(),
        algorithm=key.algorithm,
        headers=headers,
    )


def jwt_client_auth(assertion: str) -> ClientAuth:
    """The request fields of ``private_key_jwt`` (RFC 7521 §4.2, RFC 7523 §2.2).

    ``client_id`` is left out: the assertion's ``sub`` names the client (EXT-2; RFC 7521
    §4.2 makes it optional).
    """
    return ClientAuth(
        method="private_key_jwt",
        body={
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )


def client_assertion(
    key: SigningKey,
    *,
    client_id: str,
    audience: str,
    now: datetime,
    jti: bytes,
    lifetime: timedelta = DEFAULT_LIFETIME,
) -> ClientAuth:
    """Claims, signature and request fields in one step."""
    claims = assertion_claims(
        client_id=client_id, audience=audience, now=now, jti=jti, lifetime=lifetime
    )
    return jwt_client_auth(sign_assertion(claims, key))
