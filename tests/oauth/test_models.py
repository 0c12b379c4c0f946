"""Tests for tether.oauth.models (PRM-6, PRM-7, ASM-4 – ASM-7, AUTHZ-2)."""

from __future__ import annotations

from typing import Any

import pytest

from tether.errors import DiscoveryError
from tether.oauth.models import (
    check_authorization_server_metadata,
    parse_authorization_server_metadata,
    parse_protected_resource_metadata,
)

from ._factories import ISSUER, SERVER, as_json, as_metadata, prm_json

URL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
JSON = "application/json"


def test_prm_parses_and_ignores_unknown_members() -> None:
    body = prm_json(future_member={"x": 1}, resource_name="Files")
    metadata = parse_protected_resource_metadata(body, JSON, url=URL)
    assert metadata.resource == SERVER
    assert metadata.authorization_servers == (ISSUER,)
    assert metadata.scopes_supported == ("mcp:read", "mcp:write")
    assert metadata.resource_name == "Files"


def test_prm_keeps_raw_strings() -> None:
    body = prm_json(
        resource="HTTPS://MCP.example.com", authorization_servers=["https://a/"]
    )
    metadata = parse_protected_resource_metadata(body, None, url=URL)
    assert metadata.resource == "HTTPS://MCP.example.com"
    assert metadata.authorization_servers == ("https://a/",)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"<!DOCTYPE html><html></html>", "text/plain", "HTML where JSON"),
        (b"{}", "text/html; charset=utf-8", "HTML where JSON"),
        (b"  <html><body>login</body></html>", None, "HTML where JSON"),
        (b"not json", JSON, "not valid JSON"),
        (b"\xff\xfe", JSON, "not valid JSON"),
        (b"[1, 2]", JSON, "not an object"),
        (b'{"authorization_servers": ["https://a"]}', JSON, "resource: Field required"),
        (prm_json(authorization_servers=[]), JSON, "lists no authorization_servers"),
        (b'{"resource": "https://x"}', JSON, "authorization_servers"),
        (prm_json(authorization_servers=[1]), JSON, "authorization_servers.0"),
    ],
)
def test_prm_parse_errors(body: bytes, content_type: str | None, reason: str) -> None:
    with pytest.raises(DiscoveryError, match=reason) as info:
        parse_protected_resource_metadata(body, content_type, url=URL)
    assert URL in str(info.value)


def test_as_metadata_parses_extensions() -> None:
    body = as_json(
        client_id_metadata_document_supported=True,
        authorization_response_iss_parameter_supported=True,
        scopes_supported=["openid", "offline_access"],
        extra_member=True,
    )
    metadata = parse_authorization_server_metadata(body, "application/json", url=ISSUER)
    assert metadata.client_id_metadata_document_supported is True
    assert metadata.authorization_response_iss_parameter_supported is True
    assert metadata.scopes_supported == ("openid", "offline_access")
    assert (
        check_authorization_server_metadata(metadata, expected_issuer=ISSUER)
        is metadata
    )


def test_as_metadata_defaults() -> None:
    metadata = parse_authorization_server_metadata(
        b'{"issuer": "https://a"}', None, url="u"
    )
    assert metadata.client_id_metadata_document_supported is False
    assert metadata.authorization_response_iss_parameter_supported is False
    assert metadata.code_challenge_methods_supported is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{}", "issuer: Field required"),
        (b'{"issuer": "https://a", "token_endpoint": 5}', "token_endpoint"),
        (b"<html></html>", "HTML where JSON"),
    ],
)
def test_as_metadata_parse_errors(body: bytes, reason: str) -> None:
    with pytest.raises(DiscoveryError, match=reason):
        parse_authorization_server_metadata(body, JSON, url="https://a/x")


@pytest.mark.parametrize(
    ("issuer", "changes", "kwargs"),
    [
        (ISSUER, {}, {}),
        (f"{ISSUER}/tenant1", {}, {}),
        (ISSUER, {"response_types_supported": None}, {}),
        (ISSUER, {"code_challenge_methods_supported": ["plain", "S256"]}, {}),
        # AUTHZ-2 relaxation: absent list accepted only with the override
        (ISSUER, {"code_challenge_methods_supported": None},
         {"allow_missing_pkce_metadata": True}),
        # development mode
        ("http://localhost:9000", {}, {"allow_http": True}),
    ],
)  # fmt: skip
def test_check_as_metadata_accepts(
    issuer: str, changes: dict[str, Any], kwargs: dict[str, bool]
) -> None:
    metadata = as_metadata(issuer, **changes)
    check_authorization_server_metadata(
        metadata,
        expected_issuer=issuer,
        allow_missing_pkce_metadata=kwargs.get("allow_missing_pkce_metadata", False),
        allow_http=kwargs.get("allow_http", False),
    )


