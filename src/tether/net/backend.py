"""A network backend for httpcore2 that resolves, checks and pins addresses (SSRF-5).

httpcore2's connection calls ``connect_tcp(host, port)`` with the URL's host name, and
then ``start_tls(server_hostname=host)`` on the stream it gets back (see
``httpcore2/_async/connection.py``, ``AsyncHTTPConnection._connect``). So this backend
can resolve the name once, check *every* answer with the :class:`NetworkPolicy`, and
open the socket to an address it checked, while TLS still sends SNI for, and verifies
the certificate against, the original host name. There is no second lookup for a
rebinding resolver to answer differently (design-notes R3.1 5).
"""

from __future__ import annotations

import ipaddress
import select
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import anyio
import httpcore2

from tether.errors import NetworkError
from tether.net.policy import Address, NetworkPolicy

__all__ = ["GuardedBackend", "Resolver", "system_resolver", "vet_url"]

#: ``(host, port) -> addresses``; injectable so tests never touch real DNS.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

_SocketOption = (
    tuple[int, int, int]
    | tuple[int, int, bytes | bytearray]
    | tuple[int, int, None, int]
)


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve a host with the system resolver, without blocking the event loop.

    Args:
        host: Host name or IP literal.
        port: Port (some resolvers filter by service).

    Returns:
        The distinct addresses, in the resolver's order.
    """
    try:  # an IP literal resolves to itself: skip the resolver thread (issue #3)
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass  # a name, or a legacy IPv4 spelling such as "127.1": resolve it
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def vet_url(
    policy: NetworkPolicy, url: str, *, resolver: Resolver = system_resolver
) -> tuple[Address, ...]:
    """Check a URL and every address its host resolves to, without connecting.

    For validating a server URL on save (design-notes R3.1 4). It proves
    nothing about later requests: the transport checks every connection again
    (SSRF-5).

    Args:
        policy: The SSRF policy.
        url: The URL to check.
        resolver: Name resolution; :func:`system_resolver` by default.

    Returns:
        The checked addresses.

    Raises:
        BlockedDestination: The URL or one of its addresses is refused.
        NetworkError: The name could not be resolved.
    """
    parsed = policy.check_url(url)
    host = parsed.raw_host.decode("ascii").rstrip(".")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = await resolver(host, port)
    except OSError as exc:
        raise NetworkError(f"could not resolve {host}: {exc}") from exc
    return policy.check_addresses(host, addresses, scheme=parsed.scheme, port=port)


def _readable(sock: socket.socket | None) -> bool:
    """Whether a read would not block (on an idle connection: the server closed it).

    A socket without a descriptor counts as readable, so its connection is dropped.
    """
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    if not hasattr(select, "poll"):  # pragma: no cover - Windows
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _KeptStream(httpcore2.AsyncNetworkStream):
    """A connected stream that looks its socket up once, not on every pool pass.

    The pool asks every idle connection ``get_extra_info("is_readable")`` before each
    request it places (``has_expired``); anyio answers by building its whole attribute
    table (with a ``getpeername`` call) each time, which cost more than the rest of the
    transport once connections are kept alive (issue #3). Everything else is passed
    through unchanged.
    """

    def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(
        self,
        max_bytes: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
    ) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(
        self,
        buffer: bytes,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
    ) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
    ) -> httpcore2.AsyncNetworkStream:
        try:
            tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            # httpcore2 closes the socket when the handshake fails, but not when it is
            # cancelled (a deadline, a session closing while it connects): close it
            # here, or the TCP socket is left to the garbage collector.
            with anyio.CancelScope(shield=True):
                await self._inner.aclose()
            raise
        return _KeptStream(tls)

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self._socket
        if info == "is_readable":
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore2.AsyncNetworkBackend):
    """An ``httpcore2`` backend that connects only to addresses the policy allowed.

    One backend serves one scheme, because plain ``http`` is allowed to fewer
    addresses than ``https`` (SSRF-2).

    Args:
        policy: The SSRF policy.
        scheme: ``"http"`` or ``"https"``: the scheme of the pool this backend serves.
        resolver: Name resolution; :func:`system_resolver` by default.
    """

    def __init__(
        self,
        policy: NetworkPolicy,
        *,
        scheme: str,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._policy = policy
        self._scheme = scheme
        self._resolver = resolver
        self._sockets = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
        local_address: str | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        """Resolve ``host``, check every address, and connect to the first that answers.

        Args:
            host: The URL's host name, as httpcore2 passes it.
            port: The port.
            timeout: Connect timeout in seconds, covering resolution too.
            local_address: Local address to bind, passed through.
            socket_options: Socket options, passed through.

        Returns:
            A stream connected to a checked address.

        Raises:
            BlockedDestination: The policy refused an address (SSRF-3, SSRF-5).
            httpcore2.ConnectTimeout: Resolution and connection took too long.
            httpcore2.ConnectError: Resolution failed or no address accepted.
        """
        try:
            with anyio.fail_after(timeout):
                addresses = await self._resolve(host, port)
                checked = self._policy.check_addresses(
                    host, addresses, scheme=self._scheme, port=port
                )
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(f"resolving {host} timed out") from exc
        return await self._connect_first(
            host, checked, port, timeout, local_address, socket_options
        )

    async def _resolve(self, host: str, port: int) -> Sequence[str]:
        try:
            return await self._resolver(host, port)
        except OSError as exc:  # socket.gaierror included
            raise httpcore2.ConnectError(f"could not resolve {host}: {exc}") from exc

    async def _connect_first(
        self,
        host: str,
        addresses: Sequence[Address],
        port: int,
        connect_timeout: float | None,
        local_address: str | None,
        socket_options: Iterable[_SocketOption] | None,
    ) -> httpcore2.AsyncNetworkStream:
        failures: list[str] = []
        for address in addresses:
            try:
                stream = await self._sockets.connect_tcp(
                    str(address),
                    port,
                    timeout=connect_timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore2.ConnectError as exc:
                failures.append(f"{address}: {str(exc) or type(exc).__name__}")
            else:
                return _KeptStream(stream)
        raise httpcore2.ConnectError(
            f"could not connect to {host} port {port} ({'; '.join(failures)})"
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        """Refuse: Tether only speaks TCP to remote servers.

        Args:
            path: Ignored.
            timeout: Ignored.
            socket_options: Ignored.

        Raises:
            httpcore2.UnsupportedProtocol: Always.
        """
        raise httpcore2.UnsupportedProtocol("Unix sockets are not supported")

    async def sleep(self, seconds: float) -> None:
        """Sleep between connection retries (httpcore2 calls this).

        Args:
            seconds: How long.
        """
        await anyio.sleep(seconds)
