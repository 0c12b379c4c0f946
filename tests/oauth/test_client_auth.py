"""Tests for tether.oauth.client_auth (TOK-3; design-notes R3.8 table)."""

from __future__ import annotations

import base64
from urllib.parse import unquote_plus

import pytest
from pydantic import SecretStr

from tether.errors import ConfigurationError
from tether.oauth.client_auth import (
    AuthMethod,
    FormPost,
    choose_auth_method,
    client_auth,
    negotiate_auth_method,
)

ISSUER = "https://auth.example.com"


@pytest.mark.parametrize(
    ("supported", "has_secret", "expected"),
    [
        # absent or empty list
        (None, True, "client_secret_basic"),
        ([], True, "client_secret_basic"),
        (None, False, "none"),
        ([], False, "none"),
        # a list, with a secret: first of basic, post, none that is listed
        (
            ["client_secret_basic", "client_secret_post", "none"],
            True,
            "client_secret_basic",
        ),
        (
            ["none", "client_secret_post", "client_secret_basic"],
            True,
            "client_secret_basic",
        ),
        (["client_secret_post", "none"], True, "client_secret_post"),
        (["private_key_jwt", "none"], True, "none"),
        # a list, without a secret
        (["client_secret_basic", "none"], False, "none"),
        (["none"], False, "none"),
    ],
)
def test_negotiation_table(
    supported: list[str] | None, has_secret: bool, expected: AuthMethod
) -> None:
    assert (
        negotiate_auth_method(supported, has_secret=has_secret, issuer=ISSUER)
        == expected
    )


@pytest.mark.parametrize(
    ("supported", "has_secret", "reason"),
    [
        # a list, secret held, none of basic/post/none listed → unsupported methods
        (["private_key_jwt", "tls_client_auth"], True, "does not implement"),
        (["client_secret_jwt"], True, "does not implement"),
        # a list, no secret, basic or post listed but not none → secret required
        (["client_secret_basic"], False, "requires client authentication"),
        (
            ["client_secret_post", "private_key_jwt"],
            False,
            "requires client authentication",
        ),
        (["client_secret_basic", "client_secret_post"], False, "requires client auth"),
        # a list, no secret, nothing usable → unsupported methods
        (["private_key_jwt"], False, "does not implement"),
    ],
)
def test_negotiation_errors(
    supported: list[str], has_secret: bool, reason: str
) -> None:
    with pytest.raises(ConfigurationError, match=reason) as info:
        negotiate_auth_method(supported, has_secret=has_secret, issuer=ISSUER)
    assert info.value.details == {"issuer": ISSUER, "methods": ", ".join(supported)}
    assert info.value.server == ISSUER


def test_secret_required_hint() -> None:
    with pytest.raises(ConfigurationError) as info:
        negotiate_auth_method(["client_secret_basic"], has_secret=False, issuer=ISSUER)
    assert info.value.hint is not None
    assert "client secret" in info.value.hint


@pytest.mark.parametrize(
    ("override", "registered", "expected"),
    [
        ("client_secret_post", "none", "client_secret_post"),  # override wins (#11)
        (None, "client_secret_basic", "client_secret_basic"),  # registration (REG-7)
        (None, None, "none"),  # negotiated
    ],
)
def test_choose_auth_method(
    override: str | None, registered: str | None, expected: AuthMethod
) -> None:
    chosen = choose_auth_method(
        supported=["none", "client_secret_basic"],
        has_secret=False,
        issuer=ISSUER,
        override=override,
        registered=registered,
    )
    assert chosen == expected


@pytest.mark.parametrize(
    ("override", "registered"), [("private_key_jwt", None), (None, "x")]
)
def test_choose_auth_method_unimplemented(
    override: str | None, registered: str | None
) -> None:
    with pytest.raises(ConfigurationError, match="not implemented"):
        choose_auth_method(
            supported=None,
            has_secret=True,
            issuer=ISSUER,
            override=override,
            registered=registered,
        )


def test_none_sends_client_id_only() -> None:
    auth = client_auth("none", client_id="abc", client_secret=SecretStr("ignored"))
    assert auth.headers == {}
    assert auth.body == {"client_id": "abc"}


def test_post_sends_secret_in_body_only() -> None:
    auth = client_auth(
        "client_secret_post", client_id="abc", client_secret=SecretStr("s3")
    )
    assert auth.headers == {}
    assert auth.body == {"client_id": "abc", "client_secret": "s3"}


@pytest.mark.parametrize(
    ("client_id", "secret", "encoded_pair"),
    [
        ("abc", "s3cr3t", "abc:s3cr3t"),
        # RFC 6749 §2.3.1: form-urlencode id and secret before base64
        ("my client", "p@ss:w/rd+", "my+client:p%40ss%3Aw%2Frd%2B"),
        (
            "https://tether.example/cimd.json",
            "ü",
            "https%3A%2F%2Ftether.example%2Fcimd.json:%C3%BC",
        ),
    ],
)
def test_basic_is_form_encoded_and_never_duplicated(
    client_id: str, secret: str, encoded_pair: str
) -> None:
    auth = client_auth(
        "client_secret_basic", client_id=client_id, client_secret=SecretStr(secret)
    )
    scheme, _, value = auth.headers["Authorization"].partition(" ")
    decoded = base64.b64decode(value).decode()
    assert scheme == "Basic"
    assert decoded == encoded_pair
    assert [unquote_plus(p) for p in decoded.split(":")] == [client_id, secret]
    assert auth.body == {"client_id": client_id}  # RFC 6749 §2.3: never both


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
@pytest.mark.parametrize("secret", [None, SecretStr("")])
def test_secret_methods_need_a_secret(
    method: AuthMethod, secret: SecretStr | None
) -> None:
    with pytest.raises(ConfigurationError, match="needs a client secret"):
        client_auth(method, client_id="abc", client_secret=secret)


def test_reprs_mask_secrets() -> None:
    auth = client_auth(
        "client_secret_post", client_id="abc", client_secret=SecretStr("s3")
    )
    post = FormPost(url="https://a/t", body=auth.body, headers=auth.headers)
    assert "s3" not in repr(auth)
    assert "s3" not in repr(post)
    assert post.encoded_body() == b"client_id=abc&client_secret=s3"
