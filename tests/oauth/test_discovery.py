"""Tests for tether.oauth.discovery (PRM-3, PRM-4, PRM-6, ASM-2, ASM-4)."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TypeVar

import pytest

from tether.errors import DiscoveryError
from tether.oauth.discovery import (
    Fetched,
    authorization_server_discovery,
    authorization_server_metadata_urls,
    legacy_authorization_server_discovery,
    legacy_authorization_server_metadata,
    protected_resource_discovery,
    protected_resource_metadata_urls,
)

from ._factories import ISSUER, SERVER, as_json, prm_json

WK = "/.well-known/oauth-protected-resource"  # RFC 9728 §3.1, then the root fallback
AS = "/.well-known/oauth-authorization-server"
OIDC = "/.well-known/openid-configuration"
JSON = "application/json"
T = TypeVar("T")


@pytest.mark.parametrize(
    ("server_url", "header", "expected"),
    [
        ("https://a.example/mcp", None, [f"https://a.example{WK}/mcp", f"https://a.example{WK}"]),
        ("https://a.example", None, [f"https://a.example{WK}"]),
        ("https://a.example/", None, [f"https://a.example{WK}"]),
        ("https://a.example/v1/mcp/", None,
         [f"https://a.example{WK}/v1/mcp", f"https://a.example{WK}"]),
        ("https://a.example:8443/mcp?x=1#f", None,
         [f"https://a.example:8443{WK}/mcp?x=1", f"https://a.example:8443{WK}"]),
        ("https://a.example/mcp", "https://meta.example/prm",
         ["https://meta.example/prm", f"https://a.example{WK}/mcp", f"https://a.example{WK}"]),
        # a header naming a well-known URL is not fetched twice
        ("https://a.example/mcp", f"https://a.example{WK}/mcp",
         [f"https://a.example{WK}/mcp", f"https://a.example{WK}"]),
    ],
)  # fmt: skip
def test_protected_resource_metadata_urls(
    server_url: str, header: str | None, expected: list[str]
) -> None:
    assert protected_resource_metadata_urls(server_url, header) == expected


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        ("https://auth.example.com/tenant1", [
            f"https://auth.example.com{AS}/tenant1",
            f"https://auth.example.com{OIDC}/tenant1",
            f"https://auth.example.com/tenant1{OIDC}",
        ]),
        ("https://auth.example.com/tenant1/", [
            f"https://auth.example.com{AS}/tenant1",
            f"https://auth.example.com{OIDC}/tenant1",
            f"https://auth.example.com/tenant1{OIDC}",
        ]),
        ("https://auth.example.com", [
            f"https://auth.example.com{AS}", f"https://auth.example.com{OIDC}",
        ]),
        ("https://auth.example.com/", [
            f"https://auth.example.com{AS}", f"https://auth.example.com{OIDC}",
        ]),
        ("https://auth.example.com:8443/a/b", [
            f"https://auth.example.com:8443{AS}/a/b",
            f"https://auth.example.com:8443{OIDC}/a/b",
            f"https://auth.example.com:8443/a/b{OIDC}",
        ]),
    ],
)  # fmt: skip
def test_authorization_server_metadata_urls(issuer: str, expected: list[str]) -> None:
    assert authorization_server_metadata_urls(issuer) == expected


def drive(
    flow: Generator[str, Fetched, T], answers: Sequence[Fetched]
) -> tuple[list[str], T]:
    """Send ``answers`` in order; return the URLs asked for and the result."""
    asked = [next(flow)]
    for answer in answers:
        try:
            asked.append(flow.send(answer))
        except StopIteration as done:
            return asked, done.value
    raise AssertionError(f"flow still wants more after {asked}")


def ok(body: bytes, content_type: str | None = JSON) -> Fetched:
    return Fetched(status=200, content_type=content_type, body=body)


def status(code: int) -> Fetched:
    return Fetched(status=code)


PATH_WK = f"https://mcp.example.com{WK}/mcp"
ROOT_WK = f"https://mcp.example.com{WK}"


def test_prm_discovery_first_url_wins() -> None:
    asked, (url, prm) = drive(protected_resource_discovery(SERVER), [ok(prm_json())])
    assert asked == [PATH_WK] == [url]
    assert prm.resource == SERVER


@pytest.mark.parametrize(
    "miss",
    [
        status(404),
        status(401),
        status(302),
        ok(b"{}", "text/html"),
        ok(b"<html>", None),
    ],
)
def test_prm_discovery_moves_on_to_root(miss: Fetched) -> None:
    asked, (url, _) = drive(
        protected_resource_discovery(SERVER), [miss, ok(prm_json())]
    )
    assert asked == [PATH_WK, ROOT_WK]
    assert url == ROOT_WK


def test_prm_discovery_header_url_first() -> None:
    flow = protected_resource_discovery(
        SERVER, resource_metadata="https://m.example/prm"
    )
    asked, (url, _) = drive(flow, [status(404), status(404), ok(prm_json())])
    assert asked == ["https://m.example/prm", PATH_WK, ROOT_WK]
    assert url == ROOT_WK


@pytest.mark.parametrize("code", [429, 500, 502, 503])
def test_prm_discovery_stops_retryable(code: int) -> None:
    flow = protected_resource_discovery(SERVER)
    next(flow)
    with pytest.raises(DiscoveryError, match=f"HTTP {code}") as info:
        flow.send(status(code))
    assert info.value.details["retryable"] is True


def test_prm_discovery_nothing_found_lists_each_try() -> None:
    flow = protected_resource_discovery(SERVER)
    next(flow)
    flow.send(status(404))
    with pytest.raises(DiscoveryError, match="no protected resource metadata") as info:
        flow.send(ok(b"<html>", "text/html"))
    assert info.value.details == {
        "tried": [f"{PATH_WK} → HTTP 404", f"{ROOT_WK} → HTML page"],
        "retryable": False,
        "missing": True,  # "nothing there", which the legacy fallback acts on
    }


def test_prm_discovery_resource_mismatch_stops() -> None:
    flow = protected_resource_discovery(SERVER)
    next(flow)
    with pytest.raises(DiscoveryError, match=r"RFC 9728 §3\.3"):
        flow.send(ok(prm_json(resource="https://mcp.example.com")))


def test_prm_discovery_prefix_override() -> None:
    flow = protected_resource_discovery(SERVER, resource_match="prefix")
    _, (_, prm) = drive(flow, [ok(prm_json(resource="https://mcp.example.com"))])
    assert prm.resource == "https://mcp.example.com"


def test_prm_discovery_expected_resource_override() -> None:
    other = "https://asana.workers.dev/mcp"
    flow = protected_resource_discovery(SERVER, expected_resource=other)
    _, (_, prm) = drive(flow, [ok(prm_json(resource=other))])
    assert prm.resource == other


def test_prm_discovery_root_document_may_name_the_origin() -> None:
    """RFC 9728 §3.3: the root well-known URL is built from the origin, so ``resource``
    MUST be the origin there (auth/metadata-var2); the full server URL stays valid."""
    for resource in ("https://mcp.example.com", "https://mcp.example.com/", SERVER):
        flow = protected_resource_discovery(SERVER)
        _, (url, prm) = drive(flow, [status(404), ok(prm_json(resource=resource))])
        assert (url, prm.resource) == (ROOT_WK, resource)


@pytest.mark.parametrize(
    ("hint", "answers"),
    [
        # the path-inserted document is built from the server URL: origin refused
        (None, [ok(prm_json(resource="https://mcp.example.com"))]),
        # from the challenge, resource MUST be the URL requested, even at the root URL
        (ROOT_WK, [ok(prm_json(resource="https://mcp.example.com"))]),
        # another origin, or a sibling path, is never the root identifier
        (None, [status(404), ok(prm_json(resource="https://other.example"))]),
        (None, [status(404), ok(prm_json(resource="https://mcp.example.com/other"))]),
    ],
)
def test_prm_discovery_origin_only_from_the_root_url(
    hint: str | None, answers: list[Fetched]
) -> None:
    flow = protected_resource_discovery(SERVER, resource_metadata=hint)
    next(flow)
    *misses, last = answers
    for miss in misses:
        flow.send(miss)
    with pytest.raises(DiscoveryError, match=r"RFC 9728 §3\.3"):
        flow.send(last)


def test_prm_discovery_expected_resource_replaces_the_root_rule() -> None:
    flow = protected_resource_discovery(SERVER, expected_resource="https://x.example")
    next(flow)
    flow.send(status(404))
    with pytest.raises(DiscoveryError, match=r"RFC 9728 §3\.3"):
        flow.send(ok(prm_json(resource="https://mcp.example.com")))


def test_prm_discovery_invalid_json_stops() -> None:
    flow = protected_resource_discovery(SERVER)
    next(flow)
    with pytest.raises(DiscoveryError, match="not valid JSON"):
        flow.send(ok(b"{"))


TENANT = f"{ISSUER}/tenant1"


def test_as_discovery_falls_back_through_oidc() -> None:
    flow = authorization_server_discovery(TENANT)
    asked, (url, metadata) = drive(
        flow, [status(404), status(400), ok(as_json(TENANT))]
    )
    assert asked == authorization_server_metadata_urls(TENANT)
    assert url == f"{ISSUER}/tenant1{OIDC}"
    assert metadata.issuer == TENANT


def test_as_discovery_issuer_mismatch_stops() -> None:
    flow = authorization_server_discovery(ISSUER)
    next(flow)
    with pytest.raises(DiscoveryError, match=r"RFC 8414 §3\.3") as info:
        flow.send(ok(as_json("https://evil.example")))
    assert info.value.server == f"{ISSUER}{AS}"


def test_as_discovery_passes_relaxations() -> None:
    flow = authorization_server_discovery(
        "http://localhost:9000/",
        allow_missing_pkce_metadata=True,
        allow_http=True,
        issuer_trailing_slash=True,
    )
    body = as_json("http://localhost:9000", code_challenge_methods_supported=None)
    _, (_, metadata) = drive(flow, [ok(body)])
    assert metadata.issuer == "http://localhost:9000"


def test_as_discovery_nothing_found() -> None:
    flow = authorization_server_discovery(ISSUER)
    next(flow)
    flow.send(status(404))
    with pytest.raises(DiscoveryError, match=f"metadata for {ISSUER}"):
        flow.send(status(404))


def test_as_discovery_retryable() -> None:
    flow = authorization_server_discovery(ISSUER)
    next(flow)
    with pytest.raises(DiscoveryError) as info:
        flow.send(status(504))
    assert info.value.details["retryable"] is True


def test_fetched_masks_body() -> None:
    assert "secret" not in repr(Fetched(status=200, body=b"secret"))


@pytest.mark.parametrize(
    "url",
    ["https://a.example", "https://a.example/mcp", "https://a.example:8443/v1/mcp"],
)
def test_url_orders_agree_with_the_sdk(url: str) -> None:
    """Cross-check against the MCP SDK's pure helpers (design-notes D6)."""
    from mcp.client.auth import utils as sdk

    assert authorization_server_metadata_urls(url) == (
        sdk.build_oauth_authorization_server_metadata_discovery_urls(url, url)
    )
    assert protected_resource_metadata_urls(url) == (
        sdk.build_protected_resource_metadata_discovery_urls(None, url)
    )


