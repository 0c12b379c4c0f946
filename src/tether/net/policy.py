"""The SSRF policy: which URLs and which resolved addresses Tether may connect to.

Pure: no sockets, no DNS, no clock. The transport (``net/transport.py``) asks it twice
per hop — once about the URL, once about every address the host resolved to — and
connects only to an address it allowed (requirements.md SSRF-1 … SSRF-9, MCP *Security
Best Practices*, RFC 9728 §7.7, design-notes R3.1).

Rules:

* Only ``http`` and ``https``; no userinfo; a port in 1–65535 (design-notes R3.1 1).
* Plain ``http`` only to an allowlisted loopback address while ``require_https`` is on
  (SSRF-2: "except loopback in development"; the allowlist entry is the opt-in).
* An address passes only if it is globally reachable according to the IANA IPv4 and
  IPv6 Special-Purpose Address Registries (RFC 6890, RFC 8190), encoded row by row in
  :data:`IPV4_SPECIAL` and :data:`IPV6_SPECIAL`: the most specific row decides. A few
  ranges the registries leave out are refused as well (:data:`OTHER_REFUSED`:
  multicast, deprecated site-local, the cloud metadata address), and so is every IPv6
  address outside the global unicast space ``2000::/3`` (RFC 4291 §2.4). Python's
  ``ipaddress.is_global`` / ``is_private`` are not used: their answers changed between
  patch releases.
* Every IPv6 form that embeds or translates an IPv4 address is judged as that IPv4
  address (SSRF-3, SSRF-7): IPv4-mapped ``::ffff:0:0/96`` and IPv4-compatible
  ``::/96`` (RFC 4291 §2.5.5), IPv4-translated ``::ffff:0:0:0/96`` (RFC 2765 §2.1),
  NAT64 ``64:ff9b::/96`` (RFC 6052 §2.1) and the local-use ``64:ff9b:1::/48``
  (RFC 8215, itself never globally reachable), 6to4 ``2002::/16`` (RFC 3056 §2) and
  Teredo ``2001::/32`` (RFC 4380 §4: the client address is the bitwise NOT of the last
  32 bits; the server address must pass too).
* The allowlist — host names compared exactly, and CIDRs, each optionally with a port
  (``10.0.0.5:8443``, ``[fd00::1]:443``, ``10.0.0.0/24:443``, ``mcp.corp:8443``) —
  opens otherwise refused addresses (SSRF-9); an entry with a port opens only that
  port. Nothing opens addresses no server can live at: unspecified, "this network"
  ``0.0.0.0/8``, broadcast and multicast.
* Every resolved address must pass, not just one: a name that answers with one public
  and one private address is refused as a whole (SSRF-5). The reference drops the bad
  answers and keeps the rest (design-notes R3.1 2(d)); refusing is the safer reading.
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
    "IPV4_SPECIAL",
    "IPV6_SPECIAL",
    "OTHER_REFUSED",
    "Address",
    "Network",
    "NetworkPolicy",
    "SpecialPurpose",
    "embedded_ipv4",
    "normalise_host",
    "parse_allow_entry",
    "refusal_reason",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_net = ipaddress.ip_network


@dataclass(frozen=True, slots=True)
class SpecialPurpose:
    """One row of a special-purpose address table.

    Attributes:
        network: The address block.
        name: What the block is, as shown to the admin.
        reference: The RFC (or registry) that set it aside.
        globally_reachable: The registry's "Globally Reachable" column; ``False`` (or
            the registry's "N/A") means Tether refuses it unless allowlisted.
    """

    network: Network
    name: str
    reference: str
    globally_reachable: bool = False

    @property
    def reason(self) -> str:
        """The refusal reason given to the admin."""
        return f"{self.name} ({self.reference})"


def _row(
    block: str, name: str, reference: str, reachable: bool = False
) -> SpecialPurpose:
    return SpecialPurpose(_net(block), name, reference, reachable)


#: The IANA IPv4 Special-Purpose Address Registry (RFC 6890 §2.2.2, as updated to
#: October 2024), one row per entry. 192.0.0.0/24 is not usable except through its
#: more specific rows; the 6to4 relay anycast block is deprecated (RFC 7526).
IPV4_SPECIAL: Final[tuple[SpecialPurpose, ...]] = (
    _row("0.0.0.0/8", "'this network' address", "RFC 791 §3.2"),
    _row("0.0.0.0/32", "'this host on this network' address", "RFC 1122 §3.2.1.3"),
    _row("10.0.0.0/8", "private address", "RFC 1918"),
    _row("100.64.0.0/10", "carrier-grade NAT address", "RFC 6598"),
    _row("127.0.0.0/8", "loopback address", "RFC 1122 §3.2.1.3"),
    _row("169.254.0.0/16", "link-local address", "RFC 3927"),
    _row("172.16.0.0/12", "private address", "RFC 1918"),
    _row("192.0.0.0/24", "IETF protocol assignment", "RFC 6890 §2.1"),
    _row("192.0.0.0/29", "IPv4 service continuity prefix", "RFC 7335"),
    _row("192.0.0.8/32", "IPv4 dummy address", "RFC 7600"),
    _row("192.0.0.9/32", "Port Control Protocol anycast", "RFC 7723", True),
    _row("192.0.0.10/32", "TURN anycast", "RFC 8155", True),
    _row("192.0.0.170/32", "NAT64/DNS64 discovery address", "RFC 8880"),
    _row("192.0.0.171/32", "NAT64/DNS64 discovery address", "RFC 8880"),
    _row("192.0.2.0/24", "documentation address", "RFC 5737"),
    _row("192.31.196.0/24", "AS112-v4", "RFC 7535", True),
    _row("192.52.193.0/24", "AMT", "RFC 7450", True),
    _row("192.88.99.0/24", "6to4 relay anycast address", "RFC 7526"),
    _row("192.168.0.0/16", "private address", "RFC 1918"),
    _row("192.175.48.0/24", "direct delegation AS112 service", "RFC 7534", True),
    _row("198.18.0.0/15", "benchmarking address", "RFC 2544"),
    _row("198.51.100.0/24", "documentation address", "RFC 5737"),
    _row("203.0.113.0/24", "documentation address", "RFC 5737"),
    _row("240.0.0.0/4", "reserved address", "RFC 1112 §4"),
    _row("255.255.255.255/32", "broadcast address", "RFC 919 §7"),
)

#: The IANA IPv6 Special-Purpose Address Registry (RFC 6890 §2.2.3, as updated to
#: October 2024), one row per entry. The embedding forms among them (IPv4-mapped,
#: NAT64, Teredo, 6to4) are judged by the IPv4 address they carry (see
#: :func:`embedded_ipv4`) before this table is consulted.
IPV6_SPECIAL: Final[tuple[SpecialPurpose, ...]] = (
    _row("::1/128", "loopback address", "RFC 4291"),
    _row("::/128", "unspecified address", "RFC 4291"),
    _row("::ffff:0:0/96", "IPv4-mapped address", "RFC 4291"),
    _row("64:ff9b::/96", "NAT64 address", "RFC 6052", True),
    _row("64:ff9b:1::/48", "local-use NAT64 address", "RFC 8215"),
    _row("100::/64", "discard-only address", "RFC 6666"),
    _row("2001::/23", "IETF protocol assignment", "RFC 2928"),
    _row("2001::/32", "Teredo tunnel address", "RFC 4380"),
    _row("2001:1::1/128", "Port Control Protocol anycast", "RFC 7723", True),
    _row("2001:1::2/128", "TURN anycast", "RFC 8155", True),
    _row("2001:2::/48", "benchmarking address", "RFC 5180"),
    _row("2001:3::/32", "AMT", "RFC 7450", True),
    _row("2001:4:112::/48", "AS112-v6", "RFC 7535", True),
    _row("2001:10::/28", "deprecated ORCHID address", "RFC 4843"),
    _row("2001:20::/28", "ORCHIDv2", "RFC 7343", True),
    _row("2001:30::/28", "drone remote ID entity tag", "RFC 9374", True),
    _row("2001:db8::/32", "documentation address", "RFC 3849"),
    _row("2002::/16", "6to4 address", "RFC 3056"),
    _row("2620:4f:8000::/48", "direct delegation AS112 service", "RFC 7534", True),
    _row("3fff::/20", "documentation address", "RFC 9637"),
    _row("5f00::/16", "SRv6 segment identifier", "RFC 9602"),
    _row("fc00::/7", "unique local address", "RFC 4193"),
    _row("fe80::/10", "link-local address", "RFC 4291"),
)

#: Refused although the special-purpose registries do not list them.
OTHER_REFUSED: Final[tuple[SpecialPurpose, ...]] = (
    _row("169.254.169.254/32", "cloud metadata address", "link-local, RFC 3927"),
    _row("224.0.0.0/4", "multicast address", "RFC 5771"),
    _row("fec0::/10", "site-local address", "RFC 3879"),
    _row("ff00::/8", "multicast address", "RFC 4291 §2.7"),
)

#: Every row, most specific first: the first row holding an address decides.
_TABLE: Final[tuple[SpecialPurpose, ...]] = tuple(
    sorted(
        (*IPV4_SPECIAL, *IPV6_SPECIAL, *OTHER_REFUSED),
        key=lambda row: -row.network.prefixlen,
    )
)
_GLOBAL_UNICAST: Final = _net("2000::/3")

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
_IPV4_TRANSLATED: Final = _net("::ffff:0:0:0/96")
_NAT64: Final = _net("64:ff9b::/96")
_NAT64_LOCAL: Final = _net("64:ff9b:1::/48")
_TEREDO: Final = _net("2001::/32")
_LOW32: Final = 0xFFFFFFFF
_NUMERIC_LABEL: Final = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
_HOST_NAME: Final = re.compile(r"^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$")
_IPV4_LIKE: Final = re.compile(r"^[0-9./]+$")
_SCHEMES: Final = frozenset({"http", "https"})
_DEFAULT_PORT: Final = {"http": 80, "https": 443}
_HINT: Final = (
    "if this is a self-hosted server on a private network, add its host or network "
    "to the allowlist"
)


def embedded_ipv4(
    address: Address,
) -> tuple[str, tuple[ipaddress.IPv4Address, ...]] | None:
    """Return the IPv4 addresses an IPv6 address carries, and the form that carries them.

    Args:
        address: Any address.

    Returns:
        ``(form, addresses)``, or ``None`` for IPv4 and for IPv6 carrying none. Teredo
        carries two: the client (the bitwise NOT of the last 32 bits) and the server.
    """
    if isinstance(address, ipaddress.IPv4Address):
        return None
    low = ipaddress.IPv4Address(int(address) & _LOW32)
    if address.ipv4_mapped is not None:
        return "IPv4-mapped IPv6", (address.ipv4_mapped,)
    if address in _IPV4_TRANSLATED:
        return "IPv4-translated IPv6", (low,)
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are not v4
        return "IPv4-compatible IPv6", (low,)
    if address in _NAT64:  # RFC 6052 §2.2: the /96 prefix puts v4 in the last 32 bits
        return "NAT64 IPv6", (low,)
    if address in _NAT64_LOCAL:  # RFC 8215 §3: the usual /96 layout within the /48
        return "local-use NAT64 IPv6", (low,)
    if address.sixtofour is not None:
        return "6to4 IPv6", (address.sixtofour,)
    if address.teredo is not None:
        server, client = address.teredo
        return "Teredo IPv6", (client, server)
    return None


def _table_reason(address: Address) -> str | None:
    """The registries' verdict on an address, taken as it is (no unwrapping)."""
    for row in _TABLE:
        if address in row.network:
            return None if row.globally_reachable else row.reason
    if address.version == 6 and address not in _GLOBAL_UNICAST:
        return "outside the IPv6 global unicast space 2000::/3 (RFC 4291 §2.4)"
    return None


