"""Tables for net/policy.py (requirements.md SSRF-2, SSRF-3, SSRF-5, SSRF-7, SSRF-9)."""

from __future__ import annotations

import ipaddress
import re

import httpx2
import pytest

from tether.errors import BlockedDestination, ConfigurationError
from tether.net.policy import (
    NetworkPolicy,
    normalise_host,
    parse_allow_entry,
    refusal_reason,
)

STRICT = NetworkPolicy()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("8.8.8.8", None),
        ("93.184.215.14", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),  # IPv4-mapped public
        ("::808:808", None),  # IPv4-compatible public
        ("64:ff9b::808:808", None),  # NAT64 of a public address
        ("2002:808:808::1", None),  # 6to4 of a public address
        ("0.0.0.0", "'this host on this network'"),
        ("0.1.2.3", "'this network'"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("192.0.0.1", "IPv4 service continuity prefix"),
        ("192.0.0.100", "IETF protocol assignment"),
        ("192.0.0.9", None),  # PCP anycast: globally reachable (RFC 7723)
        ("192.0.2.1", "documentation"),
        ("192.88.99.1", "6to4 relay"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.1", "benchmarking"),
        ("198.51.100.1", "documentation"),
        ("203.0.113.1", "documentation"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback address (RFC 1122 §3.2.1.3) (127.0.0.1) inside"),
        ("::ffff:7f00:1", "(127.0.0.1) inside IPv4-mapped"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("::127.0.0.1", "inside IPv4-compatible"),
        ("::a00:1", "private address (RFC 1918) (10.0.0.1) inside IPv4-compatible"),
        ("64:ff9b::a00:1", "private address (RFC 1918) (10.0.0.1) inside NAT64"),
        ("64:ff9b::7f00:1", "inside NAT64"),
        (
            "2002:7f00:1::",
            "loopback address (RFC 1122 §3.2.1.3) (127.0.0.1) inside 6to4",
        ),
        ("2002:c0a8:101::1", "inside 6to4"),
        ("100::1", "discard-only"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("2001:0:808:404::f7f7:f7f7", None),  # Teredo: server and client public
        ("::ffff:0:a9fe:a9fe", "(169.254.169.254) inside IPv4-translated"),
        ("::ffff:0:808:808", None),  # IPv4-translated public
        ("64:ff9b:1::808:808", "local-use NAT64 address (RFC 8215)"),
        ("64:ff9b:1::a00:1", "(10.0.0.1) inside local-use NAT64"),
        ("400::1", "outside the IPv6 global unicast space"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("5f00::1", "SRv6"),
        ("fc00::1", "unique local"),
        ("fd00:ec2::254", "unique local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("2001:2::1", "benchmarking address (RFC 5180)"),
    ],
)
def test_ssrf3_refusal_reason(address: str, reason: str | None) -> None:
    result = refusal_reason(ipaddress.ip_address(address))
    if reason is None:
        assert result is None
    else:
        assert result is not None
        assert reason in result


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("Example.COM.", "example.com"),
        (" mcp.example ", "mcp.example"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("10.0.0.1", "10.0.0.1"),
    ],
)
def test_normalise_host(host: str, expected: str) -> None:
    assert normalise_host(host) == expected


@pytest.mark.parametrize("host", ["bad host", "[zz]", "a/b", "a@b", "☃.com", "a:80"])
def test_normalise_host_refuses_garbage(host: str) -> None:
    with pytest.raises(ConfigurationError):
        normalise_host(host)


def test_ssrf9_from_allowlist_splits_hosts_and_networks() -> None:
    policy = NetworkPolicy.from_allowlist(
        ["MCP.Corp.Internal", "10.20.0.0/16", "127.0.0.1", "fd00::/8"],
        require_https=False,
    )
    assert policy.allow_hosts == frozenset({"mcp.corp.internal"})
    assert policy.allow_networks == (
        ipaddress.ip_network("10.20.0.0/16"),
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert policy.require_https is False


def test_ssrf9_from_allowlist_refuses_bad_entry() -> None:
    with pytest.raises(ConfigurationError, match="not a valid host name"):
        NetworkPolicy.from_allowlist(["not a host"])


def test_ssrf9_merged_is_a_union_and_keeps_https() -> None:
    site = NetworkPolicy.from_allowlist(["a.internal"])
    server = NetworkPolicy.from_allowlist(["10.0.0.0/8"], require_https=False)
    merged = site.merged(server)
    assert merged.allow_hosts == frozenset({"a.internal"})
    assert merged.allow_networks == (ipaddress.ip_network("10.0.0.0/8"),)
    assert merged.require_https is True
    lax = server.merged(NetworkPolicy(require_https=False))
    assert lax.require_https is False


@pytest.mark.parametrize(
    ("host", "address", "expected"),
    [
        ("mcp.corp.internal", "10.9.9.9", True),  # by name
        ("MCP.corp.internal.", "10.9.9.9", True),  # names compare normalised
        ("other.internal", "10.20.1.1", True),  # by network
        ("other.internal", "::ffff:10.20.1.1", True),  # mapped form matches v4 net
        ("other.internal", "10.21.0.1", False),
        ("other.internal", "fd00::1", False),
    ],
)
def test_ssrf9_is_allowlisted(host: str, address: str, expected: bool) -> None:
    policy = NetworkPolicy.from_allowlist(["mcp.corp.internal", "10.20.0.0/16"])
    assert policy.is_allowlisted(host, ipaddress.ip_address(address)) is expected


@pytest.mark.parametrize(
    "url",
    [
        "https://mcp.example.com/mcp",
        " https://mcp.example.com:8443/mcp ",
        "https://8.8.8.8/",
        "https://[2606:4700:4700::1111]/",
        "https://bücher.example/",
    ],
)
def test_check_url_accepts_public_https(url: str) -> None:
    assert STRICT.check_url(url).scheme == "https"


def test_check_url_accepts_a_parsed_url() -> None:
    url = httpx2.URL("https://mcp.example.com/")
    assert STRICT.check_url(url) is url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://[zz]/", "not a valid URL"),
        ("ftp://mcp.example.com/", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://127.0.0.1:6379/", "scheme 'gopher'"),
        ("https:///path", "no host"),
        ("https://user:pw@mcp.example.com/", "user name or password"),
        ("https://example.com@127.0.0.1/", "user name or password"),
        ("https://mcp.example.com:0/", "port 0"),
        ("https://mcp.example.com:99999/", "port 99999"),
        ("https://bad host/", "not a valid host name"),
        ("https://2130706433/", "numeric host name"),
        ("https://0x7f.1/", "numeric host name"),
        ("https://0x7f000001/", "numeric host name"),
        ("https://127.1/", "numeric host name"),
        ("https://0/", "numeric host name"),
        ("https://127.0.0.1/", "loopback"),
        ("https://[::ffff:127.0.0.1]/", "IPv4-mapped"),
        ("https://[fe80::1%25eth0]/", "link-local"),
        ("https://169.254.169.254/", "cloud metadata"),
        ("http://mcp.example.com/", "HTTPS is required"),
        ("http://8.8.8.8/", "HTTPS is required"),
    ],
)
def test_ssrf2_ssrf3_check_url_refuses(url: str, reason: str) -> None:
    with pytest.raises(BlockedDestination) as caught:
        STRICT.check_url(url)
    assert reason in str(caught.value)


def test_ssrf2_http_name_needs_an_allowlist_entry_that_may_be_loopback() -> None:
    by_name = NetworkPolicy.from_allowlist(["dev.local"])
    assert by_name.check_url("http://dev.local:8000/").host == "dev.local"
    by_loopback_net = NetworkPolicy.from_allowlist(["127.0.0.0/8", "::1"])
    assert by_loopback_net.check_url("http://localhost:8000/").port == 8000
    private_only = NetworkPolicy.from_allowlist(["10.0.0.0/8"])
    with pytest.raises(BlockedDestination, match="HTTPS is required"):
        private_only.check_url("http://intranet.corp/")


def test_ssrf2_http_literal_loopback_when_allowlisted() -> None:
    policy = NetworkPolicy.from_allowlist(["127.0.0.1"])
    assert policy.check_url("http://127.0.0.1:8000/").port == 8000
    with pytest.raises(BlockedDestination, match="loopback"):
        policy.check_url("http://127.0.0.2:8000/")


def test_blocked_destination_message_names_host_address_reason_and_hint() -> None:
    with pytest.raises(BlockedDestination) as caught:
        STRICT.check_addresses("evil.example", ["10.1.2.3"], scheme="https")
    error = caught.value
    assert "evil.example (10.1.2.3)" in error.message
    assert "private address" in error.message
    assert error.hint is not None
    assert "allowlist" in error.hint
    assert error.details == {
        "host": "evil.example",
        "address": "10.1.2.3",
        "reason": "private address (RFC 1918)",
    }


def test_ip_literal_message_does_not_repeat_the_address() -> None:
    with pytest.raises(BlockedDestination) as caught:
        STRICT.check_url("https://10.1.2.3/")
    assert "connect to 10.1.2.3: private" in caught.value.message


@pytest.mark.parametrize(
    ("allow", "addresses", "scheme"),
    [
        ([], ["8.8.8.8"], "https"),
        ([], ["8.8.8.8", "2606:4700:4700::1111"], "https"),
        (["10.0.0.0/8"], ["10.1.1.1"], "https"),
        (["intra.corp"], ["192.168.0.5", "fd00::5"], "https"),
        (["intra.corp"], ["127.0.0.1", "::1"], "http"),
        (["127.0.0.0/8"], ["127.0.0.1"], "http"),
        (["::1"], [ipaddress.ip_address("::1")], "http"),
    ],
)
def test_ssrf5_ssrf9_check_addresses_allows(
    allow: list[str], addresses: list[str | ipaddress.IPv6Address], scheme: str
) -> None:
    policy = NetworkPolicy.from_allowlist(allow)
    checked = policy.check_addresses("intra.corp", addresses, scheme=scheme)
    assert [str(a) for a in checked] == [str(a) for a in addresses]


@pytest.mark.parametrize(
    ("allow", "addresses", "scheme", "reason"),
    [
        ([], [], "https", "did not resolve"),
        ([], ["8.8.8.8", "10.0.0.1"], "https", "private"),  # one bad answer spoils all
        ([], ["10.0.0.1", "8.8.8.8"], "https", "private"),
        (["0.0.0.0/0"], ["0.0.0.1"], "https", "'this network'"),  # never openable
        (["intra.corp"], ["224.0.0.1"], "https", "multicast"),
        (["intra.corp"], ["::"], "https", "unspecified"),
        (["intra.corp"], ["::ffff:0.0.0.0"], "https", "inside IPv4-mapped"),
        (["10.0.0.0/8"], ["10.1.1.1"], "http", "HTTPS is required"),
        ([], ["8.8.8.8"], "http", "HTTPS is required"),
        (["127.0.0.1"], ["127.0.0.2"], "http", "loopback"),
    ],
)
def test_ssrf3_ssrf5_check_addresses_refuses(
    allow: list[str], addresses: list[str], scheme: str, reason: str
) -> None:
    policy = NetworkPolicy.from_allowlist(allow)
    with pytest.raises(BlockedDestination, match=reason):
        policy.check_addresses("intra.corp", addresses, scheme=scheme)


def test_require_https_off_allows_plain_http_to_public_only() -> None:
    lax = NetworkPolicy(require_https=False)
    assert lax.check_url("http://mcp.example.com/").scheme == "http"
    assert lax.check_addresses("mcp.example.com", ["8.8.8.8"], scheme="http")
    with pytest.raises(BlockedDestination, match="loopback"):
        lax.check_url("http://127.0.0.1/")


# ------------------------------------------------------------ allowlist entries with ports


@pytest.mark.parametrize(
    ("entry", "target", "port"),
    [
        ("mcp.corp.internal", "mcp.corp.internal", None),
        (" MCP.Corp.Internal:8443 ", "mcp.corp.internal", 8443),
        ("10.0.0.5", ipaddress.ip_network("10.0.0.5/32"), None),
        ("10.0.0.5:8443", ipaddress.ip_network("10.0.0.5/32"), 8443),
        ("10.0.0.0/24:443", ipaddress.ip_network("10.0.0.0/24"), 443),
        ("10.0.0.7/24", ipaddress.ip_network("10.0.0.0/24"), None),
        ("fd00::/8", ipaddress.ip_network("fd00::/8"), None),
        ("fd00::1:443", ipaddress.ip_network("fd00::1:443/128"), None),  # no brackets
        ("[fd00::1]", ipaddress.ip_network("fd00::1/128"), None),
        ("[fd00::1]:443", ipaddress.ip_network("fd00::1/128"), 443),
        ("[fd00::/64]:65535", ipaddress.ip_network("fd00::/64"), 65535),
    ],
)
def test_ssrf9_parse_allow_entry(entry: str, target: object, port: int | None) -> None:
    assert parse_allow_entry(entry) == (target, port)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("", "the entry is empty"),
        ("   ", "the entry is empty"),
        ("10.0.0.5:0", "port '0' is not a number from 1 to 65535"),
        ("10.0.0.5:65536", "port '65536'"),
        ("10.0.0.5:https", "port 'https'"),
        ("10.0.0.5:", "port ''"),
        ("10.0.0.5:443:1", "'10.0.0.5:443:1' is not an address or CIDR"),
        ("[fd00::1]:", "port ''"),
        ("[fd00::1]:-1", "port '-1'"),
        ("[fd00::1", "expected '[IPv6]' or '[IPv6]:PORT'"),
        ("[fd00::1]443", "expected '[IPv6]' or '[IPv6]:PORT'"),
        ("[10.0.0.5]:443", "only IPv6 goes in brackets"),
        ("[mcp.corp]:443", "'mcp.corp' is not an address or CIDR"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not an address or CIDR"),
        ("10.0.0.256", "'10.0.0.256' is not an address or CIDR"),
        ("fd00::/129", "'fd00::/129' is not an address or CIDR"),
        ("fd00:::1", "'fd00:::1' is not an address or CIDR"),
        ("a b:80", "'a b' is not a valid host name"),
        ("0x7f.1", "numeric host name"),
        ("mcp.corp/path", "not a valid host name"),
    ],
)
def test_ssrf9_bad_allow_entries_are_refused_at_configuration(
    entry: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)) as caught:
        NetworkPolicy.from_allowlist(["10.0.0.0/8", entry])
    if caught.value.details:
        assert caught.value.details == {"entry": entry}
        assert "[fd00::1]:443" in (caught.value.hint or "")


def test_ssrf9_from_allowlist_keeps_ports_apart_and_merges_them() -> None:
    policy = NetworkPolicy.from_allowlist(
        ["a.corp", "a.corp:8443", "10.0.0.0/8", "10.0.0.5:8443", "[fd00::1]:443"]
    )
    assert policy.allow_hosts == frozenset({"a.corp"})
    assert policy.allow_host_ports == frozenset({("a.corp", 8443)})
    assert policy.allow_networks == (ipaddress.ip_network("10.0.0.0/8"),)
    assert policy.allow_network_ports == (
        (ipaddress.ip_network("10.0.0.5/32"), 8443),
        (ipaddress.ip_network("fd00::1/128"), 443),
    )
    merged = NetworkPolicy.from_allowlist(["b.corp:1"]).merged(policy)
    assert merged.allow_host_ports == frozenset({("a.corp", 8443), ("b.corp", 1)})
    assert merged.allow_network_ports == policy.allow_network_ports


@pytest.mark.parametrize(
    ("host", "address", "port", "expected"),
    [
        ("x.corp", "10.0.0.5", 8443, True),
        ("x.corp", "10.0.0.5", 443, False),  # only the port the entry names
        ("x.corp", "10.0.0.5", None, False),  # unknown port: no port entry matches
        ("x.corp", "10.0.0.6", 8443, False),
        ("x.corp", "::ffff:10.0.0.5", 8443, True),  # mapped form, same port
        ("x.corp", "fd00::1", 443, True),
        ("x.corp", "fd00::1", 8443, False),
        ("x.corp", "10.1.0.9", 443, True),  # the /24 entry's port
        ("x.corp", "10.1.0.9", 80, False),
        ("svc.corp", "10.9.9.9", 9000, True),  # host entry with a port
        ("svc.corp", "10.9.9.9", 9001, False),
        # Teredo: the client (NOT f5ff:fffa = 10.0.0.5) and the server must be covered
        ("x.corp", "2001:0:a00:5::f5ff:fffa", 8443, True),
        ("x.corp", "2001:0:808:808::f5ff:fffa", 8443, False),
        ("x.corp", "2001:0:a00:5::f7f7:f7f7", 8443, False),
    ],
)
def test_ssrf9_an_entry_with_a_port_opens_only_that_port(
    host: str, address: str, port: int | None, expected: bool
) -> None:
    policy = NetworkPolicy.from_allowlist(
        ["10.0.0.5:8443", "[fd00::1]:443", "10.1.0.0/24:443", "svc.corp:9000"]
    )
    assert policy.is_allowlisted(host, ipaddress.ip_address(address), port) is expected


def test_ssrf9_port_entries_in_url_and_address_checks() -> None:
    policy = NetworkPolicy.from_allowlist(
        ["10.0.0.5:8443", "[fd00::1]:443", "127.0.0.1:8000", "dev.local:8000"]
    )
    assert policy.check_url("https://10.0.0.5:8443/mcp").port == 8443
    assert policy.check_url("https://[fd00::1]/mcp").host == "fd00::1"  # 443 default
    assert policy.check_url("http://127.0.0.1:8000/").port == 8000
    assert policy.check_url("http://dev.local:8000/").port == 8000
    for url, reason in [
        ("https://10.0.0.5/mcp", "private address"),
        ("https://10.0.0.5:8444/mcp", "private address"),
        ("https://[fd00::1]:8443/", "unique local address"),
        ("http://127.0.0.1:8001/", "loopback address"),
        ("http://dev.local:8001/", "HTTPS is required"),
    ]:
        with pytest.raises(BlockedDestination, match=reason):
            policy.check_url(url)
    with pytest.raises(BlockedDestination) as caught:
        policy.check_url("https://10.0.0.5:8444/mcp")
    assert caught.value.details["port"] == 8444
    assert caught.value.hint == "the allowlist opens this destination on port 8443 only"
    with pytest.raises(BlockedDestination) as caught:
        policy.check_addresses("dev.local", ["10.1.1.1"], scheme="https", port=9)
    assert caught.value.hint == "the allowlist opens this destination on port 8000 only"
    with pytest.raises(BlockedDestination) as caught:
        policy.check_url("https://10.0.0.6:8443/mcp")
    assert caught.value.hint is not None
    assert "add its host or network to the allowlist" in caught.value.hint
    assert policy.check_addresses("dev.local", ["127.0.0.1"], scheme="http", port=8000)
    with pytest.raises(BlockedDestination, match="loopback"):
        policy.check_addresses("other.local", ["127.0.0.1"], scheme="http", port=80)
    loopback_port = NetworkPolicy.from_allowlist(["127.0.0.0/8:8000"])
    assert loopback_port.check_url("http://localhost:8000/").port == 8000
    with pytest.raises(BlockedDestination, match="HTTPS is required"):
        loopback_port.check_url("http://localhost:8001/")
