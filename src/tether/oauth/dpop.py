"""DPoP proofs: sender-constrained access tokens (RFC 9449; requirements.md SEC-3, EXT-7).

Pure: the time (``now``) and the randomness for ``jti`` are passed in; signing is a
computation (pyjwt over ``cryptography``). The one impure helper,
:func:`generate_key`, draws a fresh EC P-256 key from the operating system.

A proof is a JWS (RFC 9449 §4.2):

==============  ===================================================================
Part            Value
==============  ===================================================================
``typ``         ``dpop+jwt``
``alg``         ``ES256`` (the only algorithm Tether signs proofs with)
``jwk``         the public key (never the private part)
``jti``         random, base64url, unique per proof
``htm``         the HTTP method of the request
``htu``         the request URI without query and fragment
``iat``         ``now`` (seconds)
``nonce``       the server's ``DPoP-Nonce``, when one was given (§8, §9)
``ath``         base64url(SHA-256(access token)), on resource requests (§4.2, §7)
==============  ===================================================================

When to use DPoP (Tether's rule, documented in docs/configuration.md): the server's
``oauth.dpop`` setting — ``auto`` when the AS advertises
``dpop_signing_alg_values_supported`` including ``ES256``, ``always``, or ``never`` (the
default, since an AS such as oidc-provider advertises DPoP while many MCP servers accept
only Bearer tokens) — see :func:`dpop_wanted`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from pydantic import BaseModel, ConfigDict, SecretStr

from tether.errors import ConfigurationError, InvalidResponse
from tether.oauth.challenge import Challenge, parse_www_authenticate

__all__ = [
    "DPOP_ALGORITHM",
    "DPOP_HEADER",
    "DPOP_NONCE_HEADER",
    "USE_DPOP_NONCE",
    "DPoPKey",
    "DPoPMode",
    "access_token_hash",
    "dpop_proof",
    "dpop_wanted",
    "generate_key",
    "htu_of",
    "load_key",
    "nonce_challenge",
    "proof_claims",
    "public_jwk",
    "token_nonce_error",
]

DPOP_ALGORITHM: Final = "ES256"
"""The JWS algorithm of every proof Tether signs."""
DPOP_HEADER: Final = "DPoP"
"""The request header that carries the proof (RFC 9449 §4.1)."""
DPOP_NONCE_HEADER: Final = "DPoP-Nonce"
"""The response header with a server-supplied nonce (RFC 9449 §8.1, §9)."""
USE_DPOP_NONCE: Final = "use_dpop_nonce"
"""The error code asking for a proof with the nonce (RFC 9449 §8, §9)."""

DPoPMode = Literal["auto", "always", "never"]
"""A server's ``oauth.dpop`` setting."""


class DPoPKey(BaseModel):
    """A connection's proof-of-possession key pair.

    Attributes:
        pem: The PKCS#8 PEM EC P-256 private key (masked; sealed at rest with the
            connection).
    """

    model_config = ConfigDict(frozen=True)

    pem: SecretStr

    def __repr__(self) -> str:
        return "DPoPKey(pem='***')"


def generate_key() -> DPoPKey:
    """A fresh EC P-256 key pair (the one impure function here: OS randomness)."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return DPoPKey(pem=SecretStr(pem))


def _private(key: DPoPKey) -> ec.EllipticCurvePrivateKey:
    try:
        loaded = serialization.load_pem_private_key(
            key.pem.get_secret_value().encode("ascii"), password=None
        )
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            "the connection's DPoP key is not a PEM private key",
            step="dpop",
            hint="disconnect and connect the server again (a new key is made)",
        ) from exc
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(
        loaded.curve, ec.SECP256R1
    ):
        raise ConfigurationError(
            "the connection's DPoP key is not an EC P-256 key",
            step="dpop",
            hint="disconnect and connect the server again (a new key is made)",
        )
    return loaded


def load_key(pem: SecretStr | str) -> DPoPKey:
    """Wrap and check a stored PEM key.

    Raises:
        ConfigurationError: Not an EC P-256 private key.
    """
    key = DPoPKey(pem=pem if isinstance(pem, SecretStr) else SecretStr(pem))
    _private(key)
    return key


def public_jwk(key: DPoPKey) -> dict[str, Any]:
    """The public JWK of ``key`` (``kty``, ``crv``, ``x``, ``y``; no ``d``)."""
    jwk = ECAlgorithm.to_jwk(_private(key).public_key(), as_dict=True)
    return {name: jwk[name] for name in ("kty", "crv", "x", "y")}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(access_token: str) -> str:
    """``ath``: base64url(SHA-256(ASCII access token)) (RFC 9449 §4.2)."""
    return _b64(hashlib.sha256(access_token.encode("ascii")).digest())


def htu_of(url: str) -> str:
    """The ``htu`` claim: ``url`` without query and fragment (RFC 9449 §4.2)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def proof_claims(
    *,
    method: str,
    url: str,
    now: datetime,
    jti: bytes,
    nonce: str | None = None,
    access_token: str | None = None,
) -> dict[str, Any]:
    """The claims of one proof (RFC 9449 §4.2).

    Args:
        method: The HTTP method (``htm``), upper-cased.
        url: The request URL; query and fragment are dropped (``htu``).
        now: The current time (aware).
        jti: At least 16 random bytes.
        nonce: A server-supplied nonce (§8, §9).
        access_token: For resource requests: its hash becomes ``ath``.

    Raises:
        ValueError: ``jti`` shorter than 16 bytes.
    """
    if len(jti) < 16:
        raise ValueError("jti needs at least 16 random bytes")
    claims: dict[str, Any] = {
        "jti": _b64(jti),
        "htm": method.upper(),
        "htu": htu_of(url),
        "iat": int(now.timestamp()),
    }
    if nonce:
        claims["nonce"] = nonce
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    return claims


