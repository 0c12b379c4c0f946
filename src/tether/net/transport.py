"""The guarded transport: every request and redirect hop passes the SSRF policy.

:class:`GuardedTransport` is an ``httpx2.AsyncBaseTransport`` around two hand-built
``httpcore2.AsyncConnectionPool`` objects (one per scheme) whose network backend is a
:class:`~tether.net.backend.GuardedBackend` — httpx2's own ``AsyncHTTPTransport`` takes
no network backend (design-notes S7). For each request it checks the URL, refuses an
``https`` → ``http`` downgrade across redirect hops (SSRF-4), lets the backend check
every resolved address (SSRF-5), caps the response body while it streams (SSRF-8), and
translates ``httpcore2`` exceptions into Tether's (design-notes S6).

The cap counts *decoded* bytes. A compressed body (``Content-Encoding: gzip`` or
``deflate``, RFC 9110 §8.4.1) is inflated here, in bounded pieces, and handed up without
its ``Content-Encoding``, so ``httpx2`` never inflates it again behind the cap: a 64 KB
gzip answer that would inflate to 64 MB ends in :class:`ResponseTooLarge` after at most
the cap. Requests offer only those two codings; any other coding in a response (``br``,
``zstd``, a chain of codings) is refused, since it could not be counted while it inflates.

Connections are kept alive and reused (issue #3): only a *new* connection resolves a
name, and the backend vets every address it resolved before connecting, so reuse never
skips a check; the URL and the redirect rules are checked on every request.
"""

from __future__ import annotations

import re
import ssl
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Final

import anyio
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

__all__ = [
    "LONG_LIVED",
    "GuardedTransport",
    "broken_connection",
    "map_httpcore_errors",
]

#: Request extension carrying the previous hop's scheme; httpx2 copies a request's
#: extensions into the request it builds for a redirect.
HOP_SCHEME: Final = "tether.hop_scheme"
#: Request extension (any true value) marking a response stream that stays open for
#: the life of a session: an MCP ``subscriptions/listen`` stream or a stateful
#: session's GET stream. Such requests use a pool of their own (issue 9).
LONG_LIVED: Final = "tether.long_lived"
#: Connections per scheme for long-lived streams (one per open stream).
MAX_STREAMS: Final = 10_000

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


_QUOTED: Final = re.compile(r"""\s*b?['"]|:""")


def translate_httpcore_error(host: str, exc: Exception) -> Exception:
    """The Tether error for an ``httpcore2`` exception, or ``exc`` itself.

    Mirrors httpx2's ``map_httpcore_exceptions``: the most specific mapping wins.

    Args:
        host: The host the request went to, for the message.
        exc: The exception raised.

    Returns:
        A :class:`TetherError`, or ``exc`` unchanged when it is not ``httpcore2``'s.
    """
    if isinstance(exc, httpcore2.TimeoutException):
        phase = type(exc).__name__.removesuffix("Timeout").lower() or "request"
        return RequestTimeout(f"{phase} timed out talking to {host}")
    if isinstance(exc, httpcore2.ConnectError):
        return _describe_connect_error(host, exc)
    if isinstance(exc, httpcore2.UnsupportedProtocol):
        return BlockedDestination(f"refused to connect to {host}: {exc}")
    if isinstance(exc, httpcore2.LocalProtocolError):
        # h11 quotes the offending header: never echo it, it may be a token.
        what = _QUOTED.split(str(exc), maxsplit=1)[0].strip() or "malformed request"
        return UsageError(f"invalid HTTP request to {host}: {what} (value not shown)")
    if isinstance(exc, httpcore2.RemoteProtocolError):
        return NetworkError(f"{host} broke the HTTP protocol: {exc}")
    if isinstance(exc, httpcore2.NetworkError | httpcore2.ProtocolError):
        return NetworkError(f"connection to {host} failed: {exc}")
    return exc


