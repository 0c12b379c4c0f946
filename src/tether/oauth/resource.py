"""The canonical resource URI of an MCP server, and the PRM ``resource`` check.

RFC 8707 §2; RFC 9728 §3.3; MCP 2025-11-25 *Authorization*, "Canonical Server URI";
requirements.md RES-3, RES-4, PRM-6.

The canonical URI is computed once from the admin-entered server URL and used to check the
protected resource metadata's ``resource`` (RFC 9728 §3.3). After that check, Tether sends
the metadata's own ``resource`` string verbatim (RES-4).

Canonical form (RES-4, TETHER):

- absolute ``http``/``https`` URL with a host; no user info (RFC 8707 §2 MUST be absolute);
- scheme and host lower-cased (RFC 3986 §6.2.2.1);
- fragment dropped (RFC 8707 §2: MUST NOT include one);
- a lone root ``/`` dropped (``https://a.example/`` → ``https://a.example``), any other
  trailing slash kept as typed: only the server knows whether ``/mcp/`` differs from ``/mcp``;
- port and query kept as typed. RES-4 says "do not touch the port": the server publishes
  its own ``resource`` and PRM-6 compares strings, so rewriting ``:443`` could only turn a
  match into a mismatch.

Left out: percent-encoding normalisation and dot-segment removal (RFC 3986 §6.2.2.2–3);
an admin-entered URL with those is kept as typed.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from tether.errors import DiscoveryError, ValidationFailed, clean_text

__all__ = ["ResourceMatch", "canonical_resource", "check_resource"]

ResourceMatch = Literal["exact", "prefix"]
"""How the metadata's ``resource`` is compared: ``exact`` (default, RFC 9728 §3.3) or the
``prefix`` override (same origin, parent path; requirements.md *Known disagreements* #3)."""


def canonical_resource(server_url: str) -> str:
    """Return the canonical resource URI for a server URL (RES-3, RES-4).

    Args:
        server_url: The MCP endpoint URL as an admin entered it.

    Returns:
        The canonical URI, e.g. ``"https://mcp.example.com/mcp"``.

    Raises:
        ValidationFailed: The URL is not absolute ``http(s)`` with a host, has user info,
            or has a malformed port.
    """
    text = server_url.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise _invalid(server_url, "it cannot be parsed") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise _invalid(server_url, "it must be an absolute http(s) URL")
    if not parts.hostname:
        raise _invalid(server_url, "it has no host")
    if "@" in parts.netloc:
        raise _invalid(server_url, "it must not contain a user name or password")
    path = "" if parts.path == "/" else parts.path
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), path, parts.query, "")
    )


def _invalid(url: str, why: str) -> ValidationFailed:
    return ValidationFailed(
        f"the server URL is not a valid resource identifier: {why}",
        fields={"url": why},
        details={"url": url},
    )


def check_resource(
    published: str,
    expected: str,
    *,
    match: ResourceMatch = "exact",
    metadata_url: str | None = None,
) -> None:
    """Check protected resource metadata's ``resource`` against the server (PRM-6).

    RFC 9728 §3.3: the value MUST be identical to the resource identifier the client used
    (here :func:`canonical_resource` of the server URL); otherwise the metadata MUST NOT be
    used. ``exact`` compares the raw JSON string, tolerating only a lone root ``/`` on
    either side, because RES-4 defines the canonical form without it (RFC 3986 §6.2.3 makes
    the two equivalent). ``prefix`` is the per-server override: same scheme and authority,
    and the published path is a parent (segment-wise) of the expected one.

    Args:
        published: The metadata's ``resource`` string, unmodified.
        expected: The canonical resource of the server.
        match: ``exact`` or the ``prefix`` override.
        metadata_url: Where the metadata came from, for the message.

    Raises:
        DiscoveryError: The values do not match under ``match``, or ``published`` is
            not a URL ``urllib`` can split (a bracketed host that is no IPv6 address).
    """
    shown = clean_text(repr(published), limit=300)
    try:
        if _strip_root(published) == _strip_root(expected):
            return
        if match == "prefix" and _is_parent(published, expected):
            return
    except ValueError as exc:  # urlsplit: "Invalid IPv6 URL" for ``http://x[abc]/``
        raise DiscoveryError(
            f"protected resource metadata names resource {shown}, "
            "which is not a valid URL (RFC 9728 §2)",
            server=metadata_url,
            step="discovery",
            details={"resource": published, "expected_resource": expected},
        ) from exc
    raise DiscoveryError(
        f"protected resource metadata names resource {shown}, "
        f"but this server is {expected!r} (RFC 9728 §3.3)",
        server=metadata_url,
        step="discovery",
        hint="if the server is known to publish another value, set the server's "
        "resource match override",
        details={"resource": published, "expected_resource": expected},
    )


def _strip_root(url: str) -> str:
    parts = urlsplit(url)
    if parts.path == "/" and not parts.query and not parts.fragment:
        return url[:-1]
    return url


def _is_parent(parent: str, child: str) -> bool:
    p, c = urlsplit(parent), urlsplit(child)
    if (p.scheme.lower(), p.netloc.lower()) != (c.scheme.lower(), c.netloc.lower()):
        return False
    if p.query or p.fragment:
        return False
    p_segments = [s for s in p.path.split("/") if s]
    c_segments = [s for s in c.path.split("/") if s]
    return c_segments[: len(p_segments)] == p_segments