def dpop_proof(
    key: DPoPKey,
    *,
    method: str,
    url: str,
    now: datetime,
    jti: bytes,
    nonce: str | None = None,
    access_token: str | None = None,
) -> str:
    """Sign a DPoP proof JWT for one request (RFC 9449 §4.2).

    Args: as :func:`proof_claims`, plus the key.

    Returns:
        The compact JWS for the ``DPoP`` header.
    """
    claims = proof_claims(
        method=method,
        url=url,
        now=now,
        jti=jti,
        nonce=nonce,
        access_token=access_token,
    )
    return jwt.encode(
        claims,
        _private(key),
        algorithm=DPOP_ALGORITHM,
        headers={"typ": "dpop+jwt", "jwk": public_jwk(key)},
    )


def dpop_wanted(
    mode: DPoPMode, advertised: Any, *, issuer: str, server: str | None = None
) -> bool:
    """Whether to ask for DPoP-bound tokens at this AS (Tether's rule).

    Args:
        mode: The server's ``oauth.dpop`` setting.
        advertised: The AS metadata's ``dpop_signing_alg_values_supported`` (raw).
        issuer: The AS, for errors.
        server: The server name, for errors.

    Returns:
        ``never`` → False; ``always`` → True; ``auto`` → True when the AS lists ES256.

    Raises:
        ConfigurationError: ``always`` while the AS lists algorithms without ES256.
    """
    if mode == "never":
        return False
    algs: Sequence[str] = (
        [a for a in advertised if isinstance(a, str)]
        if isinstance(advertised, list | tuple)
        else []
    )
    if mode == "always":
        if algs and DPOP_ALGORITHM not in algs:
            raise ConfigurationError(
                f"the authorization server {issuer} accepts DPoP proofs signed with "
                f"{', '.join(algs)}, not {DPOP_ALGORITHM}",
                server=server,
                step="dpop",
                hint="set the server's dpop setting to auto or never",
                details={"issuer": issuer, "dpop_algs": list(algs)},
            )
        return True
    return DPOP_ALGORITHM in algs


def nonce_challenge(
    www_authenticate: Iterable[str], nonce_header: str | None
) -> str | None:
    """The nonce to retry with after a resource server's 401 (RFC 9449 §9).

    Args:
        www_authenticate: Every ``WWW-Authenticate`` value of the response.
        nonce_header: Its ``DPoP-Nonce`` header.

    Returns:
        The nonce when a ``DPoP`` challenge says ``error="use_dpop_nonce"`` (or the
        response carries a nonce and no other DPoP error); else ``None``.
    """
    if not nonce_header:
        return None
    challenges: tuple[Challenge, ...] = parse_www_authenticate(list(www_authenticate))
    errors = [c.params.get("error") for c in challenges if c.scheme == "dpop"]
    if USE_DPOP_NONCE in errors:
        return nonce_header
    return None if any(errors) else nonce_header


def token_nonce_error(
    members: Any, nonce_header: str | None, *, url: str
) -> str | None:
    """The nonce to retry a token request with (RFC 9449 §8): ``use_dpop_nonce``.

    Args:
        members: The decoded error body (a mapping), or anything else.
        nonce_header: The response's ``DPoP-Nonce``.
        url: The token endpoint, for errors.

    Returns:
        The nonce, or ``None`` when the body is not a ``use_dpop_nonce`` error.

    Raises:
        InvalidResponse: ``use_dpop_nonce`` without a ``DPoP-Nonce`` header.
    """
    if not isinstance(members, dict) or members.get("error") != USE_DPOP_NONCE:
        return None
    if not nonce_header:
        raise InvalidResponse(
            "the token endpoint asked for a DPoP nonce (use_dpop_nonce) but sent no "
            "DPoP-Nonce header (RFC 9449 §8)",
            server=url,
            step="token",
        )
    return nonce_header
