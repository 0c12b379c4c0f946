"""Tests for tether.oauth.authorize (AUTHZ-6, SCP-2, SCP-4, SCP-5, SCP-7, RES-1, G-23)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl, urlsplit

import pytest

from tether.errors import ConfigurationError
from tether.oauth.authorize import (
    authorization_url,
    select_scopes,
    union_scopes,
    with_offline_access,
)

from ._factories import REDIRECT

RESOURCE = "https://mcp.example.com/mcp"


@pytest.mark.parametrize(
    ("configured", "challenge", "prm", "expected"),
    [
        ("admin:a admin:b", ("c",), ("p",), ("admin:a", "admin:b")),  # override wins
        (["x", "x", "y"], (), None, ("x", "y")),
        (None, ("c1", "c2"), ("p",), ("c1", "c2")),  # SCP-2 step 1
        ("", ("c",), ("p",), ("c",)),  # blank configuration is no configuration
        (None, (), ("p1", "p2"), ("p1", "p2")),  # step 2: all of scopes_supported
        (None, (), None, ()),  # step 3: omit
        (None, (), (), ()),
    ],
)
def test_select_scopes(
    configured: str | list[str] | None,
    challenge: tuple[str, ...],
    prm: tuple[str, ...] | None,
    expected: tuple[str, ...],
) -> None:
    assert (
        select_scopes(
            configured=configured, challenge_scope=challenge, prm_scopes_supported=prm
        )
        == expected
    )


def test_union_scopes_keeps_first_seen_order() -> None:
    assert union_scopes(["a", "b"], ["b", "c", ""], ("a", "d")) == ("a", "b", "c", "d")
    assert union_scopes() == ()


@pytest.mark.parametrize(
    ("scopes", "as_scopes", "expected"),
    [
        (("a",), ("offline_access", "a"), ("a", "offline_access")),
        (("a", "offline_access"), ("offline_access",), ("a", "offline_access")),
        (("a",), ("a",), ("a",)),  # SCP-4: only when the AS lists it
        (("a",), None, ("a",)),
        ((), ("offline_access",), ()),
    ],
)
def test_with_offline_access(
    scopes: tuple[str, ...],
    as_scopes: tuple[str, ...] | None,
    expected: tuple[str, ...],
) -> None:
    assert with_offline_access(scopes, as_scopes) == expected


def build(
    endpoint: str = "https://auth.example.com/authorize",
    *,
    resource: str | None = RESOURCE,
    scopes: Sequence[str] = ("mcp",),
    custom: dict[str, str | None] | None = None,
) -> list[tuple[str, str]]:
    url = authorization_url(
        endpoint,
        client_id="client-1",
        redirect_uri=REDIRECT,
        state="st",
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        resource=resource,
        scopes=scopes,
        custom_params=custom,
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == endpoint.split("?")[0]
    assert not parts.fragment
    return parse_qsl(parts.query)


CORE = [
    ("response_type", "code"),
    ("client_id", "client-1"),
    ("redirect_uri", REDIRECT),
    ("state", "st"),
    ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
    ("code_challenge_method", "S256"),
]


def test_authorization_url_parameters_in_order() -> None:
    assert build() == [*CORE, ("resource", RESOURCE), ("scope", "mcp")]


def test_no_scope_and_no_resource() -> None:
    assert build(resource=None, scopes=()) == CORE


def test_offline_access_adds_prompt_consent() -> None:
    params = dict(build(scopes=("mcp", "offline_access")))
    assert params["scope"] == "mcp offline_access"
    assert params["prompt"] == "consent"  # SCP-5


def test_custom_params_add_override_and_remove() -> None:
    params = build(
        scopes=("mcp", "offline_access"),
        custom={"audience": "api", "prompt": None, "resource": None, "scope": "x"},
    )
    assert params == [*CORE, ("scope", "x"), ("audience", "api")]


def test_endpoint_query_is_kept_without_duplicates() -> None:
    endpoint = "https://auth.example.com/authorize?tenant=t1&client_id=old&prompt=login"
    params = build(endpoint, custom={"prompt": None})
    assert params == [("tenant", "t1"), *CORE, ("resource", RESOURCE), ("scope", "mcp")]


@pytest.mark.parametrize(
    "key",
    ["state", "code_challenge", "code_challenge_method", "redirect_uri", "client_id",
     "response_type"],
)  # fmt: skip
@pytest.mark.parametrize("value", ["evil", None])
def test_core_params_cannot_be_overridden(key: str, value: str | None) -> None:
    with pytest.raises(ConfigurationError, match=key):
        build(custom={key: value})


def test_endpoint_with_fragment_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="fragment"):
        build("https://auth.example.com/authorize#x")
