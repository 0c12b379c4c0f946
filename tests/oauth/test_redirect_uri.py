"""Tether's redirect URI (RFC 6749 §3.1.2, RFC 8252 §7.3, RFC 9700 §4.1)."""

from __future__ import annotations

import pytest

from tether.errors import ConfigurationError
from tether.oauth.redirect_uri import check_redirect_uri, is_loopback_host


@pytest.mark.parametrize(
    "uri",
    [
        "https://tether.example/oauth/callback",
        "HTTPS://tether.example:8443/oauth/callback?tenant=a",
        "https://10.0.0.5/cb",  # https anywhere: the AS decides what it accepts
        "http://127.0.0.1:8470/oauth/callback",
        "http://127.5.6.7/cb",
        "http://[::1]:8470/oauth/callback",
        "http://localhost:8470/oauth/callback",
        "http://LOCALHOST/cb",
    ],
)
def test_accepted(uri: str) -> None:
    assert check_redirect_uri(uri) == uri


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("javascript:alert(1)", "only https"),
        ("JavaScript://tether.example/%0aalert(1)", "only https"),
        ("data:text/html,<script>", "only https"),
        ("ftp://tether.example/cb", "only https"),
        ("/oauth/callback", "only https"),  # relative
        ("tether.example/oauth/callback", "only https"),
        ("http://evil.example/", "only on a loopback host"),
        ("http://tether.example/oauth/callback", "only on a loopback host"),
        ("http://10.0.0.5/cb", "only on a loopback host"),
        ("http://[::ffff:127.0.0.1]/cb", "only on a loopback host"),
        ("http://127.1/cb", "only on a loopback host"),  # legacy spelling
        ("http://localhost.evil.example/cb", "only on a loopback host"),
        ("https://tether.example/cb#", "fragment"),
        ("https://tether.example/cb#frag", "fragment"),
        ("http://127.0.0.1/cb#x", "fragment"),
        ("https://user@tether.example/cb", "user name or password"),
        ("https://tether.example@evil.example/cb", "user name or password"),
        ("http://a:b@127.0.0.1/cb", "user name or password"),
        ("https:///cb", "no host"),
        ("https://:443/cb", "no host"),
        ("https://tether.example:99999/cb", "port is not valid"),
        ("https://tether.example:x/cb", "port is not valid"),
        ("https://tether.example/c b", "spaces, control or non-ASCII"),
        ("https://tether.example/cb\n", "spaces, control or non-ASCII"),
        ("https://tether.exämple/cb", "spaces, control or non-ASCII"),
        ("https://tether.example\\@evil.example/", "or a backslash"),
        ("", "only https"),
    ],
)
def test_refused(uri: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match=why) as caught:
        check_redirect_uri(uri)
    assert caught.value.details == {"redirect_uri": uri}
    assert caught.value.hint is not None
    assert "127.0.0.1" in caught.value.hint


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("::2", False),
        ("128.0.0.1", False),
        ("example.com", False),
    ],
)
def test_is_loopback_host(host: str, expected: bool) -> None:
    assert is_loopback_host(host) is expected