#: What :func:`translate_httpcore_error` maps (checked once per exception, not per
#: chunk: the body stream's hot path has no context manager).
_BROKEN: Final = (
    httpcore2.ReadError,
    httpcore2.WriteError,
    httpcore2.RemoteProtocolError,
    httpx2.ReadError,
    httpx2.WriteError,
    httpx2.RemoteProtocolError,
)


def broken_connection(exc: BaseException) -> bool:
    """Whether a request failed because its connection broke under it.

    A reset, an EOF, or a server that closed without answering, seen by ``httpcore2``
    or ``httpx2`` directly or as the cause of the Tether error this module raised for
    it; not a refused connect, a timeout or a refusal of the guard. This is what a
    server closing an idle pooled connection just as a request reuses it looks like.
    """
    return isinstance(exc, _BROKEN) or isinstance(exc.__cause__, _BROKEN)


_HTTPCORE_ERRORS: Final = (
    httpcore2.TimeoutException,
    httpcore2.NetworkError,
    httpcore2.ProtocolError,
    httpcore2.UnsupportedProtocol,
)


@contextmanager
def map_httpcore_errors(host: str) -> Iterator[None]:
    """Translate ``httpcore2`` exceptions into Tether errors naming the host.

    The original exception is chained. Tether errors pass through unchanged.

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
    except _HTTPCORE_ERRORS as exc:
        raise translate_httpcore_error(host, exc) from exc


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


#: Content codings Tether accepts (RFC 9110 §8.4.1), all inflated under the cap.
ACCEPT_ENCODING: Final = b"gzip, deflate"
#: Largest decoded piece handed up at once: memory per body stays near this.
PIECE: Final = 64 * 1024
_CODINGS: Final = {b"gzip": "gzip", b"x-gzip": "gzip", b"deflate": "deflate"}


def content_coding(host: str, headers: list[tuple[bytes, bytes]]) -> str | None:
    """The one content coding of a response body, or ``None`` for an identity body.

    Args:
        host: For messages.
        headers: The response headers.

    Returns:
        ``"gzip"``, ``"deflate"`` or ``None``.

    Raises:
        NetworkError: A coding Tether did not offer, or more than one coding.
    """
    codings = [
        coding.strip().lower()
        for name, value in headers
        if name.lower() == b"content-encoding"
        for coding in value.split(b",")
        if coding.strip().lower() not in (b"", b"identity")
    ]
    if not codings:
        return None
    if len(codings) > 1 or codings[0] not in _CODINGS:
        shown = ", ".join(c.decode("latin-1") for c in codings)
        raise NetworkError(
            f"{host} sent a body with the content coding '{shown}'; Tether accepts "
            "only one of gzip or deflate",
            details={"content_encoding": shown},
        )
    return _CODINGS[codings[0]]


class Inflater:
    """Inflates one gzip or deflate body in pieces of at most :data:`PIECE` bytes.

    ``deflate`` is the zlib format (RFC 9110 §8.4.1.2); a raw deflate stream, which
    some servers send instead, is accepted as well. Data after the end of the
    compressed stream is refused rather than kept.

    Args:
        coding: ``"gzip"`` or ``"deflate"``.
        host: For messages.
    """

    def __init__(self, coding: str, host: str) -> None:
        self.coding = coding
        self._host = host
        wbits = zlib.MAX_WBITS | 16 if coding == "gzip" else zlib.MAX_WBITS
        self._inflate = zlib.decompressobj(wbits)
        self._seen = False  # any input at all (an empty body is a valid empty body)
        self._raw_fallback = coding == "deflate"

    def feed(self, data: bytes) -> bytes:
        """Inflate new input; return at most :data:`PIECE` bytes (see :meth:`more`).

        Raises:
            NetworkError: The input is not valid for the coding.
        """
        if not data:
            return b""
        first, self._seen = not self._seen, True
        try:
            return self._step(data)
        except zlib.error as exc:
            if not (first and self._raw_fallback):
                raise self._invalid(exc) from exc
        self._raw_fallback = False
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            return self._step(data)
        except zlib.error as exc:
            raise self._invalid(exc) from exc

    def more(self) -> bytes:
        """The next piece of output still held back from earlier input, or ``b""``."""
        tail = self._inflate.unconsumed_tail
        if not tail:
            return b""
        try:
            return self._step(tail)
        except zlib.error as exc:  # pragma: no cover - zlib reports errors on feed
            raise self._invalid(exc) from exc

    def finish(self) -> None:
        """Check, at the end of the body, that the compressed stream was complete.

        Raises:
            NetworkError: The body ended inside the compressed stream.
        """
        if self._seen and not self._inflate.eof:
            raise NetworkError(
                f"the {self.coding} body from {self._host} was cut off (truncated)"
            )

    def _step(self, data: bytes) -> bytes:
        if self._inflate.eof:
            raise self._trailing()
        out = self._inflate.decompress(data, PIECE)
        if self._inflate.unused_data:
            raise self._trailing()
        return out

    def _trailing(self) -> NetworkError:
        return NetworkError(
            f"{self._host} sent data after the end of its {self.coding} body"
        )

    def _invalid(self, exc: zlib.error) -> NetworkError:
        return NetworkError(f"{self._host} sent an invalid {self.coding} body: {exc}")


#: Closing a response whose body was not read to the end costs the connection: h11 can
#: only start the next request once the server's message is complete. The MCP SDK closes
#: an SSE response as soon as the JSON-RPC answer arrives, a moment before the server's
#: end-of-stream chunk, so every call used to open (and TLS-handshake) a new connection.
#: Closing therefore first reads what is left, within these bounds, and discards it.
DRAIN_SECONDS: Final = 0.25
DRAIN_BYTES: Final = 64 * 1024


class CappedStream(httpx2.AsyncByteStream):
    """A response body that raises :class:`ResponseTooLarge` past its cap (SSRF-8).

    Counting happens while streaming, so an oversized body is never read whole. For
    ``text/event-stream`` the cap applies to each event rather than the whole stream, so
    a long-lived SSE stream of small events keeps working while one huge event is still
    refused; a stream that never ends is the per-request deadline's job.

    :meth:`aclose` on a body that is not finished reads and discards the rest first (at
    most :data:`DRAIN_BYTES`, within :data:`DRAIN_SECONDS`), so the connection goes back
    to the pool instead of being closed (issue #3). A body that failed (an error or the
    cap) is never drained; a body still being read by another task is not either.

    With an ``inflater`` the body is inflated here and the cap counts the inflated
    bytes; no single chunk handed up is larger than :data:`PIECE`.

    Args:
        inner: The ``httpcore2`` body.
        host: For messages.
        limit: Maximum bytes (per event for SSE); ``None`` for no cap.
        per_event: Count bytes since the last SSE event boundary.
        inflater: Inflates a compressed body (see :func:`content_coding`).
        on_close: Called once when the body is closed.
    """

    def __init__(
        self,
        inner: AsyncIterable[bytes],
        *,
        host: str,
        limit: int | None,
        per_event: bool = False,
        inflater: Inflater | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._inner = inner
        self._host = host
        self._limit = limit
        self._per_event = per_event
        self._inflater = inflater
        self._on_close = on_close
        self._chunks: AsyncIterator[bytes] | None = None
        self._counted = 0
        self._tail = b""
        self._finished = False  # read to the end, failed, or closed: nothing to drain
        self._reading = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        """Iterate the body's chunks, counting them against the cap.

        Returns:
            This stream (one pass over the body; see :meth:`__anext__`).
        """
        return self

    async def __anext__(self) -> bytes:
        """The next chunk, unchanged.

        Returns:
            A body chunk, inflated if the body was compressed.

        Raises:
            ResponseTooLarge: The body (or one SSE event) passed the cap.
            NetworkError: A compressed body is invalid or incomplete.
            StopAsyncIteration: The body is complete.
        """
        chunk = await self._pull() if self._inflater is None else await self._inflated()
        limit = self._limit
        if limit is not None:
            if self._per_event:
                finished, self._counted, self._tail = event_sizes(
                    self._counted, self._tail, chunk
                )
                largest = max(self._counted, *finished) if finished else self._counted
            else:
                self._counted += len(chunk)
                largest = self._counted
            if largest > limit:
                self._finished = True
                what = "an event from" if self._per_event else "the response from"
                raise ResponseTooLarge(
                    f"{what} {self._host} is larger than {limit} bytes",
                    details={"limit": limit},
                )
        return chunk

    async def _inflated(self) -> bytes:
        inflater = self._inflater
        assert inflater is not None
        piece = inflater.more()
        while not piece:
            try:
                raw = await self._pull()
            except StopAsyncIteration:
                inflater.finish()
                raise
            try:
                piece = inflater.feed(raw)
            except TetherError:
                self._finished = True
                raise
        return piece

    async def _pull(self) -> bytes:
        if self._finished:
            raise StopAsyncIteration
        if self._chunks is None:
            self._chunks = aiter(self._inner)
        self._reading = True
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            self._finished = True
            raise
        except _HTTPCORE_ERRORS as exc:
            self._finished = True
            raise translate_httpcore_error(self._host, exc) from exc
        except BaseException:
            self._finished = True
            raise
        finally:
            self._reading = False

    async def _drain(self) -> None:
        if self._finished or self._reading or not hasattr(self._inner, "__aiter__"):
            return
        drained = 0
        with anyio.move_on_after(DRAIN_SECONDS):
            while drained <= DRAIN_BYTES:
                try:
                    drained += len(await self._pull())
                except (StopAsyncIteration, TetherError):
                    return

    async def aclose(self) -> None:
        """Read what is left of an unfinished body (see above), then close it."""
        try:
            await self._drain()
        finally:
            self._finished = True
            on_close, self._on_close = self._on_close, None
            try:
                aclose = getattr(self._inner, "aclose", None)
                if aclose is not None:
                    with anyio.CancelScope(shield=True):
                        await aclose()
            finally:
                if on_close is not None:
                    on_close()


#: Origins whose URL check passed, remembered per transport (see ``_check_url``).
_PASSED_MAX: Final = 256


def _offer_codings(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The request headers with ``Accept-Encoding`` naming only what we inflate."""
    kept = [(k, v) for k, v in headers if k.lower() != b"accept-encoding"]
    return [*kept, (b"Accept-Encoding", ACCEPT_ENCODING)]