def refusal_reason(address: Address) -> str | None:
    """Say why an address is not a public destination, or ``None`` if it is.

    SSRF-3 and SSRF-7: IPv4 carried in IPv6 is unwrapped and judged as IPv4; then the
    special-purpose tables decide (see the module docstring).

    Args:
        address: The address to judge.

    Returns:
        A short reason such as ``"loopback address (RFC 1122 §3.2.1.3)"``, or ``None``
        for a globally reachable address.
    """
    embedded = embedded_ipv4(address)
    if embedded is None:
        return _table_reason(address)
    form, inners = embedded
    for inner in inners:
        reason = _table_reason(inner)
        if reason is not None:
            return f"{reason} ({inner}) inside {form}"
    if address in _NAT64_LOCAL:  # never globally reachable, whatever it carries
        return _table_reason(address)
    return None


def _candidates(address: Address) -> tuple[Address, ...]:
    embedded = embedded_ipv4(address)
    return (address,) if embedded is None else (address, *embedded[1])


def _never_allowed(address: Address) -> bool:
    return any(a in net for a in _candidates(address) for net in _NEVER)


def _is_loopback(address: Address) -> bool:
    embedded = embedded_ipv4(address)
    judged = address if embedded is None else embedded[1][0]
    return judged in _LOOPBACK[judged.version]


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


