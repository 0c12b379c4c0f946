"""ID-JAG token exchange (RFC 8693) and the JWT bearer grant (RFC 7523 §2.1)."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from tether.errors import InvalidGrant, InvalidResponse, RemoteError
from tether.oauth.client_auth import client_auth
from tether.oauth.token_exchange import (
    ID_JAG_GRANT_PROFILE,
    ID_JAG_TOKEN_TYPE,
    ID_TOKEN_TYPE,
    JWT_BEARER_GRANT,
    TOKEN_EXCHANGE_GRANT,
    id_jag_request,
    jwt_bearer_request,
    parse_id_jag_response,
    supports_id_jag,
)

IDP = "https://idp.example/token"
AS = "https://as.example"
RESOURCE = "https://mcp.example/mcp"


def test_token_exchange_request_carries_every_required_parameter() -> None:
    post = id_jag_request(
        IDP,
        id_token=SecretStr("id.token.jwt"),
        audience=AS,
        resource=RESOURCE,
        scopes=["mcp:read", "mcp:write"],
        auth=client_auth("none", client_id="idp-client"),
    )
    assert post.url == IDP
    assert dict(post.body) == {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "requested_token_type": ID_JAG_TOKEN_TYPE,
        "subject_token": "id.token.jwt",
        "subject_token_type": ID_TOKEN_TYPE,
        "audience": AS,
        "resource": RESOURCE,
        "scope": "mcp:read mcp:write",
        "client_id": "idp-client",
    }
    assert post.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "id.token.jwt" not in repr(post)


def test_token_exchange_with_idp_secret_uses_basic() -> None:
    post = id_jag_request(
        IDP,
        id_token=SecretStr("t"),
        audience=AS,
        resource=None,
        scopes=[],
        auth=client_auth(
            "client_secret_basic", client_id="idp", client_secret=SecretStr("s")
        ),
    )
    assert post.headers["Authorization"].startswith("Basic ")
    assert "resource" not in post.body
    assert "scope" not in post.body
    assert "client_secret" not in post.body


def test_custom_params_cannot_replace_the_grant() -> None:
    post = jwt_bearer_request(
        f"{AS}/token",
        assertion=SecretStr("id-jag"),
        scopes=[],
        auth=client_auth(
            "client_secret_basic", client_id="c", client_secret=SecretStr("s")
        ),
        custom_params={"assertion": "evil", "audience": "x"},
    )
    assert post.body["assertion"] == "id-jag"
    assert post.body["grant_type"] == JWT_BEARER_GRANT
    assert post.body["audience"] == "x"


def test_jwt_bearer_request() -> None:
    post = jwt_bearer_request(
        f"{AS}/token",
        assertion=SecretStr("id-jag"),
        scopes=["mcp"],
        auth=client_auth(
            "client_secret_basic", client_id="c", client_secret=SecretStr("s")
        ),
    )
    assert dict(post.body) == {
        "grant_type": JWT_BEARER_GRANT,
        "assertion": "id-jag",
        "scope": "mcp",
        "client_id": "c",
    }


def _body(**members: object) -> bytes:
    return json.dumps(members).encode()


def test_parse_id_jag() -> None:
    grant = parse_id_jag_response(
        200,
        _body(
            access_token="jag",
            issued_token_type=ID_JAG_TOKEN_TYPE,
            token_type="N_A",
            expires_in=300,
        ),
        "application/json",
        url=IDP,
    )
    assert grant.assertion.get_secret_value() == "jag"
    assert grant.expires_in == 300


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (
            200,
            _body(
                access_token="x",
                issued_token_type="urn:ietf:params:oauth:token-type:access_token",
            ),
            InvalidResponse,
            "not an ID-JAG",
        ),
        (200, _body(access_token="x"), InvalidResponse, "no issued_token_type"),
        (
            200,
            _body(issued_token_type=ID_JAG_TOKEN_TYPE),
            InvalidResponse,
            "no access_token",
        ),
        (
            400,
            _body(error="invalid_grant", error_description="bad id token"),
            InvalidGrant,
            "bad id token",
        ),
        (200, _body(error="invalid_grant"), InvalidGrant, "invalid_grant"),
        (502, b"<html>bad gateway</html>", RemoteError, "HTTP 502"),
        (200, b"<html>login</html>", InvalidResponse, "."),
    ],
)
def test_parse_id_jag_errors(
    status: int, body: bytes, error: type[Exception], message: str
) -> None:
    ctype = "text/html" if body.startswith(b"<") else "application/json"
    with pytest.raises(error, match=message) as info:
        parse_id_jag_response(status, body, ctype, url=IDP)
    assert getattr(info.value, "step", None) == "token_exchange"


@pytest.mark.parametrize(
    ("profiles", "expected"),
    [(None, False), ((), False), (("other",), False), ((ID_JAG_GRANT_PROFILE,), True)],
)
def test_supports_id_jag(profiles: tuple[str, ...] | None, expected: bool) -> None:
    assert supports_id_jag(profiles) is expected


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [
        (300, 300),
        ("120", 120),
        (" 60 ", 60),
        (True, None),
        ("soon", None),
        (None, None),
    ],
)
def test_id_jag_lifetime_is_read_leniently(
    expires_in: object, expected: int | None
) -> None:
    grant = parse_id_jag_response(
        200,
        _body(
            access_token="jag",
            issued_token_type=ID_JAG_TOKEN_TYPE,
            token_type="N_A",
            expires_in=expires_in,
        ),
        "application/json",
        url=IDP,
    )
    assert grant.expires_in == expected


def test_jwt_bearer_request_sends_resource_when_given() -> None:
    post = jwt_bearer_request(
        f"{AS}/token",
        assertion=SecretStr("id-jag"),
        scopes=[],
        auth=client_auth("none", client_id="c"),
        resource="https://mcp.example/mcp",
    )
    assert post.body["resource"] == "https://mcp.example/mcp"
    assert "scope" not in post.body
