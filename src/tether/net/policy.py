"""The SSRF policy: which URLs and which resolved addresses Tether may connect to.

Pure: no sockets, no DNS, no clock. The transport (``net/transport.py``) asks it twice
per hop — once about the URL, once about every address the host resolved to — and
connects only to an address it allowed (spec checklist SSRF-1 … SSRF-9, MCP *Security
Best Practices*, RFC 9728 §7.7, reference behaviour §3.1).

Rules:

* Only ``http`` and ``https``; no userinfo; a port in 1–65535 (reference §3.1 1).
* Plain ``http`` only to an allowlisted loopback address while ``require_https`` is on
  (SSRF-2: "except loopback in development"; the allowlist entry is the opt-in).
* An address passes only if it is globally routable: the explicit table below first
  (Python 3.11's ``ipaddress`` still calls multicast, site-local and some tunnel
  prefixes global), then ``ipaddress``'s ``is_global``. IPv4 embedded in IPv6
  (IPv4-mapped, IPv4-compatible, NAT64 ``64:ff9b::/96``, 6to4) is unwrapped and judged
  as IPv4 (SSRF-3, SSRF-7).
* The allowlist — host names compared exactly, and CIDRs — opens otherwise refused
  addresses (SSRF-9), except those no server can live at: unspecified, "this network"
  ``0.0.0.0/8``, broadcast and multicast.
* Every resolved address must pass, not just one: a name that answers with one public
  and one private address is refused as a whole (SSRF-5). The reference drops the bad
  answers and keeps the rest (§3.1 2(d)); refusing is the safer reading.
* Host names whose last label is numeric (``2130706433``, ``0x7f.1``, ``127.1``) are
  refused: resolvers read them as IPv4 in legacy forms, and no DNS name ends in one
  (RFC 3696 §2).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

import httpx2

from tether.errors import BlockedDestination, ConfigurationError

__all__ = [
    "Address",
    "Network",
    "NetworkPolicy",
    "normalise_host",
    "refusal_reason",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_net = ipaddress.ip_network

#: Refused ranges, most specific first; each with the reason given to the admin.
_REFUSED: Final[tuple[tuple[Network, str], ...]] = (
    (_net("0.0.0.0/8"), "'this network' address (0.0.0.0/8)"),
    (_net("10.0.0.0/8"), "private address (RFC 1918)"),
    (_net("100.64.0.0/10"), "carrier-grade NAT address (RFC 6598)"),
    (_net("127.0.0.0/8"), "loopback address"),
    (_net("169.254.169.254/32"), "cloud metadata address"),
    (_net("169.254.0.0/16"), "link-local address"),
    (_net("172.16.0.0/12"), "private address (RFC 1918)"),
    (_net("192.0.0.0/24"), "IETF protocol assignment (RFC 6890)"),
    (_net("192.0.2.0/24"), "documentation address (RFC 5737)"),
    (_net("192.88.99.0/24"), "6to4 relay anycast address (RFC 7526)"),
    (_net("192.168.0.0/16"), "private address (RFC 1918)"),
    (_net("198.18.0.0/15"), "benchmarking address (RFC 2544)"),
    (_net("198.51.100.0/24"), "documentation address (RFC 5737)"),
    (_net("203.0.113.0/24"), "documentation address (RFC 5737)"),
    (_net("224.0.0.0/4"), "multicast address"),
    (_net("255.255.255.255/32"), "broadcast address"),
    (_net("240.0.0.0/4"), "reserved address (RFC 1112)"),
    (_net("::/128"), "unspecified address"),
    (_net("::1/128"), "loopback address"),
    (_net("64:ff9b:1::/48"), "local-use NAT64 address (RFC 8215)"),
    (_net("100::/64"), "discard-only address (RFC 6666)"),
    (_net("2001::/32"), "Teredo tunnel address (RFC 4380)"),
    (_net("2001:db8::/32"), "documentation address (RFC 3849)"),
    (_net("3fff::/20"), "documentation address (RFC 9637)"),
    (_net("5f00::/16"), "SRv6 segment identifier (RFC 9602)"),
    (_net("fc00::/7"), "unique local address (RFC 4193)"),
    (_net("fe80::/10"), "link-local address"),
    (_net("fec0::/10"), "site-local address (RFC 3879)"),
    (_net("ff00::/8"), "multicast address"),
)

#: No allowlist entry opens these: nothing that could be an MCP server lives there.
_NEVER: Final[tuple[Network, ...]] = (
    _net("0.0.0.0/8"),
    _net("224.0.0.0/4"),
    _net("255.255.255.255/32"),
    _net("::/128"),
    _net("ff00::/8"),
)

_LOOPBACK: Final[dict[int, Network]] = {4: _net("127.0.0.0/8"), 6: _net("::1/128")}
_IPV4_COMPATIBLE: Final = _net("::/96")
_NAT64: Final = _net("64:ff9b::/96")
_NUMERIC_LABEL: Final = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
_HOST_NAME: Final = re.compile(r"^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$")
_SCHEMES: Final = frozenset({"http", "https"})
_HINT: Final = (
    "if this is a self-hosted server on a private network, add its host or network "
    "to the allowlist"
)


def _embedded_ipv4(address: Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """Return the IPv4 address an IPv6 address carries, and the form that carries it."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return "IPv4-mapped IPv6", address.ipv4_mapped
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are not v4
        return "IPv4-compatible IPv6", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64:  # RFC 6052 §2.2: the /96 prefix puts v4 in the last 32 bits
        return "NAT64 IPv6", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return "6to4 IPv6", address.sixtofour
    return None


