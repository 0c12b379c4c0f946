"""JWT client assertions (RFC 7523 §2.2, §3): claims, algorithms, signatures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tether.errors import ConfigurationError
from tether.oauth.assertions import (
    CLIENT_ASSERTION_TYPE,
    assertion_claims,
    client_assertion,
    jwt_client_auth,
    load_signing_key,
    sign_assertion,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ISSUER = "https://as.example"
JTI = bytes(range(16))


def pem(key: object) -> str:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


P256 = ec.generate_private_key(ec.SECP256R1())
P384 = ec.generate_private_key(ec.SECP384R1())
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    ("key", "configured", "chosen"),
    [
        (P256, None, "ES256"),
        (P256, "ES256", "ES256"),
        (P384, None, "ES384"),
        (RSA, None, "RS256"),
        (RSA, "PS256", "PS256"),
    ],
)
def test_algorithm_follows_the_key(
    key: object, configured: str | None, chosen: str
) -> None:
    assert load_signing_key(pem(key), algorithm=configured).algorithm == chosen


@pytest.mark.parametrize(
    ("text", "configured", "message"),
    [
        (pem(P256), "RS256", "does not fit"),
        (pem(RSA), "ES256", "does not fit"),
        ("not a key", None, "not an unencrypted PEM"),
        (pem(ed25519.Ed25519PrivateKey.generate()), None, "not supported"),
        (
            pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505
            None,
            "at least 2048",
        ),
    ],
)
def test_unusable_keys_are_configuration_errors(
    text: str, configured: str | None, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        load_signing_key(text, algorithm=configured, where="srv")
    assert info.value.server == "srv"
    assert info.value.step == "client_assertion"


def test_claims_follow_rfc_7523_section_3() -> None:
    claims = assertion_claims(client_id="c1", audience=ISSUER, now=NOW, jti=JTI)
    assert claims == {
        "iss": "c1",
        "sub": "c1",
        "aud": ISSUER,
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 60,
        "jti": "AAECAwQFBgcICQoLDA0ODw",
    }


@pytest.mark.parametrize(
    ("jti", "lifetime"), [(b"short", timedelta(seconds=60)), (JTI, timedelta(0))]
)
def test_claims_refuse_weak_inputs(jti: bytes, lifetime: timedelta) -> None:
    with pytest.raises(ValueError, match=r"jti|lifetime"):
        assertion_claims(
            client_id="c", audience=ISSUER, now=NOW, jti=jti, lifetime=lifetime
        )


@pytest.mark.parametrize("key", [P256, P384, RSA])
def test_signature_verifies_with_the_public_key(key: object) -> None:
    signing = load_signing_key(pem(key), key_id="k1")
    now = datetime.now(UTC)
    auth = client_assertion(
        signing, client_id="conformance-test-client", audience=ISSUER, now=now, jti=JTI
    )
    assert auth.method == "private_key_jwt"
    assert "client_id" not in auth.body  # EXT-2: the identity is in sub
    assert auth.body["client_assertion_type"] == CLIENT_ASSERTION_TYPE
    token = auth.body["client_assertion"]
    header = jwt.get_unverified_header(token)
    assert header == {"alg": signing.algorithm, "typ": "JWT", "kid": "k1"}
    decoded = jwt.decode(
        token,
        public_pem(key),
        algorithms=[signing.algorithm],
        audience=ISSUER,
        issuer="conformance-test-client",
        options={"require": ["exp", "iat", "jti", "sub"]},
    )
    assert decoded["sub"] == "conformance-test-client"


def test_expired_assertion_is_rejected_by_a_verifier() -> None:
    signing = load_signing_key(pem(P256))
    token = sign_assertion(
        assertion_claims(
            client_id="c",
            audience=ISSUER,
            now=datetime(2020, 1, 1, tzinfo=UTC),
            jti=JTI,
        ),
        signing,
    )
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(token, public_pem(P256), algorithms=["ES256"], audience=ISSUER)


def test_key_is_masked_in_reprs() -> None:
    signing = load_signing_key(pem(P256))
    assert "PRIVATE KEY" not in repr(signing)
    assert "client_assertion" not in repr(jwt_client_auth("a.b.c"))
