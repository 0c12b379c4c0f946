"""Tests for tether.oauth.tokens (TOK-1, TOK-4, TOK-5, RFR-3, RFR-4, RFR-7, SCP-12, G-11)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from tether.errors import (
    ConfigurationError,
    InvalidClient,
    InvalidGrant,
    InvalidResponse,
    InvalidTarget,
    OAuthError,
    RemoteError,
    TemporarilyUnavailable,
    UsageError,
)
from tether.oauth.client_auth import client_auth
from tether.oauth.tokens import (
    TokenSet,
    authorization_code_request,
    client_credentials_request,
    merge_refreshed,
    parse_token_response,
    refresh_request,
    require_refresh_token,
)

from ._factories import REDIRECT

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TOKEN_URL = "https://auth.example.com/token"
RESOURCE = "https://mcp.example.com/mcp"
PUBLIC = client_auth("none", client_id="c1")
BASIC = client_auth("client_secret_basic", client_id="c1", client_secret=SecretStr("s"))
POST = client_auth("client_secret_post", client_id="c1", client_secret=SecretStr("s"))
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def test_code_exchange_body() -> None:
    post = authorization_code_request(
        TOKEN_URL,
        code="the-code",
        code_verifier="v" * 43,
        redirect_uri=REDIRECT,
        resource=RESOURCE,
        auth=PUBLIC,
    )
    assert post.url == TOKEN_URL
    assert dict(post.body) == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": REDIRECT,
        "code_verifier": "v" * 43,
        "resource": RESOURCE,
        "client_id": "c1",
    }
    assert post.headers["Accept"] == "application/json"
    assert post.headers["Content-Type"] == FORM
    assert "Authorization" not in post.headers
    assert "the-code" not in repr(post)


def test_code_exchange_with_basic_auth_and_custom_params() -> None:
    post = authorization_code_request(
        TOKEN_URL,
        code="c",
        code_verifier="v" * 43,
        redirect_uri=REDIRECT,
        resource=RESOURCE,
        auth=BASIC,
        custom_params={"resource": None, "audience": "api"},
    )
    assert "resource" not in post.body
    assert post.body["audience"] == "api"
    assert post.headers["Authorization"].startswith("Basic ")
    assert "client_secret" not in post.body


@pytest.mark.parametrize(
    "key",
    ["grant_type", "code", "code_verifier", "refresh_token", "redirect_uri",
     "client_id", "client_secret"],
)  # fmt: skip
@pytest.mark.parametrize("value", ["x", None])
def test_token_params_cannot_touch_protected_keys(key: str, value: str | None) -> None:
    with pytest.raises(ConfigurationError, match=key):
        authorization_code_request(
            TOKEN_URL,
            code="c",
            code_verifier="v" * 43,
            redirect_uri=REDIRECT,
            resource=None,
            auth=PUBLIC,
            custom_params={key: value},
        )
    with pytest.raises(ConfigurationError, match=key):
        refresh_request(
            TOKEN_URL,
            refresh_token=SecretStr("r"),
            resource=None,
            auth=PUBLIC,
            custom_params={key: value},
        )


def test_refresh_body_has_resource_and_no_scope() -> None:
    post = refresh_request(
        TOKEN_URL, refresh_token=SecretStr("rt"), resource=RESOURCE, auth=POST
    )
    assert dict(post.body) == {
        "grant_type": "refresh_token",
        "refresh_token": "rt",
        "resource": RESOURCE,
        "client_id": "c1",
        "client_secret": "s",
    }


def test_refresh_may_narrow_scope() -> None:
    post = refresh_request(
        TOKEN_URL,
        refresh_token=SecretStr("rt"),
        resource=RESOURCE,
        auth=PUBLIC,
        narrow_to=["a"],
        granted_scopes=["a", "b"],
    )
    assert post.body["scope"] == "a"


def test_refresh_cannot_widen_scope() -> None:
    with pytest.raises(UsageError, match="cannot add scopes \\(c\\)"):
        refresh_request(
            TOKEN_URL,
            refresh_token=SecretStr("rt"),
            resource=RESOURCE,
            auth=PUBLIC,
            narrow_to=["a", "c"],
            granted_scopes=["a", "b"],
        )


def test_client_credentials_body() -> None:
    post = client_credentials_request(
        TOKEN_URL, resource=RESOURCE, scopes=["a", "b"], auth=POST
    )
    assert dict(post.body) == {
        "grant_type": "client_credentials",
        "scope": "a b",
        "resource": RESOURCE,
        "client_id": "c1",
        "client_secret": "s",
    }
    post = client_credentials_request(TOKEN_URL, resource=None, scopes=(), auth=BASIC)
    assert dict(post.body) == {"grant_type": "client_credentials", "client_id": "c1"}


def test_client_credentials_needs_client_auth() -> None:
    with pytest.raises(ConfigurationError, match="needs client authentication"):
        client_credentials_request(TOKEN_URL, resource=None, scopes=(), auth=PUBLIC)


def parse(
    body: dict[str, Any] | bytes,
    *,
    status: int = 200,
    content_type: str | None = JSON,
    requested: tuple[str, ...] = (),
) -> TokenSet:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_token_response(
        status, raw, content_type, now=NOW, url=TOKEN_URL, requested_scopes=requested
    )


def test_parse_full_json_response() -> None:
    tokens = parse(
        {
            "access_token": "AT-VALUE",
            "token_type": "bearer",
            "expires_in": 3600,
            "refresh_token": "RT-VALUE",
            "scope": "a b",
            "id_token": "ignored",
        }
    )
    assert tokens.access_token.get_secret_value() == "AT-VALUE"
    assert tokens.refresh_token is not None
    assert tokens.refresh_token.get_secret_value() == "RT-VALUE"
    assert tokens.token_type == "Bearer"
    assert tokens.expires_at == NOW + timedelta(hours=1)
    assert tokens.scopes == ("a", "b")
    assert "AT-VALUE" not in repr(tokens)
    assert "RT-VALUE" not in repr(tokens)


def test_parse_form_encoded_response() -> None:
    body = b"access_token=gho_x&token_type=bearer&scope=repo%2Cuser&expires_in=28800"
    tokens = parse(body, content_type=f"{FORM}; charset=utf-8")
    assert tokens.access_token.get_secret_value() == "gho_x"
    assert tokens.scopes == ("repo,user",)
    assert tokens.expires_at == NOW + timedelta(hours=8)


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ({"token_type": "Bearer"}, "Bearer"),
        ({"token_type": "BEARER"}, "Bearer"),
        ({}, "Bearer"),  # absent: the reference's default
    ],
)
def test_token_type(members: dict[str, Any], expected: str) -> None:
    assert parse({"access_token": "a", **members}).token_type == expected


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [
        (0, NOW),
        ("120", NOW + timedelta(seconds=120)),
        (" 60 ", NOW + timedelta(seconds=60)),
        (30.0, NOW + timedelta(seconds=30)),
        (None, None),
        ("", None),
    ],
)
def test_expires_in(expires_in: Any, expected: datetime | None) -> None:
    assert parse({"access_token": "a", "expires_in": expires_in}).expires_at == expected


@pytest.mark.parametrize(
    ("scope", "requested", "expected"),
    [
        (None, ("a", "b"), ("a", "b")),  # SCP-12: absent → as requested
        ("", ("a",), ()),
        ("x  y", ("a",), ("x", "y")),
    ],
)
def test_granted_scopes(
    scope: str | None, requested: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    members: dict[str, Any] = {"access_token": "a"}
    if scope is not None:
        members["scope"] = scope
    assert parse(members, requested=requested).scopes == expected


def test_empty_refresh_token_is_none() -> None:
    assert parse({"access_token": "a", "refresh_token": ""}).refresh_token is None


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        ({"token_type": "Bearer"}, JSON, "no access_token"),
        ({"access_token": ""}, JSON, "no access_token"),
        ({"access_token": 5}, JSON, "no access_token"),
        ({"access_token": "a", "token_type": "DPoP"}, JSON, "carried no proof"),
        ({"access_token": "a", "token_type": "mac"}, JSON, "other than Bearer"),
        ({"access_token": "a", "token_type": 1}, JSON, "other than Bearer"),
        ({"access_token": "a", "expires_in": -1}, JSON, "negative expires_in"),
        ({"access_token": "a", "expires_in": "soon"}, JSON, "non-numeric"),
        ({"access_token": "a", "expires_in": True}, JSON, "non-numeric"),
        ({"access_token": "a", "expires_in": 1.5}, JSON, "non-numeric"),
        ({"access_token": "a", "expires_in": [1]}, JSON, "non-numeric"),
        ({"access_token": "a", "scope": ["a"]}, JSON, "scope that is not a string"),
        (b"<!DOCTYPE html><p>Sign in</p>", "text/html", "HTML where JSON"),
        (b"garbage", JSON, "not valid JSON"),
        (b"garbage", None, "not valid JSON"),
        (b'"string"', JSON, "not an object"),
        (b"a=1&&b", FORM, "form body that cannot be decoded"),
        (b"\xff=1", FORM, "form body that cannot be decoded"),
    ],
)
def test_invalid_responses(
    body: dict[str, Any] | bytes, content_type: str, reason: str
) -> None:
    with pytest.raises(InvalidResponse, match=reason) as info:
        parse(body, content_type=content_type)
    assert info.value.server == TOKEN_URL


@pytest.mark.parametrize(
    ("status", "body", "content_type", "error_class"),
    [
        # TOK-4: an error member is an error even with HTTP 200 (Slack)
        (200, {"error": "invalid_grant"}, JSON, InvalidGrant),
        (200, b"error=invalid_client&error_description=bad", FORM, InvalidClient),
        (
            400,
            {"error": "invalid_grant", "error_description": "expired"},
            JSON,
            InvalidGrant,
        ),
        (401, {"error": "invalid_client"}, JSON, InvalidClient),
        (400, {"error": "invalid_target"}, JSON, InvalidTarget),
        (503, {"error": "temporarily_unavailable"}, JSON, TemporarilyUnavailable),
        (400, {"error": "vendor_specific"}, JSON, OAuthError),
    ],
)
def test_oauth_errors(
    status: int,
    body: dict[str, Any] | bytes,
    content_type: str,
    error_class: type[OAuthError],
) -> None:
    with pytest.raises(error_class) as info:
        parse(body, status=status, content_type=content_type)
    assert info.value.step == "token"
    assert info.value.server == TOKEN_URL


def test_oauth_error_fields() -> None:
    body = {
        "error": "invalid_grant",
        "error_description": "expired",
        "error_uri": "https://e",
    }
    with pytest.raises(InvalidGrant) as info:
        parse(body, status=400)
    assert (info.value.error_description, info.value.error_uri) == (
        "expired",
        "https://e",
    )


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (500, b"<html>oops</html>", "text/html"),
        (502, b"", None),
        (429, b"slow down", "text/plain"),
        (404, {"message": "not found"}, JSON),
    ],
)
def test_non_2xx_without_oauth_error(
    status: int, body: dict[str, Any] | bytes, content_type: str | None
) -> None:
    with pytest.raises(RemoteError, match=f"HTTP {status}") as info:
        parse(body, status=status, content_type=content_type)
    assert not isinstance(info.value, (OAuthError, InvalidResponse))
    assert info.value.details == {"status": status}


def test_merge_refreshed_keeps_current_refresh_token() -> None:
    new = parse({"access_token": "a2"})
    merged = merge_refreshed(new, current_refresh_token=SecretStr("r1"))
    assert merged.refresh_token is not None
    assert merged.refresh_token.get_secret_value() == "r1"
    assert merged.access_token.get_secret_value() == "a2"


def test_merge_refreshed_takes_a_rotated_token() -> None:
    new = parse({"access_token": "a2", "refresh_token": "r2"})
    merged = merge_refreshed(new, current_refresh_token=SecretStr("r1"))
    assert merged is new


def test_merge_refreshed_without_any_refresh_token() -> None:
    new = parse({"access_token": "a2"})
    assert merge_refreshed(new, current_refresh_token=None).refresh_token is None


def test_require_refresh_token() -> None:
    without = parse({"access_token": "a"})
    with_rt = parse({"access_token": "a", "refresh_token": "r"})
    assert require_refresh_token(without, required=False) is without
    assert require_refresh_token(with_rt, required=True) is with_rt
    with pytest.raises(ConfigurationError, match="granted no refresh token") as info:
        require_refresh_token(without, required=True)
    assert info.value.hint is not None
    assert "offline_access" in info.value.hint
