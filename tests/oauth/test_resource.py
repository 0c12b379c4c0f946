"""Tests for tether.oauth.resource (RES-3, RES-4, PRM-6)."""

from __future__ import annotations

import pytest

from tether.errors import DiscoveryError, ValidationFailed
from tether.oauth.resource import ResourceMatch, canonical_resource, check_resource


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp"),
        ("HTTPS://MCP.Example.COM/MCP", "https://mcp.example.com/MCP"),
        ("https://mcp.example.com", "https://mcp.example.com"),
        ("https://mcp.example.com/", "https://mcp.example.com"),  # lone root dropped
        ("https://mcp.example.com/mcp/", "https://mcp.example.com/mcp/"),  # kept
        ("https://mcp.example.com:8443", "https://mcp.example.com:8443"),
        ("https://mcp.example.com:443/mcp", "https://mcp.example.com:443/mcp"),
        ("https://mcp.example.com/mcp#frag", "https://mcp.example.com/mcp"),
        ("https://mcp.example.com/mcp?t=1", "https://mcp.example.com/mcp?t=1"),
        (
            "  https://mcp.example.com/server/mcp \n",
            "https://mcp.example.com/server/mcp",
        ),
        ("http://[::1]:8080/mcp", "http://[::1]:8080/mcp"),
    ],
)
def test_canonical_resource(url: str, expected: str) -> None:
    assert canonical_resource(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mcp.example.com", "absolute"),
        ("ftp://mcp.example.com/x", "absolute"),
        ("https:///path", "no host"),
        ("https://user:pw@mcp.example.com/", "user name"),
        ("https://mcp.example.com:99999/", "parsed"),
        ("https://[::1/", "parsed"),
    ],
)
def test_canonical_resource_refuses(url: str, reason: str) -> None:
    with pytest.raises(ValidationFailed, match=reason) as info:
        canonical_resource(url)
    assert "url" in info.value.details["fields"]


@pytest.mark.parametrize(
    ("published", "expected", "match"),
    [
        ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp", "exact"),
        ("https://mcp.example.com/", "https://mcp.example.com", "exact"),
        ("https://mcp.example.com", "https://mcp.example.com/", "exact"),
        ("https://mcp.example.com", "https://mcp.example.com/v1/mcp", "prefix"),
        ("https://mcp.example.com/v1", "https://mcp.example.com/v1/mcp", "prefix"),
        ("https://mcp.example.com/v1/", "https://mcp.example.com/v1/mcp", "prefix"),
        ("https://MCP.example.com/v1", "https://mcp.example.com/v1/mcp", "prefix"),
    ],
)
def test_check_resource_accepts(
    published: str, expected: str, match: ResourceMatch
) -> None:
    check_resource(published, expected, match=match)


@pytest.mark.parametrize(
    ("published", "expected", "match"),
    [
        # PRM-6: exact by default, raw string comparison
        ("https://mcp.example.com", "https://mcp.example.com/mcp", "exact"),
        ("https://mcp.example.com/mcp/", "https://mcp.example.com/mcp", "exact"),
        ("https://MCP.example.com/mcp", "https://mcp.example.com/mcp", "exact"),
        ("https://mcp.example.com:443/mcp", "https://mcp.example.com/mcp", "exact"),
        ("https://other.example/mcp", "https://mcp.example.com/mcp", "exact"),
        # prefix override: same origin and a parent path only
        ("https://other.example", "https://mcp.example.com/mcp", "prefix"),
        ("http://mcp.example.com", "https://mcp.example.com/mcp", "prefix"),
        ("https://mcp.example.com/v1", "https://mcp.example.com/v10/mcp", "prefix"),
        ("https://mcp.example.com/v1?x=1", "https://mcp.example.com/v1/mcp", "prefix"),
        ("https://mcp.example.com/a/b", "https://mcp.example.com/a", "prefix"),
    ],
)
def test_check_resource_refuses(
    published: str, expected: str, match: ResourceMatch
) -> None:
    with pytest.raises(DiscoveryError, match=r"RFC 9728 §3\.3") as info:
        check_resource(published, expected, match=match, metadata_url="https://m/x")
    assert info.value.server == "https://m/x"
    assert info.value.details["resource"] == published