LEGACY = "http://localhost:3000"


def test_legacy_metadata_is_the_2025_03_26_default() -> None:
    """MCP 2025-03-26 §2.3.3: origin as issuer, /authorize, /token, /register."""
    metadata = legacy_authorization_server_metadata(f"{LEGACY}/v1/mcp?x=1")
    assert metadata.issuer == LEGACY
    assert metadata.authorization_endpoint == f"{LEGACY}/authorize"
    assert metadata.token_endpoint == f"{LEGACY}/token"
    assert metadata.registration_endpoint == f"{LEGACY}/register"
    assert tuple(metadata.code_challenge_methods_supported or ()) == ("S256",)


def test_legacy_discovery_defaults_when_nothing_answers() -> None:
    flow = legacy_authorization_server_discovery(f"{LEGACY}/mcp", allow_http=True)
    asked, (url, metadata) = drive(flow, [status(404), status(404)])
    assert asked == [f"{LEGACY}{AS}", f"{LEGACY}{OIDC}"]
    assert url == ""
    assert metadata.token_endpoint == f"{LEGACY}/token"


def test_legacy_discovery_uses_the_origins_metadata() -> None:
    flow = legacy_authorization_server_discovery(f"{LEGACY}/mcp", allow_http=True)
    body = as_json(LEGACY, token_endpoint=f"{LEGACY}/oauth/token")
    _, (url, metadata) = drive(flow, [ok(body)])
    assert url == f"{LEGACY}{AS}"
    assert metadata.token_endpoint == f"{LEGACY}/oauth/token"


def test_legacy_discovery_still_refuses_a_wrong_issuer() -> None:
    """auth/2025-03-26-oauth-metadata-backcompat (0.1.16): issuer <root>/oauth at the
    root well-known URL. ASM-4 has no legacy exception; defaults are not used either."""
    flow = legacy_authorization_server_discovery(f"{LEGACY}/mcp", allow_http=True)
    next(flow)
    with pytest.raises(DiscoveryError, match=r"RFC 8414 §3\.3"):
        flow.send(ok(as_json(f"{LEGACY}/oauth")))


def test_legacy_discovery_refuses_http_outside_development() -> None:
    flow = legacy_authorization_server_discovery("http://mcp.example.com/mcp")
    next(flow)
    flow.send(status(404))
    with pytest.raises(DiscoveryError, match="https"):
        flow.send(status(404))
