"""A one-shot loopback listener for ``tether connect``'s OAuth callback.

When Tether's public URL is a loopback address (a CLI-only installation), the browser is
sent back to ``http://127.0.0.1:<port>/oauth/callback``; this waits for that single
request, answers with a short page, and hands the query parameters to the hub. The page
has no third-party resources, a strict CSP and ``Referrer-Policy: no-referrer`` (CB-6).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from tether.errors import AuthorizationRequired, ConfigurationError
from tether.oauth.callback import parse_callback_query

__all__ = ["await_callback", "wait_for_callback"]

_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>Tether</title>"
    b"<p>Authorization received. You can close this tab and return to the terminal.</p>"
)
_HEADERS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
    b"Content-Security-Policy: default-src 'none'\r\nReferrer-Policy: no-referrer\r\n"
    b"Cache-Control: no-store\r\nConnection: close\r\n"
)


async def wait_for_callback(
    redirect_uri: str, *, seconds: float
) -> dict[str, str | list[str]]:
    """Listen on the redirect URI's loopback port until its path is requested.

    Args:
        redirect_uri: Tether's callback URL (must be http on a loopback host).
        seconds: How long to wait.

    Returns:
        The callback's query parameters, every value of a repeated one kept (the hub
        refuses a repeated parameter, RFC 6749 §3.1).

    Raises:
        TimeoutError: Nothing arrived in time.
    """
    parts = urlsplit(redirect_uri)
    done: asyncio.Future[dict[str, str | list[str]]] = (
        asyncio.get_running_loop().create_future()
    )

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = (await reader.readline()).decode("latin-1").split()
            target = urlsplit(line[1]) if len(line) > 1 else None
            if target is not None and target.path == parts.path and not done.done():
                done.set_result(parse_callback_query(target.query))
                body = _PAGE
            else:
                body = b"<!doctype html><p>Not found.</p>"
            writer.write(_HEADERS + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, parts.hostname, parts.port or 80)
    async with server:
        return await asyncio.wait_for(done, seconds)


async def await_callback(
    redirect_uri: str, wait: int, *, server: str | None, again: str
) -> dict[str, str | list[str]]:
    """:func:`wait_for_callback`, with a timeout or a busy port as one clear error.

    Args:
        redirect_uri: Tether's loopback callback URL.
        wait: Seconds to wait.
        server: The server's name, for the error.
        again: The command to run again (for the hint).

    Raises:
        AuthorizationRequired: Nothing arrived within ``wait`` seconds.
        ConfigurationError: The callback's port cannot be listened on.
    """
    parts = urlsplit(redirect_uri)
    try:
        return await wait_for_callback(redirect_uri, seconds=wait)
    except TimeoutError:
        raise AuthorizationRequired(
            f"no authorization arrived within {wait} s",
            server=server,
            hint=f"run `{again}` again and approve in the browser, "
            "or wait longer with --wait SECONDS",
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot listen for the OAuth callback on {parts.hostname}:{parts.port}: "
            f"{exc.strerror or exc}",
            server=server,
            hint="stop the program using that port, or set TETHER_PUBLIC_URL "
            "(tether probe: --redirect-uri) to another loopback address "
            "(e.g. http://127.0.0.1:8471/oauth/callback)",
        ) from None
