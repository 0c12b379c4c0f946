"""The guarded transport: every request and redirect hop passes the SSRF policy.

:class:`GuardedTransport` is an ``httpx2.AsyncBaseTransport`` around two hand-built
``httpcore2.AsyncConnectionPool`` objects (one per scheme) whose network backend is a
:class:`~tether.net.backend.GuardedBackend` — httpx2's own ``AsyncHTTPTransport`` takes
no network backend (style example 7). For each request it checks the URL, refuses an
``https`` → ``http`` downgrade across redirect hops (SSRF-4), lets the backend check
every resolved address (SSRF-5), caps the response body while it streams (SSRF-8), and
translates ``httpcore2`` exceptions into Tether's (style example 6).
"""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Final

import httpcore2
import httpx2

from tether.errors import (
    BlockedDestination,
    NetworkError,
    RequestTimeout,
    ResponseTooLarge,
    TetherError,
    UsageError,
)
from tether.net.backend import GuardedBackend, Resolver, system_resolver
from tether.net.policy import NetworkPolicy

__all__ = ["GuardedTransport", "map_httpcore_errors"]

#: Request extension carrying the previous hop's scheme; httpx2 copies a request's
#: extensions into the request it builds for a redirect.
HOP_SCHEME: Final = "tether.hop_scheme"

_TLS_HINT: Final = "if the server uses a private CA, configure its CA bundle"


def _describe_connect_error(host: str, exc: httpcore2.ConnectError) -> TetherError:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return NetworkError(
            f"TLS certificate verification failed for {host}: "
            f"{cause.verify_message or cause}",
            hint=_TLS_HINT,
        )
    if isinstance(cause, ssl.SSLError):
        return NetworkError(f"TLS handshake with {host} failed: {cause}")
    return NetworkError(
        f"could not connect to {host}: {str(exc) or 'connection failed'}"
    )


@contextmanager
def map_httpcore_errors(host: str) -> Iterator[None]:
    """Translate ``httpcore2`` exceptions into Tether errors naming the host.

    Mirrors httpx2's ``map_httpcore_exceptions``: the most specific mapping wins and
    the original exception is chained. Tether errors pass through unchanged.

    Args:
        host: The host the request went to, for the message.

    Yields:
        Nothing; wraps the block.

    Raises:
        RequestTimeout: A connect, read, write or pool timeout.
        NetworkError: Connecting, TLS, reading or writing failed, or the server broke
            HTTP.
        BlockedDestination: An unsupported protocol.
        UsageError: We built an invalid HTTP message.
    """
    try:
        yield
    except httpcore2.TimeoutException as exc:
        phase = type(exc).__name__.removesuffix("Timeout").lower() or "request"
        raise RequestTimeout(f"{phase} timed out talking to {host}") from exc
    except httpcore2.ConnectError as exc:
        raise _describe_connect_error(host, exc) from exc
    except httpcore2.UnsupportedProtocol as exc:
        raise BlockedDestination(f"refused to connect to {host}: {exc}") from exc
    except httpcore2.LocalProtocolError as exc:
        raise UsageError(f"invalid HTTP request to {host}: {exc}") from exc
    except httpcore2.RemoteProtocolError as exc:
        raise NetworkError(f"{host} broke the HTTP protocol: {exc}") from exc
    except (httpcore2.NetworkError, httpcore2.ProtocolError) as exc:
        raise NetworkError(f"connection to {host} failed: {exc}") from exc


#: WHATWG HTML §9.2.6: lines end in CRLF, LF or CR; an empty line ends an event.
_EVENT_END: Final = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def event_sizes(
    counted: int, tail: bytes, chunk: bytes
) -> tuple[list[int], int, bytes]:
    """Split a chunk of an event stream at event boundaries and measure the events.

    Args:
        counted: Bytes of the current, unfinished event seen before this chunk.
        tail: The last few bytes before this chunk (a boundary may straddle chunks).
        chunk: The new bytes.

    Returns:
        The sizes of the events this chunk finishes, the size of the unfinished
        event after it, and the new tail.
    """
    buffer = tail + chunk
    start = len(tail)
    finished: list[int] = []
    for match in _EVENT_END.finditer(buffer):
        if match.end() <= start:
            continue  # a boundary wholly inside the tail was counted already
        finished.append(counted + match.end() - start)
        counted, start = 0, match.end()
    return finished, counted + len(buffer) - start, buffer[-3:]


