"""The SSRF verdict against the IANA special-purpose registries, row by row (SSRF-3, SSRF-7).

The expected verdicts below are written out by hand from the IANA IPv4 and IPv6
Special-Purpose Address Registries (RFC 6890, RFC 8190; "Globally Reachable" column),
not derived from ``tether.net.policy``'s own tables, so a wrong row there fails here.
Every IPv4 row is then checked again through every IPv6 form that embeds or translates
an IPv4 address: each must get the verdict of the IPv4 address it carries.
"""

from __future__ import annotations

import ipaddress

import pytest

from tether.net.policy import (
    IPV4_SPECIAL,
    IPV6_SPECIAL,
    NetworkPolicy,
    embedded_ipv4,
    refusal_reason,
)

#: (registry block, an address inside it, expected reason or None for reachable)
IPV4_ROWS: list[tuple[str, str, str | None]] = [
    ("0.0.0.0/8", "0.1.2.3", "'this network' address (RFC 791 §3.2)"),
    ("0.0.0.0/32", "0.0.0.0", "'this host on this network' address"),
    ("10.0.0.0/8", "10.255.0.1", "private address (RFC 1918)"),
    ("100.64.0.0/10", "100.127.255.254", "carrier-grade NAT address (RFC 6598)"),
    ("127.0.0.0/8", "127.1.2.3", "loopback address"),
    ("169.254.0.0/16", "169.254.1.1", "link-local address (RFC 3927)"),
    ("172.16.0.0/12", "172.31.0.1", "private address (RFC 1918)"),
    ("192.0.0.0/24", "192.0.0.200", "IETF protocol assignment"),
    ("192.0.0.0/29", "192.0.0.1", "IPv4 service continuity prefix (RFC 7335)"),
    ("192.0.0.8/32", "192.0.0.8", "IPv4 dummy address (RFC 7600)"),
    ("192.0.0.9/32", "192.0.0.9", None),  # PCP anycast
    ("192.0.0.10/32", "192.0.0.10", None),  # TURN anycast
    ("192.0.0.170/32", "192.0.0.170", "NAT64/DNS64 discovery"),
    ("192.0.0.171/32", "192.0.0.171", "NAT64/DNS64 discovery"),
    ("192.0.2.0/24", "192.0.2.1", "documentation address (RFC 5737)"),
    ("192.31.196.0/24", "192.31.196.1", None),  # AS112-v4
    ("192.52.193.0/24", "192.52.193.1", None),  # AMT
    ("192.88.99.0/24", "192.88.99.1", "6to4 relay anycast address (RFC 7526)"),
    ("192.168.0.0/16", "192.168.1.1", "private address (RFC 1918)"),
    ("192.175.48.0/24", "192.175.48.1", None),  # direct delegation AS112
    ("198.18.0.0/15", "198.19.255.255", "benchmarking address (RFC 2544)"),
    ("198.51.100.0/24", "198.51.100.7", "documentation address (RFC 5737)"),
    ("203.0.113.0/24", "203.0.113.7", "documentation address (RFC 5737)"),
    ("240.0.0.0/4", "240.0.0.1", "reserved address"),
    ("255.255.255.255/32", "255.255.255.255", "broadcast address"),
]

IPV6_ROWS: list[tuple[str, str, str | None]] = [
    ("::1/128", "::1", "loopback address (RFC 4291)"),
    ("::/128", "::", "unspecified address (RFC 4291)"),
    ("::ffff:0:0/96", "::ffff:8.8.8.8", None),  # judged as its (public) IPv4
    ("64:ff9b::/96", "64:ff9b::8.8.8.8", None),  # judged as its (public) IPv4
    ("64:ff9b:1::/48", "64:ff9b:1::8.8.8.8", "local-use NAT64 address (RFC 8215)"),
    ("100::/64", "100::1", "discard-only address (RFC 6666)"),
    ("2001::/23", "2001:1ff::1", "IETF protocol assignment (RFC 2928)"),
    ("2001::/32", "2001:0:0808:0808::f7f7:f7f7", None),  # Teredo, public client
    ("2001:1::1/128", "2001:1::1", None),  # PCP anycast
    ("2001:1::2/128", "2001:1::2", None),  # TURN anycast
    ("2001:2::/48", "2001:2::1", "benchmarking address (RFC 5180)"),
    ("2001:3::/32", "2001:3::1", None),  # AMT
    ("2001:4:112::/48", "2001:4:112::1", None),  # AS112-v6
    ("2001:10::/28", "2001:10::1", "deprecated ORCHID address (RFC 4843)"),
    ("2001:20::/28", "2001:20::1", None),  # ORCHIDv2
    ("2001:30::/28", "2001:30::1", None),  # drone remote ID entity tags
    ("2001:db8::/32", "2001:db8::1", "documentation address (RFC 3849)"),
    ("2002::/16", "2002:808:808::1", None),  # 6to4 of a public address
    ("2620:4f:8000::/48", "2620:4f:8000::1", None),  # direct delegation AS112
    ("3fff::/20", "3fff:fff::1", "documentation address (RFC 9637)"),
    ("5f00::/16", "5f00::1", "SRv6 segment identifier (RFC 9602)"),
    ("fc00::/7", "fd12:3456::1", "unique local address (RFC 4193)"),
    ("fe80::/10", "fe80::1", "link-local address (RFC 4291)"),
]