def _is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.lower().startswith(b"text/event-stream")
    return False


class GuardedTransport(httpx2.AsyncBaseTransport):
    """The only transport Tether sends requests through (design-notes S7).

    Args:
        policy: The SSRF policy for every hop.
        ssl_context: TLS settings (see :func:`tether.net.client.make_ssl_context`).
        resolver: Name resolution; the system resolver by default.
        max_body: Response size cap in bytes (per event for SSE); ``None`` for none.
        max_connections: Connections per scheme for requests (httpx2's default, 100).
            One client serves every session with a server.
        max_streams: Connections per scheme for requests marked :data:`LONG_LIVED`
            (an MCP ``subscriptions/listen`` stream, a stateful session's GET
            stream). Each holds its connection for as long as it is open, so they
            get a pool of their own: however many sessions keep a stream open, a
            request never waits for a connection a stream holds (issue 9: the 101st
            session used to wait forever). Their connections are not kept idle.
        max_keepalive_connections: Idle connections kept per scheme; by default as
            many as ``max_connections``, so a burst of N concurrent callers leaves N
            connections for the next burst instead of closing all but 20 (httpx2's
            default) and reconnecting, TLS included (issue 9 item 4). Idle ones still
            close after ``keepalive_expiry``.
        keepalive_expiry: Seconds an idle connection is kept.
    """

    def __init__(
        self,
        policy: NetworkPolicy,
        *,
        ssl_context: ssl.SSLContext,
        resolver: Resolver = system_resolver,
        max_body: int | None = 5 * 1024 * 1024,
        max_connections: int = 100,
        max_keepalive_connections: int | None = None,
        keepalive_expiry: float = 5.0,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        if max_keepalive_connections is None:
            max_keepalive_connections = max_connections
        self._policy = policy
        self._max_body = max_body
        self._passed: set[tuple[bytes, bytes, int | None, bytes]] = set()
        #: Requests started, and requests whose response is not closed yet.
        self.started = 0
        self.open = 0
        self._pools = {
            scheme: httpcore2.AsyncConnectionPool(
                ssl_context=ssl_context,
                max_connections=max_connections,
                max_keepalive_connections=max_keepalive_connections,
                keepalive_expiry=keepalive_expiry,
                network_backend=GuardedBackend(
                    policy, scheme=scheme, resolver=resolver
                ),
            )
            for scheme in ("http", "https")
        }
        self._stream_pools = {
            scheme: httpcore2.AsyncConnectionPool(
                ssl_context=ssl_context,
                max_connections=max_streams,
                max_keepalive_connections=0,
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
        url = request.url
        self._check_url(url)
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
            headers=_offer_codings(request.headers.raw),
            content=request.stream,
            extensions={
                k: v
                for k, v in request.extensions.items()
                if k not in (HOP_SCHEME, LONG_LIVED)
            },
        )
        pools = (
            self._stream_pools if request.extensions.get(LONG_LIVED) else self._pools
        )
        self.started += 1
        self.open += 1
        try:
            with map_httpcore_errors(host):
                pool = pools[url.scheme]
                response = await pool.handle_async_request(core_request)
            headers = response.headers
            try:
                coding = content_coding(host, headers)
            except NetworkError:
                await response.aclose()
                raise
        except BaseException:
            self.open -= 1
            raise
        if coding is not None:  # inflated below, so httpx2 must not inflate it again
            headers = [
                (name, value)
                for name, value in headers
                if name.lower() not in (b"content-encoding", b"content-length")
            ]
        stream = CappedStream(
            response.stream,  # type: ignore[arg-type]
            host=host,
            limit=self._max_body,
            per_event=_is_event_stream(headers),
            inflater=None if coding is None else Inflater(coding, host),
            on_close=self._closed_one,
        )
        return httpx2.Response(
            status_code=response.status,
            headers=headers,
            stream=stream,
            extensions=response.extensions,
        )

    def _check_url(self, url: httpx2.URL) -> None:
        """Check a hop's URL (SSRF-1, SSRF-2), remembering the origins that passed.

        The verdict depends only on the scheme, host, port and user info, and the
        policy is immutable, so an origin that passed once passes again: the cache
        saves re-parsing on every call without skipping a check. Refusals are not
        cached. Addresses are checked per new connection by the backend (SSRF-5).
        """
        key = (url.raw_scheme, url.raw_host, url.port, url.userinfo)
        if key in self._passed:
            return
        self._policy.check_url(url)
        if len(self._passed) >= _PASSED_MAX:
            self._passed.clear()
        self._passed.add(key)

    def _closed_one(self) -> None:
        self.open -= 1

    async def close_idle(self) -> bool:
        """Close every pooled connection if no request is in flight; stay usable.

        A later request simply opens a new connection. Nothing is closed while any
        response (an MCP GET stream, say) is still open.

        Returns:
            Whether the connections were closed.
        """
        for pool in [*self._pools.values(), *self._stream_pools.values()]:
            if self.open:
                return False
            await pool.aclose()  # takes its connections before its first await
        return True

    async def aclose(self) -> None:
        """Close every connection pool."""
        for pool in [*self._pools.values(), *self._stream_pools.values()]:
            await pool.aclose()
