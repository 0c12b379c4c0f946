"""Tether's own redirect URI: what may be registered and sent as ``redirect_uri``.

RFC 6749 §3.1.2 (absolute, no fragment), RFC 9700 §4.1 / OAuth 2.1 §7.4.1 (no open
redirection; https, except ``http`` on the loopback interface for native clients,
RFC 8252 §7.3), RFC 3986 §3.2.1 (no user information). Pure: no I/O.

The redirect URI comes from configuration (``TETHER_PUBLIC_URL``, ``Tether.open``'s
``redirect_uri``, the probe's ``--redirect-uri``), never from a request (SEC-6); this
check runs wherever it is configured, so a typo such as ``http://tether.example/`` or a
``javascript:`` URI fails at startup with a clear message instead of sending codes to
the wrong place.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import urlsplit

from tether.errors import ConfigurationError

__all__ = ["check_redirect_uri", "is_loopback_host"]

_LOOPBACK_V4: Final = ipaddress.ip_network("127.0.0.0/8")
_LOOPBACK_V6: Final = ipaddress.ip_address("::1")
_UNSAFE: Final = re.compile(r"[\x00-\x20\x7f-\U0010ffff\\]")
_HINT: Final = (
    "use https://<your public host>/oauth/callback, or http://127.0.0.1:<port>/... "
    "(or [::1], localhost) for a CLI-only installation"
)


def is_loopback_host(host: str) -> bool:
    """Whether a URI host names the loopback interface: 127.0.0.0/8, ::1 or localhost.

    Args:
        host: The host as :func:`urllib.parse.urlsplit` returns it (lower case, IPv6
            without brackets).

    Returns:
        ``True`` for a loopback host.
    """
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in _LOOPBACK_V4
    return address == _LOOPBACK_V6


def _refuse(uri: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"the redirect URI {uri!r} is not allowed: {why}",
        hint=_HINT,
        details={"redirect_uri": uri},
    )


def check_redirect_uri(uri: str) -> str:
    """Check Tether's redirect URI and return it unchanged.

    Rules: an absolute ``https`` URI, or ``http`` whose host is a loopback address
    (``127.0.0.0/8``, ``[::1]``) or ``localhost``; a host; no user information; no
    fragment (not even an empty one); a valid port; no spaces, control or non-ASCII
    characters, and no backslash (parsers disagree about them).

    Args:
        uri: The configured redirect URI.

    Returns:
        ``uri``.

    Raises:
        ConfigurationError: A rule is broken; the message says which.
    """
    if _UNSAFE.search(uri):
        raise _refuse(
            uri, "it contains spaces, control or non-ASCII characters, or a backslash"
        )
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise _refuse(uri, "only https (or http on a loopback host) is allowed")
    if "#" in uri:
        raise _refuse(uri, "it has a fragment (RFC 6749 §3.1.2)")
    if "@" in parts.netloc:
        raise _refuse(uri, "it has a user name or password (RFC 3986 §3.2.1)")
    host = parts.hostname or ""
    if not host:
        raise _refuse(uri, "it has no host")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise _refuse(uri, "its port is not valid") from None
    if scheme == "http" and not is_loopback_host(host):
        raise _refuse(
            uri, "plain http is allowed only on a loopback host (RFC 8252 §7.3)"
        )
    return uri
