"""DPoP proofs (RFC 9449 §4.2, §8, §9): claims, header, signature, the use rule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm

from tether.errors import ConfigurationError, InvalidResponse
from tether.oauth.dpop import (
    access_token_hash,
    dpop_proof,
    dpop_wanted,
    generate_key,
    htu_of,
    load_key,
    nonce_challenge,
    proof_claims,
    public_jwk,
    token_nonce_error,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
JTI = bytes(range(16))
KEY = generate_key()


def _verify(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header = jwt.get_unverified_header(proof)
    public = ECAlgorithm.from_jwk(header["jwk"])
    claims = jwt.decode(
        proof,
        public,  # type: ignore[arg-type]
        algorithms=["ES256"],
        options={"verify_iat": False},  # NOW is a fixed date
    )
    return header, claims


def test_proof_header_and_signature_verify_with_the_embedded_key() -> None:
    proof = dpop_proof(
        KEY, method="post", url="https://as.example/token", now=NOW, jti=JTI
    )
    header, claims = _verify(proof)
    assert header["typ"] == "dpop+jwt"
    assert header["alg"] == "ES256"
    assert set(header["jwk"]) == {"kty", "crv", "x", "y"}  # never "d"
    assert header["jwk"] == public_jwk(KEY)
    assert claims == {
        "jti": "AAECAwQFBgcICQoLDA0ODw",
        "htm": "POST",
        "htu": "https://as.example/token",
        "iat": int(NOW.timestamp()),
    }


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, {}),
        ({"nonce": "n-1"}, {"nonce": "n-1"}),
        ({"nonce": ""}, {}),
        (
            {"access_token": "tok"},
            {"ath": "GnZ0607njffhrEOak8P6jjyUV4TU3sn9jjARc4svHWI"},
        ),
        (
            {"access_token": "tok", "nonce": "x"},
            {"ath": "GnZ0607njffhrEOak8P6jjyUV4TU3sn9jjARc4svHWI", "nonce": "x"},
        ),
    ],
)
def test_optional_claims(kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    claims = proof_claims(
        method="GET", url="https://mcp.example/mcp", now=NOW, jti=JTI, **kwargs
    )
    extra = {k: v for k, v in claims.items() if k not in {"jti", "htm", "htu", "iat"}}
    assert extra == expected


@pytest.mark.parametrize(
    ("url", "htu"),
    [
        ("https://mcp.example/mcp", "https://mcp.example/mcp"),
        ("https://mcp.example/mcp?session=1", "https://mcp.example/mcp"),
        ("https://mcp.example/mcp#frag", "https://mcp.example/mcp"),
        ("http://localhost:8080/a/b?x=1#y", "http://localhost:8080/a/b"),
    ],
)
def test_htu_drops_query_and_fragment(url: str, htu: str) -> None:
    assert htu_of(url) == htu


def test_ath_is_base64url_sha256_of_the_token() -> None:
    # RFC 9449 §7.1 example token and ath
    assert (
        access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU")
        == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    )


def test_short_jti_is_refused() -> None:
    with pytest.raises(ValueError, match="16 random bytes"):
        proof_claims(method="POST", url="https://a/t", now=NOW, jti=b"short")


def test_each_generated_key_is_new_and_reloads() -> None:
    other = generate_key()
    assert public_jwk(other) != public_jwk(KEY)
    assert public_jwk(load_key(KEY.pem)) == public_jwk(KEY)
    assert "BEGIN" not in repr(KEY)


@pytest.mark.parametrize(
    "pem",
    [
        "not a key",
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode(),
        ec.generate_private_key(ec.SECP384R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode(),
    ],
    ids=["garbage", "rsa", "p384"],
)
def test_unusable_stored_keys_are_configuration_errors(pem: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_key(pem)
    assert info.value.step == "dpop"


@pytest.mark.parametrize(
    ("mode", "advertised", "wanted"),
    [
        ("auto", None, False),
        ("auto", [], False),
        ("auto", ["ES256"], True),
        ("auto", ["RS256", "ES256"], True),
        ("auto", ["RS256"], False),
        ("auto", "ES256", False),  # not a list: ignored
        ("always", None, True),
        ("always", ["ES256"], True),
        ("never", ["ES256"], False),
        ("never", None, False),
    ],
)
def test_when_dpop_is_used(mode: Any, advertised: Any, wanted: bool) -> None:
    assert dpop_wanted(mode, advertised, issuer="https://as") is wanted


def test_always_with_an_as_that_cannot_verify_es256_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="RS256") as info:
        dpop_wanted("always", ["RS256"], issuer="https://as", server="files")
    assert info.value.server == "files"
    assert info.value.step == "dpop"


@pytest.mark.parametrize(
    ("www_authenticate", "nonce", "expected"),
    [
        (['DPoP error="use_dpop_nonce"'], "n1", "n1"),
        (['DPoP error="use_dpop_nonce", resource_metadata="https://r"'], "n1", "n1"),
        (['Bearer realm="x", DPoP error="use_dpop_nonce"'], "n1", "n1"),
        (['DPoP error="use_dpop_nonce"'], None, None),
        (['DPoP error="invalid_token"'], "n1", None),
        ([], "n1", "n1"),  # a nonce without a DPoP error: still worth one retry
        (['Bearer error="invalid_token"'], "n1", "n1"),
    ],
)
def test_resource_server_nonce_challenge(
    www_authenticate: list[str], nonce: str | None, expected: str | None
) -> None:
    assert nonce_challenge(www_authenticate, nonce) == expected


@pytest.mark.parametrize(
    ("members", "nonce", "expected"),
    [
        ({"error": "use_dpop_nonce"}, "n", "n"),
        ({"error": "invalid_grant"}, "n", None),
        ({}, "n", None),
        (None, "n", None),
    ],
)
def test_token_endpoint_nonce_error(
    members: Any, nonce: str | None, expected: str | None
) -> None:
    assert token_nonce_error(members, nonce, url="https://as/token") == expected


def test_use_dpop_nonce_without_a_nonce_header_is_an_invalid_response() -> None:
    with pytest.raises(InvalidResponse, match="DPoP-Nonce"):
        token_nonce_error({"error": "use_dpop_nonce"}, None, url="https://as/token")


@pytest.mark.parametrize(
    ("token_type", "dpop", "expected"),
    [("DPoP", True, "DPoP"), ("dpop", True, "DPoP"), ("Bearer", True, "Bearer")],
)
def test_token_response_accepts_dpop_only_after_a_proof(
    token_type: str, dpop: bool, expected: str
) -> None:
    from tether.oauth.tokens import parse_token_response

    body = f'{{"access_token":"a","token_type":"{token_type}"}}'.encode()
    tokens = parse_token_response(
        200, body, "application/json", now=NOW, url="https://as/token", dpop=dpop
    )
    assert tokens.token_type == expected
