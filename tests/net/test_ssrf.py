"""Hostile URLs and redirect chains, checked at the socket (requirements.md SSRF-1 … SSRF-5).

Every case runs against real loopback listeners: an allowlisted redirector on
127.0.0.1, and traps on 127.0.0.2 and [::1] that the fake resolver points hostile names
at. The connect guard records every attempted connect (and refuses any non-loopback
one), so each case asserts that nothing but the allowlisted redirector was ever dialled
and that no trap accepted a connection.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx2
import pytest
import trustme

from tether.errors import BlockedDestination
from tether.net import NetworkPolicy, guarded_client, mapped_errors

from .loopback import ConnectGuard, Exchange, FakeDNS, LoopbackServer


async def chain(exchange: Exchange) -> None:
    """Redirect ``n`` times to itself, then to ``to``."""
    n = int(exchange.query["n"][0])
    target = exchange.query["to"][0]
    location = target if n == 0 else f"/chain?n={n - 1}&to={quote(target, safe='')}"
    await exchange.send(302, [("Location", location)])


DNS_TABLE = {
    "redirector.test": ["127.0.0.1"],
    "secure.test": ["127.0.0.1"],
    "evil.test": ["127.0.0.2"],
    "v6evil.test": ["::1"],
    "localhost": ["127.0.0.1", "::1"],
    "127.0.0.1.nip.io": ["127.0.0.1"],
    "metadata.google.internal": ["169.254.169.254"],
    "metadata.test": ["fd00:ec2::254"],
    "mixed.test": ["93.184.215.14", "127.0.0.2"],
    "mixed6.test": ["2606:4700:4700::1111", "fc00::1"],
    "mapped.test": ["::ffff:10.0.0.1"],
    "nat64.test": ["64:ff9b::a9fe:a9fe"],
    "sixtofour.test": ["2002:7f00:2::"],
    "cgnat.test": ["100.64.0.1"],
    "zero.test": ["0.0.0.0"],
}


@dataclass
class Arena:
    redirector: LoopbackServer
    trap4: LoopbackServer
    trap6: LoopbackServer
    dns: FakeDNS

    def url(self, template: str) -> str:
        return template.format(
            redir=self.redirector.port, trap4=self.trap4.port, trap6=self.trap6.port
        )

    def hop(self, target: str, n: int = 0) -> str:
        """A redirector URL that redirects ``n`` extra times, then to ``target``."""
        to = quote(self.url(target), safe="")
        return f"http://redirector.test:{self.redirector.port}/chain?n={n}&to={to}"


@pytest.fixture
async def arena() -> AsyncIterator[Arena]:
    async with (
        LoopbackServer("127.0.0.1", {"/chain": chain}) as redirector,
        LoopbackServer("127.0.0.2") as trap4,
        LoopbackServer("::1") as trap6,
    ):
        yield Arena(redirector, trap4, trap6, FakeDNS(DNS_TABLE))


POLICIES = {
    # Plain http allowed: every refusal below must come from the address rules.
    "lax": NetworkPolicy.from_allowlist(["redirector.test"], require_https=False),
    "strict": NetworkPolicy.from_allowlist(["redirector.test"]),
}

#: (URL template, part of the refusal reason under the lax policy)
HOSTILE_URLS = [
    ("http://127.0.0.1/", "loopback"),
    ("http://127.0.0.2:{trap4}/", "loopback"),
    ("http://[::1]:{trap6}/", "loopback"),
    ("http://2130706433/", "numeric host name"),
    ("http://0x7f.1/", "numeric host name"),
    ("http://0x7f000001/", "numeric host name"),
    ("http://127.1/", "numeric host name"),
    ("http://0/", "numeric host name"),
    ("http://0177.0.0.1/", "Invalid IPv4"),  # httpx2 refuses octal outright
    ("http://[::ffff:127.0.0.2]:{trap4}/", "inside IPv4-mapped"),
    ("http://[::ffff:7f00:2]:{trap4}/", "inside IPv4-mapped"),
    ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
    ("http://[::127.0.0.2]:{trap4}/", "inside IPv4-compatible"),
    ("http://[64:ff9b::a00:1]/", "inside NAT64"),
    ("http://[64:ff9b::7f00:2]:{trap4}/", "inside NAT64"),
    ("http://[2002:7f00:2::]:{trap4}/", "inside 6to4"),
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata"),
    ("http://metadata.test/", "unique local"),
    ("http://10.0.0.1/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://cgnat.test/", "carrier-grade NAT"),
    ("http://0.0.0.0:{trap4}/", "'this host on this network'"),
    ("http://zero.test:{trap4}/", "'this host on this network'"),
    ("http://[::]:{trap6}/", "unspecified"),
    ("http://[fc00::1]/", "unique local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25lo]:{trap6}/", "link-local"),
    ("http://[fec0::1]/", "site-local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://192.0.0.1/", "IPv4 service continuity prefix"),
    ("http://192.0.0.100/", "IETF protocol assignment"),
    ("http://198.18.0.1/", "benchmarking"),
    ("http://192.0.2.1/", "documentation"),
    ("http://[2001:db8::1]/", "documentation"),
    ("https://example.com@127.0.0.2:{trap4}/", "user name or password"),
    ("https://user:pass@evil.test:{trap4}/", "user name or password"),
    ("http://evil.test:{trap4}/", "loopback"),
    ("http://v6evil.test:{trap6}/", "loopback"),
    ("http://localhost:{trap4}/", "loopback"),
    ("http://LOCALHOST.:{trap4}/", "loopback"),
    ("http://127.0.0.1.nip.io:{redir}/ok", "loopback"),  # not the allowlisted name
    ("http://mixed.test:{trap4}/", "loopback"),  # one public, one private answer
    ("http://mixed6.test/", "unique local"),
    ("http://mapped.test/", "inside IPv4-mapped"),
    ("http://nat64.test/", "inside NAT64"),
    ("http://sixtofour.test:{trap4}/", "inside 6to4"),
    ("ftp://127.0.0.2:{trap4}/", "scheme 'ftp'"),
    ("gopher://127.0.0.2:{trap4}/_INFO", "scheme 'gopher'"),
]

#: Redirect chains from the allowlisted redirector: (target template, extra hops)
HOSTILE_REDIRECTS = [
    ("http://127.0.0.2:{trap4}/", 0),
    ("http://127.0.0.2:{trap4}/", 3),
    ("http://10.0.0.1/", 0),
    ("http://10.0.0.1/", 2),
    ("http://169.254.169.254/latest/meta-data/", 0),
    ("http://metadata.google.internal/", 1),
    ("http://[::1]:{trap6}/", 0),
    ("http://[::ffff:127.0.0.2]:{trap4}/", 0),
    ("http://evil.test:{trap4}/", 0),
    ("http://mixed.test:{trap4}/", 1),
    ("http://2130706433:{trap4}/", 0),
    ("//127.0.0.2:{trap4}/", 0),  # scheme-relative
    ("https://example.com@127.0.0.2:{trap4}/", 0),
    ("http://localhost:{trap4}/", 0),
    ("ftp://127.0.0.2:{trap4}/", 0),
]


def _assert_nothing_dialled(
    arena: Arena, guard: ConnectGuard, *also: LoopbackServer
) -> None:
    assert arena.trap4.accepted == 0
    assert arena.trap6.accepted == 0
    allowed = {("127.0.0.1", server.port) for server in (arena.redirector, *also)}
    assert guard.destinations() <= allowed


async def _blocked(client: httpx2.AsyncClient, url: str) -> BlockedDestination:
    with (
        pytest.raises(BlockedDestination) as caught,
        mapped_errors(server="hostile", step="ssrf"),
    ):
        await client.get(url)
    assert caught.value.server == "hostile"
    assert caught.value.step == "ssrf"
    return caught.value


@pytest.mark.parametrize("policy", POLICIES, ids=str)
@pytest.mark.parametrize(("template", "reason"), HOSTILE_URLS)
async def test_ssrf3_hostile_url_never_reaches_a_socket(
    arena: Arena, guard: ConnectGuard, policy: str, template: str, reason: str
) -> None:
    async with guarded_client(
        POLICIES[policy], timeout=30, follow_redirects=True, resolver=arena.dns
    ) as client:
        error = await _blocked(client, arena.url(template))
    if policy == "lax":
        assert reason in str(error)
    assert guard.attempts == []
    _assert_nothing_dialled(arena, guard)


@pytest.mark.parametrize("policy", POLICIES, ids=str)
@pytest.mark.parametrize(("target", "extra_hops"), HOSTILE_REDIRECTS)
async def test_ssrf4_hostile_redirect_is_refused_before_connecting(
    arena: Arena, guard: ConnectGuard, policy: str, target: str, extra_hops: int
) -> None:
    async with guarded_client(
        POLICIES[policy], timeout=30, follow_redirects=True, resolver=arena.dns
    ) as client:
        await _blocked(client, arena.hop(target, extra_hops))
    assert len(arena.redirector.requests) == extra_hops + 1
    _assert_nothing_dialled(arena, guard)


async def test_ssrf4_redirect_within_the_allowlist_is_followed(
    arena: Arena, guard: ConnectGuard
) -> None:
    async with guarded_client(
        POLICIES["strict"], timeout=30, follow_redirects=True, resolver=arena.dns
    ) as client:
        response = await client.get(arena.hop("/ok", 2))
    assert response.text == "hello"
    assert len(response.history) == 3
    _assert_nothing_dialled(arena, guard)


async def test_ssrf4_unfollowed_redirect_is_returned_not_dialled(
    arena: Arena, guard: ConnectGuard
) -> None:
    async with guarded_client(
        POLICIES["strict"], timeout=30, follow_redirects=False, resolver=arena.dns
    ) as client:
        response = await client.get(arena.hop("http://127.0.0.2:{trap4}/"))
    assert response.status_code == 302
    _assert_nothing_dialled(arena, guard)


async def test_ssrf4_https_to_http_downgrade_is_refused(
    arena: Arena, guard: ConnectGuard, tmp_path: Path
) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("secure.test").configure_cert(server_ctx)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    policy = NetworkPolicy.from_allowlist(["redirector.test", "secure.test"])
    plain = f"http://redirector.test:{arena.redirector.port}/ok"
    async with (
        LoopbackServer("127.0.0.1", ssl_context=server_ctx) as secure,
        guarded_client(
            policy,
            timeout=30,
            follow_redirects=True,
            resolver=arena.dns,
            ca_bundle=str(bundle),
        ) as client,
    ):
        assert (await client.get(plain)).text == "hello"  # fine when asked directly
        requests_before = len(arena.redirector.requests)
        hop = f"https://secure.test:{secure.port}/redirect?to={quote(plain, safe='')}"
        error = await _blocked(client, hop)
    assert "from https to plain http" in str(error)
    assert len(arena.redirector.requests) == requests_before
    assert len(secure.requests) == 1
    _assert_nothing_dialled(arena, guard, secure)
