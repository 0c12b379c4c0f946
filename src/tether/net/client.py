"""The only way to get an ``httpx2.AsyncClient`` in Tether (design-notes S7).

:func:`guarded_client` wires the guarded transport, timeouts, the body cap and the
redirect rules together. :func:`deadline` bounds a whole exchange, and
:func:`mapped_errors` is the seam where any ``httpx2`` exception becomes a Tether error
with the server and step filled in (design-notes S6), so code above ``net/`` never sees
an ``httpx2`` exception.

Typical use::

    async with guarded_client(policy, timeout=30, follow_redirects=False) as client:
        with mapped_errors(server="github", step="token"):
            async with deadline(30):
                response = await client.post(token_endpoint, data=body)
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.cookiejar import Cookie, CookieJar, CookiePolicy

import anyio
import httpx2

from tether.errors import (
    BlockedDestination,
    ConfigurationError,
    NetworkError,
    RemoteError,
    RequestTimeout,
    TetherError,
    UsageError,
)
from tether.net.backend import Resolver, system_resolver
from tether.net.policy import NetworkPolicy
from tether.net.transport import GuardedTransport

__all__ = ["deadline", "guarded_client", "make_ssl_context", "mapped_errors"]

DEFAULT_MAX_BODY = 5 * 1024 * 1024


class _NoCookies(CookiePolicy):
    """Accept no cookie and send none (issue 8 item 2).

    A guarded client is shared by every user of a server (one connection pool per
    network profile), so a cookie one user's answer set would ride along on the next
    user's request. Tether's OAuth and MCP traffic needs no cookies; the headless
    authorization walk (``net/browser.py``) keeps its own jar for one walk only.
    """

    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie: Cookie, request: object) -> bool:
        return False

    def return_ok(self, cookie: Cookie, request: object) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: object) -> bool:
        return False

    def path_return_ok(self, path: str, request: object) -> bool:
        return False


def no_cookies() -> CookieJar:
    """A cookie jar that never stores a cookie (see :class:`_NoCookies`)."""
    return CookieJar(policy=_NoCookies())


def make_ssl_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """Build the TLS context: system trust, or one server's own CA bundle.

    Certificate and host name verification stay on in both cases.

    Args:
        ca_bundle: Path to a PEM file of CA certificates to trust instead of the
            system's, for a server with a private CA.

    Returns:
        A client TLS context.

    Raises:
        ConfigurationError: The CA bundle cannot be read or parsed.
    """
    if ca_bundle is None:
        return httpx2.create_ssl_context()
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot load the CA bundle {ca_bundle}: {exc}",
            hint="point the server's CA bundle at a readable PEM file",
        ) from exc


def guarded_client(
    policy: NetworkPolicy,
    *,
    timeout: float,
    follow_redirects: bool,
    max_redirects: int = 5,
    max_body: int | None = DEFAULT_MAX_BODY,
    ca_bundle: str | None = None,
    connect_timeout: float | None = None,
    headers: dict[str, str] | None = None,
    auth: httpx2.Auth | None = None,
    resolver: Resolver = system_resolver,
) -> httpx2.AsyncClient:
    """Return an ``httpx2.AsyncClient`` whose every hop passes the SSRF policy.

    The client keeps no cookies: it is shared by every subject of a server, and
    nothing one request receives may reach another (issue 8 item 2).

    Close it (``async with`` or ``aclose()``). Hand it to the MCP SDK as
    ``streamable_http_client(url, http_client=...)``, never letting the SDK build its
    own.

    Args:
        policy: The SSRF policy (SSRF-1 … SSRF-9).
        timeout: Seconds for each connect, read, write and pool wait (SSRF-8). A
            server that keeps sending keeps a read alive; bound the whole exchange with
            :func:`deadline`.
        follow_redirects: Follow 3xx responses, re-checking each hop (SSRF-4). Pass
            ``False`` for OAuth endpoints (design-notes R3.1 6).
        max_redirects: Hop cap when following redirects (SSRF-4).
        max_body: Response size cap in bytes, enforced while streaming; for
            ``text/event-stream`` it caps each event. ``None`` disables it.
        ca_bundle: PEM file of CAs to trust for this server instead of the system's.
        connect_timeout: Seconds to resolve and connect; defaults to ``timeout``.
        headers: Default headers.
        auth: Default ``httpx2.Auth`` (e.g. ``mcp/``'s bearer auth).
        resolver: Name resolution; injectable for tests.

    Returns:
        A new client.

    Raises:
        UsageError: A timeout, cap or hop count is not positive.
        ConfigurationError: The CA bundle cannot be loaded.
    """
    if timeout <= 0 or (connect_timeout is not None and connect_timeout <= 0):
        raise UsageError("timeouts must be positive")
    if max_redirects < 0 or (max_body is not None and max_body <= 0):
        raise UsageError("max_redirects and max_body must be positive")
    transport = GuardedTransport(
        policy,
        ssl_context=make_ssl_context(ca_bundle),
        resolver=resolver,
        max_body=max_body,
    )
    return httpx2.AsyncClient(
        transport=transport,
        timeout=httpx2.Timeout(timeout, connect=connect_timeout or timeout),
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        headers=headers,
        auth=auth,
        cookies=no_cookies(),  # shared by every subject: no state between requests
        trust_env=False,  # no proxies or .netrc from the environment
    )


@asynccontextmanager
async def deadline(
    seconds: float, *, server: str | None = None, step: str | None = None
) -> AsyncIterator[None]:
    """Bound a whole exchange in time, however the server dribbles bytes (SSRF-8).

    Per-operation timeouts restart on every chunk; a server streaming keep-alives
    forever never trips them. This cancels the block after ``seconds`` instead.

    Args:
        seconds: The overall deadline (a server's configured timeout, design-notes D1).
        server: Server name for the error.
        step: Flow step for the error.

    Yields:
        Nothing; wraps the block.

    Raises:
        RequestTimeout: The deadline passed.
    """
    try:
        with anyio.fail_after(seconds):
            yield
    except TimeoutError as exc:
        raise RequestTimeout(
            f"no complete answer within {seconds:g} s", server=server, step=step
        ) from exc


def _translate(exc: httpx2.HTTPError) -> TetherError:
    if isinstance(exc, httpx2.TooManyRedirects):
        return BlockedDestination(f"stopped after too many redirects: {exc}")
    if isinstance(exc, httpx2.TimeoutException):
        return RequestTimeout(f"timed out: {exc}")
    if isinstance(exc, httpx2.UnsupportedProtocol):
        return BlockedDestination(f"refused the URL: {exc}")
    if isinstance(exc, httpx2.HTTPStatusError):
        return RemoteError(
            f"HTTP {exc.response.status_code} from {exc.request.url.host}",
            details={"status": exc.response.status_code},
        )
    return NetworkError(f"{type(exc).__name__}: {exc}")


@contextmanager
def mapped_errors(
    *, server: str | None = None, step: str | None = None
) -> Iterator[None]:
    """Turn ``httpx2`` exceptions into Tether errors carrying ``server`` and ``step``.

    Tether errors raised inside (the transport already raises them) get ``server``
    and ``step`` filled in where they are missing. Works around ``await`` in async code.

    Args:
        server: Server name or URL for the error.
        step: Flow step, e.g. ``"discovery"`` or ``"token"``.

    Yields:
        Nothing; wraps the block.

    Raises:
        BlockedDestination: Too many redirects, or an unusable URL (SSRF-4).
        RequestTimeout: A timeout.
        RemoteError: ``raise_for_status()`` failed.
        NetworkError: Any other ``httpx2`` error.
    """
    try:
        yield
    except TetherError as exc:
        exc.server = exc.server or server
        exc.step = exc.step or step
        raise
    except httpx2.InvalidURL as exc:
        raise BlockedDestination(
            f"refused the URL: {exc}", server=server, step=step
        ) from exc
    except httpx2.HTTPError as exc:
        error = _translate(exc)
        error.server, error.step = server, step
        raise error from exc