def refusal_reason(address: Address) -> str | None:
    """Say why an address is not a public destination, or ``None`` if it is.

    SSRF-3 and SSRF-7: the table of refused ranges first, then ``ipaddress``'s
    ``is_global``; IPv4 embedded in IPv6 is unwrapped and judged as IPv4.

    Args:
        address: The address to judge.

    Returns:
        A short reason such as ``"loopback address"``, or ``None`` for a global address.
    """
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        form, inner = embedded
        reason = refusal_reason(inner)
        return None if reason is None else f"{reason} ({inner}) inside {form}"
    for network, reason in _REFUSED:
        if address in network:
            return reason
    if not address.is_global:
        return "not a globally routable address"
    return None


def _never_allowed(address: Address) -> bool:
    embedded = _embedded_ipv4(address)
    candidates = (address,) if embedded is None else (address, embedded[1])
    return any(a in net for a in candidates for net in _NEVER)


def _is_loopback(address: Address) -> bool:
    embedded = _embedded_ipv4(address)
    return (address if embedded is None else embedded[1]).is_loopback


def normalise_host(host: str) -> str:
    """Return a host name as the URL parser stores it: lower case, IDNA, no final dot.

    Args:
        host: A host name or IP literal (IPv6 without brackets).

    Returns:
        The normalised name, so allowlist entries and URLs compare exactly.

    Raises:
        ConfigurationError: The host is not a valid host name.
    """
    candidate = host.strip()
    if any(c in candidate for c in "/?#@\\"):
        raise ConfigurationError(f"'{host}' is not a valid host name")
    if ":" in candidate and not candidate.startswith("["):
        candidate = f"[{candidate}]"
    try:
        name = httpx2.URL(f"https://{candidate}/").raw_host.decode("ascii").rstrip(".")
    except httpx2.InvalidURL as exc:
        raise ConfigurationError(f"'{host}' is not a valid host name") from exc
    if _ip_literal(name) is None and not _HOST_NAME.match(name):
        raise ConfigurationError(f"'{host}' is not a valid host name")
    return name


def _parse_address(value: str | Address) -> Address:
    if isinstance(value, str):
        return ipaddress.ip_address(value.replace("%25", "%"))
    return value


