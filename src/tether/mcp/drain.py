"""A transport whose messages never land on a closed session (issue 10 item 9).

The SDK's ``Client`` closes its session's streams first and its transport after: for a
stateful session the transport then still sends the ``DELETE`` and only after that
cancels its readers. Two things went wrong in between:

* the session's read stream was closed, so a server message arriving then — a log
  message or a list change on the listening GET stream, an event on a
  ``subscriptions/listen`` stream — hit ``BrokenResourceError``;
* closing the session's write stream ends the transport's writer task, which closes
  the transport's own read-side writer under the still-running GET reader:
  ``ClosedResourceError``.

Either way the SDK logged ``Error parsing SSE message`` with the traceback on stderr
(about one successful call in eight against servers that send such messages).
:func:`drained` fixes both at the seam: a relay reads the transport's stream until the
transport closes, handing each message to the session while it is open and dropping
(debug-logging) what comes after; and the session's closing of its write stream is
not passed on, so the transport closes its streams itself, after its readers stopped.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["drained"]

logger = logging.getLogger(__name__)

_Envelope = tuple[contextvars.Context | None, Any]


class _Inbox:
    """The session's read stream; ``last_context`` is the sender's (the SDK reads it)."""

    def __init__(self, receive: MemoryObjectReceiveStream[_Envelope]) -> None:
        self._receive = receive
        self.last_context: contextvars.Context | None = None

    async def receive(self) -> Any:
        context, item = await self._receive.receive()
        self.last_context = context
        return item

    async def aclose(self) -> None:
        await self._receive.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Outbox:
    """The session's write stream; closing it is left to the transport (see above)."""

    def __init__(self, write: Any) -> None:
        self._write = write

    async def send(self, item: Any, /) -> None:
        await self._write.send(item)

    async def aclose(self) -> None:
        """Nothing: the transport closes its stream when it ends, readers first."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _relay(read: Any, send: MemoryObjectSendStream[_Envelope]) -> None:
    """Move messages to the session until the transport closes; then drop them."""
    async with send:
        try:
            async for item in read:
                try:
                    await send.send((getattr(read, "last_context", None), item))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    logger.debug("MCP message after the session closed: dropped")
        except anyio.ClosedResourceError:
            pass  # the transport closed its stream: nothing more can come


@asynccontextmanager
async def drained(
    transport: AbstractAsyncContextManager[tuple[Any, Any]],
) -> AsyncIterator[tuple[_Inbox, _Outbox]]:
    """``transport``'s streams, with its read side drained until the transport closes."""
    send, receive = anyio.create_memory_object_stream[_Envelope](0)
    async with anyio.create_task_group() as relays:
        async with transport as (read, write):
            relays.start_soon(_relay, read, send)
            yield _Inbox(receive), _Outbox(write)
        relays.cancel_scope.cancel()