class CappedStream(httpx2.AsyncByteStream):
    """A response body that raises :class:`ResponseTooLarge` past its cap (SSRF-8).

    Counting happens while streaming, so an oversized body is never read whole. For
    ``text/event-stream`` the cap applies to each event rather than the whole stream, so
    a long-lived SSE stream of small events keeps working while one huge event is still
    refused; a stream that never ends is the per-request deadline's job.

    Args:
        inner: The ``httpcore2`` body.
        host: For messages.
        limit: Maximum bytes (per event for SSE); ``None`` for no cap.
        per_event: Count bytes since the last SSE event boundary.
    """

    def __init__(
        self,
        inner: AsyncIterable[bytes],
        *,
        host: str,
        limit: int | None,
        per_event: bool = False,
    ) -> None:
        self._inner = inner
        self._host = host
        self._limit = limit
        self._per_event = per_event

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """Yield the body's chunks, counting them against the cap.

        Yields:
            Body chunks, unchanged.

        Raises:
            ResponseTooLarge: The body (or one SSE event) passed the cap.
        """
        counted = 0
        tail = b""
        with map_httpcore_errors(self._host):
            async for chunk in self._inner:
                if self._per_event:
                    finished, counted, tail = event_sizes(counted, tail, chunk)
                    largest = max([counted, *finished])
                else:
                    counted += len(chunk)
                    largest = counted
                if self._limit is not None and largest > self._limit:
                    what = "an event from" if self._per_event else "the response from"
                    raise ResponseTooLarge(
                        f"{what} {self._host} is larger than {self._limit} bytes",
                        details={"limit": self._limit},
                    )
                yield chunk

    async def aclose(self) -> None:
        """Close the underlying ``httpcore2`` body."""
        aclose = getattr(self._inner, "aclose", None)
        if aclose is not None:
            await aclose()


class GuardedTransport(httpx2.AsyncBaseTransport):
    """The only transport Tether sends requests through (style example 7).

    Args:
        policy: The SSRF policy for every hop.
        ssl_context: TLS settings (see :func:`tether.net.client.make_ssl_context`).
        resolver: Name resolution; the system resolver by default.
        max_body: Response size cap in bytes (per event for SSE); ``None`` for none.
        max_connections: Pool size per scheme.
    """

    def __init__(
        self,
        policy: NetworkPolicy,
        *,
        ssl_context: ssl.SSLContext,
        resolver: Resolver = system_resolver,
        max_body: int | None = 5 * 1024 * 1024,
        max_connections: int = 20,
    ) -> None:
        self._policy = policy
        self._max_body = max_body
        self._pools = {
            scheme: httpcore2.AsyncConnectionPool(
                ssl_context=ssl_context,
                max_connections=max_connections,
                network_backend=GuardedBackend(
                    policy, scheme=scheme, resolver=resolver
                ),
            )
            for scheme in ("http", "https")
        }

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Check the hop, send it through the pinned pool, and cap the response body.

        Args:
            request: One request or redirect hop.

        Returns:
            The response, with a capped, error-mapped body stream.

        Raises:
            BlockedDestination: The URL, an address or a downgrade was refused.
            NetworkError: The request failed (see :func:`map_httpcore_errors`).
        """
        url = self._policy.check_url(request.url)
        host = url.raw_host.decode("ascii")
        previous = request.extensions.get(HOP_SCHEME)
        if previous == "https" and url.scheme == "http":  # SSRF-4
            raise BlockedDestination(
                f"refused a redirect from https to plain http at {host}",
                details={"host": host, "reason": "https to http downgrade"},
            )
        request.extensions[HOP_SCHEME] = url.scheme
        core_request = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(
                scheme=url.raw_scheme,
                host=url.raw_host,
                port=url.port,
                target=url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions={k: v for k, v in request.extensions.items() if k != HOP_SCHEME},
        )
        with map_httpcore_errors(host):
            response = await self._pools[url.scheme].handle_async_request(core_request)
        content_type = httpx2.Headers(response.headers).get("content-type", "")
        stream = CappedStream(
            response.stream,  # type: ignore[arg-type]
            host=host,
            limit=self._max_body,
            per_event=content_type.lower().startswith("text/event-stream"),
        )
        return httpx2.Response(
            status_code=response.status,
            headers=response.headers,
            stream=stream,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close both connection pools."""
        for pool in self._pools.values():
            await pool.aclose()
