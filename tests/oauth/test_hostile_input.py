"""Regression tests: hostile answers end as a TetherError, never a raw exception.

Each case was reproduced as a ``RecursionError``, ``OverflowError``, ``TypeError`` or
``ValueError`` escaping from ``oauth/`` (issue 11 item 6), or as a token stored with
CR/LF or 1 MB in it (item 8). The property tests in ``tests/fuzz`` hunt for the rest.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tether.errors import (
    DiscoveryError,
    InvalidGrant,
    InvalidResponse,
    OAuthError,
    clean_text,
)
from tether.oauth._wire import MAX_JSON_DEPTH, JSONTooDeep, load_json
from tether.oauth.discovery import (
    authorization_server_discovery,
    authorization_server_metadata_urls,
    protected_resource_metadata_urls,
)
from tether.oauth.models import (
    parse_authorization_server_metadata,
    parse_protected_resource_metadata,
)
from tether.oauth.registration import parse_registration_response
from tether.oauth.resource import check_resource
from tether.oauth.revocation import MAX_RETRY_AFTER, retry_after_seconds
from tether.oauth.token_exchange import ID_JAG_TOKEN_TYPE, parse_id_jag_response
from tether.oauth.tokens import (
    MAX_EXPIRES_IN,
    MAX_TOKEN_LENGTH,
    TokenSet,
    parse_token_response,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
URL = "https://auth.example.com/token"
JSON = "application/json"
ESC = "\x1b]0;owned\x07\x1b[2J\x1b[31m"


def deep(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


def token(members: dict[str, Any] | bytes, status: int = 200) -> TokenSet:
    body = members if isinstance(members, bytes) else json.dumps(members).encode()
    return parse_token_response(status, body, JSON, now=NOW, url=URL)


# --------------------------------------------------------------------- JSON depth


def test_load_json_counts_only_brackets_outside_strings() -> None:
    text = '{"a": ["[[[{{{", "\\"]]]"], "b": {}}'
    assert load_json(text) == {"a": ["[[[{{{", '"]]]'], "b": {}}
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert load_json(nested.encode()) is not None


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 1_000, 100_000])
def test_load_json_refuses_deep_nesting_as_a_value_error(levels: int) -> None:
    with pytest.raises(JSONTooDeep):
        load_json("[" * levels + "]" * levels)


def test_load_json_leaves_an_unterminated_string_to_the_parser() -> None:
    # '"' then 300,000 escaped quotes: linear to scan, refused by json.loads.
    with pytest.raises(ValueError, match="Unterminated string"):
        load_json('["' + '\\"' * 300_000)


@pytest.mark.parametrize("levels", [1_000, 100_000])
def test_deep_token_response_is_invalid_response(levels: int) -> None:
    with pytest.raises(InvalidResponse, match="nested deeper than 64"):
        token(deep(levels))


@pytest.mark.parametrize(
    "parse", [parse_protected_resource_metadata, parse_authorization_server_metadata]
)
def test_deep_metadata_is_a_discovery_error(parse: Any) -> None:
    with pytest.raises(DiscoveryError, match="nested deeper than 64"):
        parse(deep(1_000), JSON, url="https://mcp.example.com/.well-known/x")


def test_metadata_with_hostile_member_names_has_a_clean_message() -> None:
    body = json.dumps({"resource": 5, ESC + "x": 1}).encode()
    with pytest.raises(DiscoveryError) as caught:
        parse_protected_resource_metadata(body, JSON, url="https://m.example/prm")
    assert "\x1b" not in str(caught.value)


# --------------------------------------------------------------------- expires_in


@pytest.mark.parametrize(
    ("expires_in", "seconds"),
    [
        (3600, 3600),
        ("3600", 3600),
        (" 3600 ", 3600),
        (3600.0, 3600),
        (0, 0),
        ("000", 0),
        (10**12, MAX_EXPIRES_IN),
        (1e17, MAX_EXPIRES_IN),
        (1.7976931348623157e308, MAX_EXPIRES_IN),
        ("99999999999999999999", MAX_EXPIRES_IN),
        ("9" * 5000, MAX_EXPIRES_IN),  # int() refuses more than 4300 digits
        ("000000000000000000003600", 3600),
        (MAX_EXPIRES_IN + 1, MAX_EXPIRES_IN),
    ],
)
def test_expires_in_is_clamped_to_a_year(expires_in: Any, seconds: int) -> None:
    tokens = token({"access_token": "a", "expires_in": expires_in})
    assert tokens.expires_at == NOW + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"access_token": "a", "expires_in": 1e309}', "not a finite number"),
        (b'{"access_token": "a", "expires_in": -1e309}', "not a finite number"),
        (b'{"access_token": "a", "expires_in": NaN}', "not a finite number"),
        (b'{"access_token": "a", "expires_in": -1}', "negative"),
        (b'{"access_token": "a", "expires_in": -1e17}', "negative"),
        (b'{"access_token": "a", "expires_in": "-1"}', "non-numeric"),
        (b'{"access_token": "a", "expires_in": "\xc2\xb2"}', "non-numeric"),
        (b'{"access_token": "a", "expires_in": "3600.5"}', "non-numeric"),
        (b'{"access_token": "a", "expires_in": 3600.5}', "not a whole number"),
        (b'{"access_token": "a", "expires_in": {"s": 1}}', "non-numeric"),
    ],
)
def test_nonsense_expires_in_is_refused(body: bytes, why: str) -> None:
    with pytest.raises(InvalidResponse, match=why):
        token(body)


# --------------------------------------------------------------------- token syntax


@pytest.mark.parametrize(
    "value",
    [
        "abc\r\nX-Injected: 1",
        "abc\n",
        "abc def",
        "t\u00f6ken",
        "abc\x00",
        "abc\x7f",
        "x" * (MAX_TOKEN_LENGTH + 1),
        "x" * 1_000_000,
    ],
)
@pytest.mark.parametrize("member", ["access_token", "refresh_token"])
def test_unusable_tokens_are_refused_without_quoting_them(
    value: str, member: str
) -> None:
    members = {"access_token": "good", member: value}
    with pytest.raises(InvalidResponse, match=member) as caught:
        token(members)
    shown = str(caught.value) + json.dumps(caught.value.to_dict())
    assert value not in shown
    assert "abc" not in shown


@pytest.mark.parametrize(
    "value",
    [
        "x" * MAX_TOKEN_LENGTH,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",  # JWT: b64token
        "00Dxx0000001gPL!AR8AQJXg5oj8jXSgxJfA0lBog",  # Salesforce: '!' is VSCHAR
        "gho_16C7e42F292c6912E7710c838347Ae178B4a",
        "a+b/c=~_-.==",
    ],
)
def test_real_world_tokens_are_accepted(value: str) -> None:
    tokens = token({"access_token": value, "refresh_token": value})
    assert tokens.access_token.get_secret_value() == value
    assert tokens.refresh_token is not None
    assert tokens.refresh_token.get_secret_value() == value


# --------------------------------------------------------------------- error members


def test_slack_style_error_at_http_200_is_an_oauth_error() -> None:
    body = {"ok": False, "error": "invalid_refresh_token", "error_description": "gone"}
    with pytest.raises(OAuthError) as caught:
        token(body, status=200)
    assert type(caught.value) is OAuthError
    assert caught.value.error == "invalid_refresh_token"
    assert caught.value.error_description == "gone"
    assert caught.value.details["error"] == "invalid_refresh_token"


@pytest.mark.parametrize("status", [200, 400, 401, 500])
def test_standard_error_code_keeps_its_class_at_any_status(status: int) -> None:
    with pytest.raises(InvalidGrant) as caught:
        token({"error": "invalid_grant", "access_token": "a"}, status=status)
    assert caught.value.error == "invalid_grant"


def test_error_text_is_cleaned_and_bounded() -> None:
    body = {
        "error": ESC + "invalid_grant\r\n",
        "error_description": ESC + "bad\nthing " + "z" * 10_000,
        "error_uri": "https://as.example/e" + ESC,
    }
    with pytest.raises(InvalidGrant) as caught:
        token(body, status=400)
    error = caught.value
    assert error.error == "invalid_grant"
    assert error.error_description is not None
    assert error.error_description.startswith("bad thing zzz")
    assert len(error.error_description) <= 500
    assert error.error_uri == "https://as.example/e"
    for text in (str(error), json.dumps(error.to_dict())):
        assert "\x1b" not in text
        assert "\\u001b" not in text


def test_an_error_that_cleans_to_nothing_is_unknown_error() -> None:
    with pytest.raises(OAuthError) as caught:
        token({"error": "\x1b[0m", "error_description": "\x07"}, status=400)
    assert caught.value.error == "unknown_error"
    assert caught.value.error_description is None


# --------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        ("Thu, 01 Jan 2026 12:00:10 -0000", 10.0),  # obsolete zone: read as UTC
        ("Thu, 01 Jan 2026 12:00:10 GMT", 10.0),
        ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),
        ("99999999999999999999", MAX_RETRY_AFTER),
        ("100000", MAX_RETRY_AFTER),
        ("Fri, 01 Jan 9999 00:00:00 GMT", MAX_RETRY_AFTER),
    ],
)
def test_retry_after_is_a_bounded_number(value: str, seconds: float) -> None:
    assert retry_after_seconds(value, now=NOW) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "\u00b2",
        "\u0663",
        "-5",
        "1.5",
        "",
        "soon",
        "Thu, 01 Jan 99999 00:00:10 GMT",
        "x" * 10_000,
    ],
)
def test_unparseable_retry_after_means_no_retry(value: str) -> None:
    assert retry_after_seconds(value, now=NOW) is None


# --------------------------------------------------------------------- resource


@pytest.mark.parametrize("match", ["exact", "prefix"])
@pytest.mark.parametrize("published", ["http://x[abc]/mcp", "https://[::1/mcp"])
def test_unsplittable_prm_resource_is_a_discovery_error(
    published: str, match: Any
) -> None:
    with pytest.raises(DiscoveryError, match="not a valid URL") as caught:
        check_resource(published, "https://mcp.example.com/mcp", match=match)
    assert caught.value.step == "discovery"


def test_resource_mismatch_message_is_clean() -> None:
    with pytest.raises(DiscoveryError) as caught:
        check_resource("https://evil.example/" + ESC, "https://mcp.example.com/mcp")
    assert "\x1b" not in caught.value.message


# --------------------------------------------------------------------- others


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [
        (10**20, MAX_EXPIRES_IN),
        (-(10**20), 0),
        ("99999999999999999999", MAX_EXPIRES_IN),
        ("\u00b2", None),
        ("60", 60),
    ],
)
def test_id_jag_lifetime_is_bounded(expires_in: Any, expected: int | None) -> None:
    body = json.dumps(
        {
            "access_token": "jag",
            "issued_token_type": ID_JAG_TOKEN_TYPE,
            "token_type": "N_A",
            "expires_in": expires_in,
        }
    ).encode()
    grant = parse_id_jag_response(200, body, JSON, url="https://idp.example/token")
    assert grant.expires_in == expected


@pytest.mark.parametrize("epoch", [10**20, -(10**20)])
def test_registration_with_an_impossible_secret_expiry_never_expires(
    epoch: int,
) -> None:
    body = json.dumps(
        {
            "client_id": "c1",
            "client_secret": "s",
            "token_endpoint_auth_method": "client_secret_post",
            "client_secret_expires_at": epoch,
            "client_id_issued_at": epoch,
        }
    ).encode()
    client = parse_registration_response(
        201,
        body,
        JSON,
        url="https://as.example/register",
        redirect_uri="http://127.0.0.1:8470/callback",
        requested_auth_method="client_secret_post",
    )
    assert client.client_secret_expires_at is None
    assert client.client_id_issued_at is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b]8;;https://evil.example\x07link\x1b]8;;\x07", "link"),
        ("\x1b]0;title\x1b\\after", "after"),
        ("\x9b31mC1\x9b0m", "C1"),
        ("a\rb", "ab"),
        ("a\n\tb", "a b"),
        ("bidi\u202egnp.exe", "bidignp.exe"),
        ("zero\u200bwidth", "zerowidth"),
        ("\x1bPdcs\x1b\\x", "x"),
        ("\x1b[", ""),
        ("\x1b]unterminated osc", ""),
        (42, "42"),
    ],
)
def test_clean_text(text: Any, expected: str) -> None:
    assert clean_text(text) == expected


def test_clean_text_bounds_and_keeps_newlines_when_asked() -> None:
    assert clean_text("x" * 1000, limit=10) == "x" * 9 + "…"
    assert clean_text("a\n\tb\r\n", keep_newlines=True) == "a\n\tb\n"
    assert clean_text("abc", limit=0) == "…"


@pytest.mark.parametrize("issuer", ["http://x[abc]", "https://[::1/tenant"])
def test_unsplittable_issuer_is_a_discovery_error(issuer: str) -> None:
    with pytest.raises(DiscoveryError, match="not a valid URL"):
        authorization_server_metadata_urls(issuer)
    flow = authorization_server_discovery(issuer)
    with pytest.raises(DiscoveryError, match="not a valid URL"):
        next(flow)


def test_unsplittable_server_url_is_a_discovery_error() -> None:
    with pytest.raises(DiscoveryError, match="not a valid URL"):
        protected_resource_metadata_urls("http://x[abc]/mcp")