def _bad_entry(entry: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"allowlist entry '{entry}': {why}",
        hint="write a host name, an address or a CIDR, each optionally followed by "
        "':PORT' (IPv6 in brackets: '[fd00::1]:443')",
        details={"entry": entry},
    )


def _entry_port(entry: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise _bad_entry(entry, f"port '{text}' is not a number from 1 to 65535")
    return int(text)


def _entry_network(entry: str, text: str, version: int | None = None) -> Network:
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise _bad_entry(entry, f"'{text}' is not an address or CIDR") from None
    if version is not None and network.version != version:
        raise _bad_entry(entry, "only IPv6 goes in brackets")
    return network


def parse_allow_entry(entry: str) -> tuple[str | Network, int | None]:
    """Parse one allowlist entry: a host name, an address or a CIDR, optionally a port.

    Forms: ``mcp.corp.internal``, ``10.0.0.0/8``, ``fd00::/8``, ``10.0.0.5:8443``,
    ``10.0.0.0/24:443``, ``[fd00::1]:443``, ``[fd00::/64]:443``, ``mcp.corp:8443``.
    An IPv6 address or network takes a port only in brackets (RFC 3986 §3.2.2).

    Args:
        entry: The entry as the admin wrote it.

    Returns:
        ``(host or network, port or None)``; the host normalised.

    Raises:
        ConfigurationError: The entry is empty or malformed, its port is not in
            1–65535, or a host name is numeric (a legacy IPv4 spelling).
    """
    text = entry.strip()
    if not text:
        raise _bad_entry(entry, "the entry is empty")
    if text.startswith("["):
        inner, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise _bad_entry(entry, "expected '[IPv6]' or '[IPv6]:PORT'")
        port = _entry_port(entry, rest[1:]) if rest else None
        return _entry_network(entry, inner, version=6), port
    if text.count(":") > 1:  # IPv6 without brackets: no port
        return _entry_network(entry, text), None
    base, colon, port_text = text.partition(":")
    port = _entry_port(entry, port_text) if colon else None
    if _IPV4_LIKE.match(base):
        return _entry_network(entry, base), port
    host = normalise_host(base)
    if _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        raise _bad_entry(entry, "a numeric host name is read as a legacy IPv4 form")
    return host, port


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
        allow_host_ports: ``(host, port)``: the host's addresses, on that port only.
        allow_network_ports: ``(network, port)``: the network, on that port only.
    """

    allow_hosts: frozenset[str] = field(default_factory=frozenset)
    allow_networks: tuple[Network, ...] = ()
    require_https: bool = True
    allow_host_ports: frozenset[tuple[str, int]] = field(default_factory=frozenset)
    allow_network_ports: tuple[tuple[Network, int], ...] = ()

    @classmethod
    def from_allowlist(
        cls, entries: Iterable[str] = (), *, require_https: bool = True
    ) -> NetworkPolicy:
        """Build a policy from allowlist entries (see :func:`parse_allow_entry`).

        Args:
            entries: e.g. ``["mcp.corp.internal", "10.20.0.0/16", "10.0.0.5:8443"]``.
            require_https: See the class attributes.

        Returns:
            The policy.

        Raises:
            ConfigurationError: An entry is malformed; the message names it.
        """
        hosts: set[str] = set()
        networks: list[Network] = []
        host_ports: set[tuple[str, int]] = set()
        network_ports: list[tuple[Network, int]] = []
        for entry in entries:
            target, port = parse_allow_entry(entry)
            if isinstance(target, str):
                if port is None:
                    hosts.add(target)
                else:
                    host_ports.add((target, port))
            elif port is None:
                networks.append(target)
            else:
                network_ports.append((target, port))
        return cls(
            frozenset(hosts),
            tuple(networks),
            require_https,
            frozenset(host_ports),
            tuple(network_ports),
        )

    def merged(self, other: NetworkPolicy) -> NetworkPolicy:
        """Return the union of two allowlists; HTTPS stays required if either requires it.

        Args:
            other: Typically a server's own relaxations (design-notes D3.6).

        Returns:
            The combined policy.
        """
        return NetworkPolicy(
            self.allow_hosts | other.allow_hosts,
            self.allow_networks + other.allow_networks,
            self.require_https or other.require_https,
            self.allow_host_ports | other.allow_host_ports,
            self.allow_network_ports + other.allow_network_ports,
        )

    def is_allowlisted(
        self, host: str, address: Address, port: int | None = None
    ) -> bool:
        """Say whether the allowlist names this host or a network holding the address.

        Args:
            host: The host name from the URL.
            address: One address it resolved to.
            port: The port connected to; entries with a port match only it, and none
                matches when the port is unknown.

        Returns:
            ``True`` if an allowlist entry covers the pair.
        """
        name = normalise_host(host)
        if name in self.allow_hosts or (
            port is not None and (name, port) in self.allow_host_ports
        ):
            return True
        networks = [
            *self.allow_networks,
            *(net for net, p in self.allow_network_ports if p == port),
        ]

        def covered(a: Address) -> bool:
            return any(a in net for net in networks)

        # the address itself, or every IPv4 address it carries (Teredo's server too)
        embedded = embedded_ipv4(address)
        return covered(address) or (
            embedded is not None and all(covered(a) for a in embedded[1])
        )

    def check_url(self, url: str | httpx2.URL) -> httpx2.URL:
        """Check a URL before any lookup or connection (design-notes R3.1 1, SSRF-2).

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
        port = parsed.port or _DEFAULT_PORT[parsed.scheme]
        literal = _ip_literal(host)
        if literal is not None:
            self.check_addresses(host, [literal], scheme=parsed.scheme, port=port)
        elif not _HOST_NAME.match(host):
            raise self._refuse(host, "the host is not a valid host name")
        elif _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
            raise self._refuse(
                host, "a numeric host name is read as a legacy IPv4 form"
            )
        elif self._needs_https(parsed.scheme) and not self._may_be_local(host, port):
            raise self._refuse(host, "HTTPS is required", hint=None)
        return parsed

    def check_addresses(
        self,
        host: str,
        addresses: Sequence[str | Address],
        *,
        scheme: str,
        port: int | None = None,
    ) -> tuple[Address, ...]:
        """Check every address a host resolved to (SSRF-3, SSRF-5, SSRF-9).

        Args:
            host: The host name from the URL (for the allowlist and the message).
            addresses: All addresses the resolver returned.
            scheme: ``"http"`` or ``"https"``; plain ``http`` needs an allowlisted
                loopback address while HTTPS is required (SSRF-2).
            port: The port to connect to; allowlist entries with a port open only
                that port (and none when it is not given).

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
            allowlisted = self.is_allowlisted(host, address, port)
            if reason is not None and (_never_allowed(address) or not allowlisted):
                raise self._refuse(
                    host,
                    reason,
                    address=address,
                    port=port,
                    hint=self._port_hint(host, address) or _HINT,
                )
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

    def _may_be_local(self, host: str, port: int) -> bool:
        """Say whether a name could still reach an allowlisted loopback address."""
        if host in self.allow_hosts or (host, port) in self.allow_host_ports:
            return True
        networks = [
            *self.allow_networks,
            *(net for net, p in self.allow_network_ports if p == port),
        ]
        return any(net.overlaps(_LOOPBACK[net.version]) for net in networks)

    def _port_hint(self, host: str, address: Address) -> str | None:
        """Name the ports an entry opens when it covers the address on other ports."""
        ports = {p for name, p in self.allow_host_ports if name == normalise_host(host)}
        ports.update(p for _, p in self.allow_network_ports)
        ports = {p for p in ports if self.is_allowlisted(host, address, p)}
        if not ports:
            return None
        listed = ", ".join(str(p) for p in sorted(ports))
        return f"the allowlist opens this destination on port {listed} only"

    def _needs_https(self, scheme: str) -> bool:
        return self.require_https and scheme != "https"

    @staticmethod
    def _refuse(
        host: str,
        reason: str,
        *,
        address: Address | None = None,
        port: int | None = None,
        hint: str | None = _HINT,
    ) -> BlockedDestination:
        where = (
            host if address is None or str(address) == host else f"{host} ({address})"
        )
        details: dict[str, str | int] = {"host": host, "reason": reason}
        if address is not None:
            details["address"] = str(address)
        if port is not None:
            details["port"] = port
        return BlockedDestination(
            f"refused to connect to {where}: {reason}", hint=hint, details=details
        )