@pytest.mark.parametrize(
    ("published", "expected", "override"),
    [
        ("https://auth.example.com/", "https://auth.example.com", True),
        ("https://auth.example.com", "https://auth.example.com/", True),
    ],
)
def test_issuer_trailing_slash_override(
    published: str, expected: str, override: bool
) -> None:
    metadata = as_metadata(published)
    with pytest.raises(DiscoveryError, match=r"RFC 8414 §3\.3"):
        check_authorization_server_metadata(metadata, expected_issuer=expected)
    check_authorization_server_metadata(
        metadata, expected_issuer=expected, issuer_trailing_slash=override
    )


@pytest.mark.parametrize(
    ("published", "expected", "changes", "reason"),
    [
        # ASM-4: simple string comparison, no normalisation
        ("https://evil.example", ISSUER, {}, "RFC 8414 §3.3"),
        ("https://AUTH.example.com", ISSUER, {}, "RFC 8414 §3.3"),
        ("https://auth.example.com:443", ISSUER, {}, "RFC 8414 §3.3"),
        (f"{ISSUER}/t1/", f"{ISSUER}/t1", {}, "RFC 8414 §3.3"),
        # ASM-5
        ("http://auth.example.com", "http://auth.example.com", {}, "https URL"),
        (f"{ISSUER}?tenant=1", f"{ISSUER}?tenant=1", {}, "without query"),
        (f"{ISSUER}#x", f"{ISSUER}#x", {}, "without query or fragment"),
        ("auth.example.com", "auth.example.com", {}, "https URL"),
        # RFC 8414 §2 required endpoints
        (ISSUER, ISSUER, {"authorization_endpoint": None}, "authorization_endpoint is missing"),
        (ISSUER, ISSUER, {"token_endpoint": None}, "token_endpoint is missing"),
        # ASM-6: endpoints absolute https
        (ISSUER, ISSUER, {"token_endpoint": "/token"}, "token_endpoint must be"),
        (ISSUER, ISSUER, {"authorization_endpoint": "http://auth.example.com/a"},
         "authorization_endpoint must be"),
        (ISSUER, ISSUER, {"registration_endpoint": "https://u:p@auth.example.com/r"},
         "registration_endpoint must be"),
        (ISSUER, ISSUER, {"revocation_endpoint": "https://auth.example.com/r#x"},
         "revocation_endpoint must be"),
        (ISSUER, ISSUER, {"jwks_uri": "https://auth.example.com:x/jwks"}, "jwks_uri must be"),
        (ISSUER, ISSUER, {"jwks_uri": "javascript:alert(1)"}, "jwks_uri must be"),
        # ASM-7
        (ISSUER, ISSUER, {"response_types_supported": ["token"]}, "'code'"),
        # AUTHZ-2
        (ISSUER, ISSUER, {"code_challenge_methods_supported": None}, "is missing; MCP"),
        (ISSUER, ISSUER, {"code_challenge_methods_supported": ["plain"]}, "does not include S256"),
        (ISSUER, ISSUER, {"code_challenge_methods_supported": []}, "does not include S256"),
    ],
)  # fmt: skip
def test_check_as_metadata_refuses(
    published: str, expected: str, changes: dict[str, Any], reason: str
) -> None:
    metadata = as_metadata(published, **changes)
    with pytest.raises(DiscoveryError, match=reason) as info:
        check_authorization_server_metadata(
            metadata, expected_issuer=expected, url="https://m/x"
        )
    assert info.value.step == "discovery"
    assert info.value.server == "https://m/x"


def test_missing_pkce_error_names_the_override() -> None:
    metadata = as_metadata(code_challenge_methods_supported=None)
    with pytest.raises(DiscoveryError) as info:
        check_authorization_server_metadata(metadata, expected_issuer=ISSUER)
    assert info.value.hint is not None
    assert "allow missing PKCE metadata" in info.value.hint
    assert info.value.server == ISSUER


def test_override_never_accepts_a_list_without_s256() -> None:
    metadata = as_metadata(code_challenge_methods_supported=["plain"])
    with pytest.raises(DiscoveryError, match="S256"):
        check_authorization_server_metadata(
            metadata, expected_issuer=ISSUER, allow_missing_pkce_metadata=True
        )