def _ip_literal(host: str) -> Address | None:
    try:
        return _parse_address(host)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """Where Tether may connect: the SSRF rules plus an admin's allowlist (SSRF-9).

    Build one with :meth:`from_allowlist`; combine the installation-wide allowlist with
    a server's own with :meth:`merged`.

    Attributes:
        allow_hosts: Host names (normalised) whose addresses may be non-public.
        allow_networks: Networks whose addresses may be non-public.
        require_https: Refuse plain ``http`` except to an allowlisted loopback address
            (SSRF-2). Turn off only in tests.
    """

    allow_hosts: frozenset[str] = field(default_factory=frozenset)
    allow_networks: tuple[Network, ...] = ()
    require_https: bool = True

    @classmethod
    def from_allowlist(
        cls, entries: Iterable[str] = (), *, require_https: bool = True
    ) -> NetworkPolicy:
        """Build a policy from allowlist entries: host names and CIDRs, mixed.

        Args:
            entries: e.g. ``["mcp.corp.internal", "10.20.0.0/16", "127.0.0.1"]``.
            require_https: See the class attributes.

        Returns:
            The policy.

        Raises:
            ConfigurationError: An entry is neither a network nor a host name.
        """
        hosts: set[str] = set()
        networks: list[Network] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                hosts.add(normalise_host(entry))
        return cls(frozenset(hosts), tuple(networks), require_https)

    def merged(self, other: NetworkPolicy) -> NetworkPolicy:
        """Return the union of two allowlists; HTTPS stays required if either requires it.

        Args:
            other: Typically a server's own relaxations (design §3.6).

        Returns:
            The combined policy.
        """
        return NetworkPolicy(
            self.allow_hosts | other.allow_hosts,
            self.allow_networks + other.allow_networks,
            self.require_https or other.require_https,
        )

    def is_allowlisted(self, host: str, address: Address) -> bool:
        """Say whether the allowlist names this host or a network holding the address.

        Args:
            host: The host name from the URL.
            address: One address it resolved to.

        Returns:
            ``True`` if an allowlist entry covers the pair.
        """
        if normalise_host(host) in self.allow_hosts:
            return True
        embedded = _embedded_ipv4(address)
        candidates = (address,) if embedded is None else (address, embedded[1])
        return any(a in net for a in candidates for net in self.allow_networks)

    def check_url(self, url: str | httpx2.URL) -> httpx2.URL:
        """Check a URL before any lookup or connection (reference §3.1 1, SSRF-2).

        An IP-literal host is checked here in full; a name is checked again, address by
        address, once resolved (:meth:`check_addresses`).

        Args:
            url: The URL of one request or redirect hop.

        Returns:
            The parsed URL.

        Raises:
            BlockedDestination: The URL may not be fetched.
        """
        try:
            parsed = url if isinstance(url, httpx2.URL) else httpx2.URL(url.strip())
        except httpx2.InvalidURL as exc:
            raise BlockedDestination(f"'{url}' is not a valid URL") from exc
        host = parsed.raw_host.decode("ascii").rstrip(".")
        if parsed.scheme not in _SCHEMES:
            raise self._refuse(host, f"scheme '{parsed.scheme}' is not http or https")
        if not host:
            raise self._refuse(host, "the URL has no host")
        if parsed.userinfo:  # "https://example.com@127.0.0.1/" goes to 127.0.0.1
            raise self._refuse(host, "URLs with a user name or password are refused")
        if parsed.port is not None and not 0 < parsed.port < 65536:
            raise self._refuse(host, f"port {parsed.port} is not valid")
        literal = _ip_literal(host)
        if literal is not None:
            self.check_addresses(host, [literal], scheme=parsed.scheme)
        elif not _HOST_NAME.match(host):
            raise self._refuse(host, "the host is not a valid host name")
        elif _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
            raise self._refuse(
                host, "a numeric host name is read as a legacy IPv4 form"
            )
        elif self._needs_https(parsed.scheme) and not self._may_be_local(host):
            raise self._refuse(host, "HTTPS is required", hint=None)
        return parsed

    def check_addresses(
        self, host: str, addresses: Sequence[str | Address], *, scheme: str
    ) -> tuple[Address, ...]:
        """Check every address a host resolved to (SSRF-3, SSRF-5, SSRF-9).

        Args:
            host: The host name from the URL (for the allowlist and the message).
            addresses: All addresses the resolver returned.
            scheme: ``"http"`` or ``"https"``; plain ``http`` needs an allowlisted
                loopback address while HTTPS is required (SSRF-2).

        Returns:
            The parsed addresses, in the resolver's order, all allowed.

        Raises:
            BlockedDestination: No addresses, or any one of them is refused.
        """
        if not addresses:
            raise self._refuse(host, "the name did not resolve to any address")
        checked = tuple(_parse_address(a) for a in addresses)
        for address in checked:
            reason = refusal_reason(address)
            allowlisted = self.is_allowlisted(host, address)
            if reason is not None and (_never_allowed(address) or not allowlisted):
                raise self._refuse(host, reason, address=address)
            if self._needs_https(scheme) and not (
                allowlisted and _is_loopback(address)
            ):
                raise self._refuse(
                    host,
                    "HTTPS is required; plain http only to an allowlisted loopback "
                    "address",
                    address=address,
                    hint=None,
                )
        return checked

    def _may_be_local(self, host: str) -> bool:
        """Say whether a name could still reach an allowlisted loopback address."""
        return host in self.allow_hosts or any(
            net.overlaps(_LOOPBACK[net.version]) for net in self.allow_networks
        )

    def _needs_https(self, scheme: str) -> bool:
        return self.require_https and scheme != "https"

    @staticmethod
    def _refuse(
        host: str,
        reason: str,
        *,
        address: Address | None = None,
        hint: str | None = _HINT,
    ) -> BlockedDestination:
        where = (
            host if address is None or str(address) == host else f"{host} ({address})"
        )
        details = {"host": host, "reason": reason}
        if address is not None:
            details["address"] = str(address)
        return BlockedDestination(
            f"refused to connect to {where}: {reason}", hint=hint, details=details
        )