#: Outside the registries, but refused all the same.
OTHER_ROWS: list[tuple[str, str | None]] = [
    ("169.254.169.254", "cloud metadata address"),
    ("224.0.0.251", "multicast address (RFC 5771)"),
    ("239.255.255.250", "multicast address (RFC 5771)"),
    ("fec0::1", "site-local address (RFC 3879)"),
    ("ff02::1", "multicast address (RFC 4291 §2.7)"),
    ("ff0e::1", "multicast address (RFC 4291 §2.7)"),
    ("400::1", "outside the IPv6 global unicast space 2000::/3"),
    ("e000::1", "outside the IPv6 global unicast space 2000::/3"),
    ("1.1.1.1", None),
    ("8.8.8.8", None),
    ("2606:4700:4700::1111", None),
    ("2a00:1450:4001::1", None),
]


def verdict(address: str) -> str | None:
    return refusal_reason(ipaddress.ip_address(address))


def check(expected: str | None, actual: str | None) -> None:
    if expected is None:
        assert actual is None
    else:
        assert actual is not None
        assert expected in actual


def test_every_registry_row_is_in_the_table_and_tested() -> None:
    """One row here per registry row in the policy (no silent additions)."""
    assert [str(r.network) for r in IPV4_SPECIAL] == [b for b, _, _ in IPV4_ROWS]
    assert [str(r.network) for r in IPV6_SPECIAL] == [b for b, _, _ in IPV6_ROWS]


@pytest.mark.parametrize(("block", "address", "expected"), IPV4_ROWS + IPV6_ROWS)
def test_registry_row(block: str, address: str, expected: str | None) -> None:
    assert ipaddress.ip_address(address) in ipaddress.ip_network(block)
    check(expected, verdict(address))


@pytest.mark.parametrize(("address", "expected"), OTHER_ROWS)
def test_outside_the_registries(address: str, expected: str | None) -> None:
    check(expected, verdict(address))


def _mapped(v4: ipaddress.IPv4Address) -> str:
    return f"::ffff:{v4}"


def _translated(v4: ipaddress.IPv4Address) -> str:
    return f"::ffff:0:{v4}"


def _compatible(v4: ipaddress.IPv4Address) -> str:
    return f"::{v4}"


def _nat64(v4: ipaddress.IPv4Address) -> str:
    return f"64:ff9b::{v4}"


def _sixtofour(v4: ipaddress.IPv4Address) -> str:
    high, low = divmod(int(v4), 1 << 16)
    return f"2002:{high:x}:{low:x}::1"


def _teredo(v4: ipaddress.IPv4Address) -> str:
    """A Teredo address with a public server (8.8.4.4) and ``v4`` as the client."""
    obscured = ~int(v4) & 0xFFFFFFFF  # RFC 4380 §4: the client address, inverted
    high, low = divmod(obscured, 1 << 16)
    return f"2001:0:808:404:0:0:{high:x}:{low:x}"


EMBEDDINGS = {
    "IPv4-mapped": _mapped,
    "IPv4-translated": _translated,
    "IPv4-compatible": _compatible,
    "NAT64": _nat64,
    "6to4": _sixtofour,
    "Teredo": _teredo,
}

#: Every IPv4 registry row, plus public and out-of-registry addresses.
IPV4_SAMPLES = [(a, e) for _, a, e in IPV4_ROWS] + [
    (a, e) for a, e in OTHER_ROWS if ":" not in a
]


@pytest.mark.parametrize("form", list(EMBEDDINGS))
@pytest.mark.parametrize(("v4", "expected"), IPV4_SAMPLES)
def test_every_embedding_is_judged_as_its_ipv4(
    form: str, v4: str, expected: str | None
) -> None:
    inner = ipaddress.IPv4Address(v4)
    wrapped = ipaddress.IPv6Address(EMBEDDINGS[form](inner))
    embedded = embedded_ipv4(wrapped)
    if form == "IPv4-compatible" and int(inner) <= 1:
        # ::0.0.0.0 and ::0.0.0.1 are the unspecified and loopback IPv6 addresses
        assert embedded is None
        return
    assert embedded is not None
    assert form in embedded[0]
    assert embedded[1][0] == inner
    actual = refusal_reason(wrapped)
    check(expected, actual)
    if expected is not None:
        assert actual is not None
        assert f"({inner}) inside {form}" in actual


@pytest.mark.parametrize(("v4", "expected"), IPV4_SAMPLES)
def test_local_use_nat64_is_refused_whatever_it_carries(
    v4: str, expected: str | None
) -> None:
    wrapped = ipaddress.IPv6Address(f"64:ff9b:1::{v4}")
    assert embedded_ipv4(wrapped) == (
        "local-use NAT64 IPv6",
        (ipaddress.IPv4Address(v4),),
    )
    check(expected or "local-use NAT64 address (RFC 8215)", refusal_reason(wrapped))


def test_teredo_server_address_must_pass_too() -> None:
    # server 10.0.0.1, client 8.8.8.8 (inverted: f7f7:f7f7)
    reason = verdict("2001:0:a00:1::f7f7:f7f7")
    assert reason is not None
    assert "(10.0.0.1) inside Teredo" in reason
    assert verdict("2001:0:808:404::f7f7:f7f7") is None
    # the example: IPv4-translated form of the metadata address
    reason = verdict("::ffff:0:a9fe:a9fe")
    assert reason is not None
    assert "cloud metadata address" in reason
    assert "(169.254.169.254) inside IPv4-translated IPv6" in reason


def test_verdicts_do_not_use_ipaddress_is_global(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``is_global``/``is_private`` vary across Python patch releases: never asked."""

    def refuse(self: object) -> bool:
        raise AssertionError("is_global / is_private consulted")

    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        for name in ("is_global", "is_private", "is_reserved", "is_link_local"):
            monkeypatch.setattr(cls, name, property(refuse))
    for _, address, expected in IPV4_ROWS + IPV6_ROWS:
        check(expected, verdict(address))
    policy = NetworkPolicy.from_allowlist(["127.0.0.0/8"])
    assert policy.check_url("http://127.0.0.1:8000/").port == 8000
