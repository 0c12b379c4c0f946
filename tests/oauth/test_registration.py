"""Tests for tether.oauth.registration (REG-2, REG-6, REG-7, CIMD-1 – CIMD-7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tether.errors import ConfigurationError, InvalidResponse, OAuthError, RemoteError
from tether.oauth.registration import (
    RegistrationMode,
    RegistrationPath,
    check_client_metadata_url,
    choose_registration,
    client_metadata_document,
    parse_registration_response,
    registration_request,
)

from ._factories import ISSUER, REDIRECT, as_metadata

CIMD_URL = "https://tether.example.org/oauth/client-metadata.json"
REG_URL = f"{ISSUER}/register"


@pytest.mark.parametrize(
    ("mode", "manual", "cimd_supported", "cimd_url", "reg_endpoint", "expected"),
    [
        # auto: REG-2 order
        ("auto", True, True, CIMD_URL, True, "manual"),
        ("auto", False, True, CIMD_URL, True, "metadata_document"),
        ("auto", False, False, CIMD_URL, True, "dynamic"),
        ("auto", False, True, None, True, "dynamic"),  # no document URL to offer
        # forced paths
        ("manual", True, True, CIMD_URL, True, "manual"),
        ("metadata_document", False, False, CIMD_URL, False, "metadata_document"),
        ("dynamic", True, True, CIMD_URL, True, "dynamic"),  # prefer_dcr override
    ],
)
def test_choose_registration(
    mode: RegistrationMode,
    manual: bool,
    cimd_supported: bool,
    cimd_url: str | None,
    reg_endpoint: bool,
    expected: RegistrationPath,
) -> None:
    metadata = as_metadata(
        client_id_metadata_document_supported=cimd_supported,
        registration_endpoint=REG_URL if reg_endpoint else None,
    )
    chosen = choose_registration(
        mode,
        metadata=metadata,
        has_manual_client=manual,
        client_metadata_url=cimd_url,
        redirect_uri=REDIRECT,
    )
    assert chosen == expected


@pytest.mark.parametrize(
    ("mode", "manual", "cimd_url", "reason"),
    [
        ("auto", False, CIMD_URL, "register a client manually"),
        ("manual", False, CIMD_URL, "no client id is configured"),
        ("dynamic", False, CIMD_URL, "offers no dynamic client registration"),
        ("metadata_document", False, None, "no public base URL"),
        ("metadata_document", False, "http://tether.example/cimd", "must use https"),
    ],
)
def test_choose_registration_errors(
    mode: RegistrationMode, manual: bool, cimd_url: str | None, reason: str
) -> None:
    metadata = as_metadata(registration_endpoint=None)
    with pytest.raises(ConfigurationError, match=reason):
        choose_registration(
            mode,
            metadata=metadata,
            has_manual_client=manual,
            client_metadata_url=cimd_url,
            redirect_uri=REDIRECT,
        )


def test_manual_required_shows_the_redirect_uri() -> None:
    with pytest.raises(ConfigurationError) as info:
        choose_registration(
            "auto",
            metadata=as_metadata(registration_endpoint=None),
            has_manual_client=False,
            client_metadata_url=None,
            redirect_uri=REDIRECT,
        )
    assert info.value.hint is not None
    assert REDIRECT in info.value.hint
    assert info.value.details == {"issuer": ISSUER, "redirect_uri": REDIRECT}


def test_auto_with_invalid_cimd_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="must have a path"):
        choose_registration(
            "auto",
            metadata=as_metadata(client_id_metadata_document_supported=True),
            has_manual_client=False,
            client_metadata_url="https://tether.example.org/",
            redirect_uri=REDIRECT,
        )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://tether.example/cimd.json", "must use https"),
        ("https://tether.example", "must have a path"),
        ("https://tether.example/", "must have a path"),
        ("https://tether.example/cimd.json#x", "fragment"),
        ("https://u:p@tether.example/cimd.json", "user name"),
        ("https://tether.example/cimd.json?v=1", "query"),
        ("https://tether.example/a/./cimd.json", "segments"),
        ("https://tether.example/a/../cimd.json", "segments"),
        ("https:///cimd.json", "host"),
    ],
)
def test_check_client_metadata_url(url: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        check_client_metadata_url(url)


def test_client_metadata_document() -> None:
    document = client_metadata_document(
        CIMD_URL,
        client_name="Tether",
        redirect_uris=[REDIRECT],
        client_uri="https://tether.example.org",
        logo_uri="https://tether.example.org/logo.png",
    )
    assert document == {
        "client_id": CIMD_URL,  # CIMD-4: exactly the document URL
        "client_name": "Tether",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",  # CIMD-5
        "application_type": "web",
        "client_uri": "https://tether.example.org",
        "logo_uri": "https://tether.example.org/logo.png",
    }
    assert "client_secret" not in json.dumps(document)


def test_client_metadata_document_minimal_and_errors() -> None:
    document = client_metadata_document(
        CIMD_URL, client_name="T", redirect_uris=[REDIRECT]
    )
    assert "client_uri" not in document
    assert "logo_uri" not in document
    with pytest.raises(ConfigurationError, match="redirect URI"):
        client_metadata_document(CIMD_URL, client_name="T", redirect_uris=[])
    with pytest.raises(ConfigurationError, match="https"):
        client_metadata_document(
            "http://x/y", client_name="T", redirect_uris=[REDIRECT]
        )


@pytest.mark.parametrize(
    ("supported", "expected"),
    [
        (["none", "client_secret_basic"], "none"),
        (["client_secret_post", "client_secret_basic"], "client_secret_basic"),
        (["private_key_jwt", "client_secret_post"], "client_secret_post"),
        (None, "client_secret_basic"),  # RFC 8414 §2 default
        ([], "client_secret_basic"),
    ],
)
def test_registration_request(supported: list[str] | None, expected: str) -> None:
    metadata = as_metadata(token_endpoint_auth_methods_supported=supported)
    if supported is None:
        assert metadata.token_endpoint_auth_methods_supported is None
    body = registration_request(
        metadata, client_name="Tether", redirect_uris=[REDIRECT], scopes=["a", "b"]
    )
    assert body == {
        "client_name": "Tether",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": expected,
        "application_type": "web",
        "scope": "a b",
    }


def test_registration_request_preference_and_no_scope() -> None:
    metadata = as_metadata(
        token_endpoint_auth_methods_supported=["none", "client_secret_post"]
    )
    body = registration_request(
        metadata,
        client_name="T",
        redirect_uris=[REDIRECT],
        preferred_auth_methods=("client_secret_post", "none"),
    )
    assert body["token_endpoint_auth_method"] == "client_secret_post"
    assert "scope" not in body


def test_registration_request_unsupported_methods() -> None:
    metadata = as_metadata(token_endpoint_auth_methods_supported=["private_key_jwt"])
    with pytest.raises(ConfigurationError, match="private_key_jwt") as info:
        registration_request(metadata, client_name="T", redirect_uris=[REDIRECT])
    assert info.value.details == {"issuer": ISSUER, "methods": "private_key_jwt"}


def parse(
    members: dict[str, Any] | bytes,
    *,
    status: int = 201,
    content_type: str | None = "application/json",
    requested: str = "none",
) -> Any:
    body = members if isinstance(members, bytes) else json.dumps(members).encode()
    return parse_registration_response(
        status,
        body,
        content_type,
        url=REG_URL,
        redirect_uri=REDIRECT,
        requested_auth_method=requested,
    )


def test_parse_public_client() -> None:
    client = parse({"client_id": "abc", "redirect_uris": [REDIRECT, "https://x/cb"]})
    assert client.client_id == "abc"
    assert client.client_secret is None
    assert client.token_endpoint_auth_method == "none"
    assert client.redirect_uris == (REDIRECT, "https://x/cb")
    assert client.client_secret_expires_at is None


def test_parse_confidential_client() -> None:
    client = parse(
        {
            "client_id": "abc",
            "client_secret": "SECRET-VALUE",
            "client_id_issued_at": 1767225600,
            "client_secret_expires_at": 1767312000,
            "token_endpoint_auth_method": "client_secret_post",
            "registration_access_token": "RAT-VALUE",
            "registration_client_uri": f"{REG_URL}/abc",
            "unknown": {"ignored": True},
        },
        status=200,
        requested="client_secret_basic",
    )
    assert client.token_endpoint_auth_method == "client_secret_post"  # REG-7: returned
    assert client.client_secret.get_secret_value() == "SECRET-VALUE"
    assert client.client_id_issued_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert client.client_secret_expires_at == datetime(2026, 1, 2, tzinfo=UTC)
    assert client.registration_access_token.get_secret_value() == "RAT-VALUE"
    assert client.registration_client_uri == f"{REG_URL}/abc"
    assert client.redirect_uris == (REDIRECT,)  # not echoed: ours
    assert "SECRET-VALUE" not in repr(client)
    assert "RAT-VALUE" not in repr(client)


def test_secret_expiry_zero_means_never() -> None:
    client = parse(
        {"client_id": "a", "client_secret": "s", "client_secret_expires_at": 0},
        requested="client_secret_basic",
    )
    assert client.client_secret_expires_at is None


def test_secret_with_method_none_uses_the_secret() -> None:
    # Figma: a secret while saying none; what was issued is believed (issue 7 item 7)
    client = parse(
        {"client_id": "a", "client_secret": "s", "token_endpoint_auth_method": "none"}
    )
    assert client.token_endpoint_auth_method == "client_secret_post"
    assert client.client_secret is not None


@pytest.mark.parametrize(
    ("members", "requested", "reason"),
    [
        ({}, "none", "client_id"),
        ({"client_id": ""}, "none", "client_id"),
        ({"client_id": 5}, "none", "client_id"),
        ({"client_id": "a", "token_endpoint_auth_method": "private_key_jwt"}, "none",
         "unsupported auth method 'private_key_jwt'"),
        ({"client_id": "a"}, "client_secret_basic", "issued no client_secret"),
        ({"client_id": "a", "token_endpoint_auth_method": "client_secret_post"}, "none",
         "issued no client_secret"),
        ({"client_id": "a", "redirect_uris": ["https://other/cb"]}, "none",
         "does not register the redirect URI"),
        (b"<html></html>", "none", "HTML where JSON"),
        (b"{", "none", "not valid JSON"),
    ],
)  # fmt: skip
def test_unusable_registrations(
    members: dict[str, Any] | bytes, requested: str, reason: str
) -> None:
    with pytest.raises(InvalidResponse, match=reason) as info:
        parse(members, requested=requested)
    assert info.value.step == "registration"


@pytest.mark.parametrize(
    ("status", "members", "error"),
    [
        (400, {"error": "invalid_redirect_uri", "error_description": "not allowed"},
         "invalid_redirect_uri"),
        (400, {"error": "invalid_client_metadata"}, "invalid_client_metadata"),
        (201, {"error": "invalid_client_metadata", "client_id": "x"}, "invalid_client_metadata"),
    ],
)  # fmt: skip
def test_registration_errors(status: int, members: dict[str, Any], error: str) -> None:
    with pytest.raises(OAuthError) as info:
        parse(members, status=status)
    assert info.value.error == error
    assert info.value.step == "registration"


@pytest.mark.parametrize(
    ("status", "body"),
    [(403, b"Forbidden"), (500, b"<html>"), (404, b'{"message": "x"}')],
)
def test_registration_other_statuses(status: int, body: bytes) -> None:
    with pytest.raises(RemoteError, match=f"HTTP {status}") as info:
        parse(body, status=status, content_type=None)
    assert info.value.details == {"status": status}


@pytest.mark.parametrize(
    ("supported", "expected"),
    [
        ((), "client_secret_post"),
        (("none", "client_secret_post", "client_secret_basic"), "client_secret_post"),
        (("none", "client_secret_basic"), "client_secret_basic"),
        (("client_secret_post",), "client_secret_post"),
    ],
)
def test_an_issued_secret_is_believed_over_an_echoed_none(
    supported: tuple[str, ...], expected: str
) -> None:
    """Figma: ``client_secret`` issued while echoing ``none``; the secret is used."""
    client = parse_registration_response(
        201,
        json.dumps(
            {
                "client_id": "abc",
                "client_secret": "s3cret",
                "token_endpoint_auth_method": "none",
            }
        ).encode(),
        "application/json",
        url=REG_URL,
        redirect_uri=REDIRECT,
        requested_auth_method="none",
        supported_auth_methods=supported,
    )
    assert client.token_endpoint_auth_method == expected
    assert client.client_secret is not None
    assert client.client_secret.get_secret_value() == "s3cret"
