"""Tests for tether.oauth.revocation (REV-1 – REV-4; RFC 7009 §2.1, §2.2)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from tether.errors import (
    InvalidClient,
    OAuthError,
    RemoteError,
    TemporarilyUnavailable,
)
from tether.oauth.client_auth import client_auth
from tether.oauth.revocation import (
    check_revocation_response,
    retry_after_seconds,
    revocation_requests,
)

URL = "https://auth.example.com/revoke"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_refresh_token_first_then_access_token() -> None:
    auth = client_auth(
        "client_secret_basic", client_id="c1", client_secret=SecretStr("s")
    )
    posts = revocation_requests(
        URL, auth=auth, access_token=SecretStr("AT"), refresh_token=SecretStr("RT")
    )
    assert [dict(p.body) for p in posts] == [
        {"token": "RT", "token_type_hint": "refresh_token", "client_id": "c1"},
        {"token": "AT", "token_type_hint": "access_token", "client_id": "c1"},
    ]
    for post in posts:
        assert post.url == URL
        assert post.headers["Authorization"].startswith("Basic ")
        assert post.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert "RT" not in repr(post)


@pytest.mark.parametrize(
    ("access", "refresh", "hints"),
    [
        (SecretStr("AT"), None, ["access_token"]),
        (None, SecretStr("RT"), ["refresh_token"]),
        (SecretStr(""), SecretStr(""), []),
        (None, None, []),
    ],
)
def test_blank_tokens_are_skipped(
    access: SecretStr | None, refresh: SecretStr | None, hints: list[str]
) -> None:
    posts = revocation_requests(
        URL,
        auth=client_auth("none", client_id="c1"),
        access_token=access,
        refresh_token=refresh,
    )
    assert [p.body["token_type_hint"] for p in posts] == hints
    assert all(p.body["client_id"] == "c1" for p in posts)


@pytest.mark.parametrize(
    "body", [b"", b"<html>whatever</html>", b'{"error": "ignored"}']
)
def test_200_is_success_whatever_the_body(body: bytes) -> None:
    check_revocation_response(200, body, None, url=URL)


@pytest.mark.parametrize(
    ("status", "body", "error_class", "code"),
    [
        (400, b'{"error": "unsupported_token_type"}', OAuthError, "unsupported_token_type"),
        (401, b'{"error": "invalid_client"}', InvalidClient, "invalid_client"),
        (503, b'{"error": "temporarily_unavailable"}', TemporarilyUnavailable,
         "temporarily_unavailable"),
        (503, b"", TemporarilyUnavailable, "temporarily_unavailable"),
        (503, b"<html>down</html>", TemporarilyUnavailable, "temporarily_unavailable"),
    ],
)  # fmt: skip
def test_errors(
    status: int, body: bytes, error_class: type[OAuthError], code: str
) -> None:
    with pytest.raises(error_class) as info:
        check_revocation_response(status, body, "application/json", url=URL)
    assert info.value.error == code
    assert info.value.step == "revocation"


@pytest.mark.parametrize("status", [404, 500, 302])
def test_other_statuses(status: int) -> None:
    with pytest.raises(RemoteError, match=f"HTTP {status}") as info:
        check_revocation_response(status, b"nope", "text/plain", url=URL)
    assert not isinstance(info.value, OAuthError)
    assert info.value.details == {"status": status}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("Thu, 01 Jan 2026 12:01:30 GMT", 90.0),
        ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),  # in the past
        ("soon", None),
        ("-5", None),
        ("", None),
    ],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, now=NOW) == expected
