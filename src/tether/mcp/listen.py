"""A 2026-07-28 tool-list subscription held with one task and one HTTP stream (R6.4.7).

At 2026-07-28 a server announces ``notifications/tools/list_changed`` only on a
``subscriptions/listen`` stream (MCP Base ``07``, SEP-2575; HTTP7-1: there is no GET
stream). The exchange, as this module speaks it:

1. The client POSTs one ``subscriptions/listen`` request naming what it wants
   (``notifications.toolsListChanged``), with the revision's ``_meta`` and headers
   like every 2026-07-28 request (HTTP7-3, HTTP7-5).
2. The server answers with an SSE stream. Its first frame is
   ``notifications/subscriptions/acknowledged`` carrying the *honored* filter; every
   frame carries the request's id in ``_meta["io.modelcontextprotocol/subscriptionId"]``.
3. Each ``notifications/tools/list_changed`` frame is a level trigger: "refetch if
   you care". Events are not replayed, so a client that opens the stream again must
   refetch what it holds.
4. The JSON-RPC response to the request is the server's graceful close; a stream that
   ends without it, or a ``notifications/cancelled`` naming the request, is a drop.

Why not the SDK's ``Client.listen``: it rides a whole SDK session (its dispatcher, the
transport's writer and relay tasks, a task for the POST and one to drive it, memory
streams between them). A process holding a thousand tool lists held a thousand of those,
~50 KiB of Python objects each, and could not close a session without losing its
subscription (issue 9, docs/benchmarks.md). Here a subscription is one task and one
response stream on the guarded client's stream pool, independent of any SDK session,
so a stateless session can be released once its list is in (R6.4.7). The frames are
parsed by httpx2's ``EventSource``; the classification is the pure
:func:`classify_frame`, tested without a server.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import anyio
import httpx2
from mcp.types import METHOD_NOT_FOUND

from tether.errors import TetherError
from tether.mcp.tokenless import stateless_request
from tether.oauth._wire import load_json

__all__ = [
    "ListenEnd",
    "ListenLost",
    "classify_frame",
    "listen_for_tool_changes",
]

logger = logging.getLogger(__name__)

LISTEN_METHOD: Final = "subscriptions/listen"
ACKNOWLEDGED: Final = "notifications/subscriptions/acknowledged"
TOOLS_CHANGED: Final = "notifications/tools/list_changed"
CANCELLED: Final = "notifications/cancelled"
SUBSCRIPTION_ID: Final = "io.modelcontextprotocol/subscriptionId"
_MAX_FRAME_DEPTH: Final = 64
READ_TIMEOUT: Final = 300.0
"""Seconds a subscribed stream may stay silent before it is opened again.

MCP defines no keep-alive on a listen stream, and a peer that vanished without a FIN
would otherwise hold it forever. A stream re-opened after silence reports the gap as
any re-opened stream does; the holder revalidates rather than drops its list
(design-notes R6.4.7). The same bound as the SDK's ``sse_read_timeout``."""
_ids = itertools.count(1)

ListenEnd = Literal["closed", "declined", "unsupported"]
"""How a subscription ended for good or for now: ``closed`` (the server's graceful
close: open it again), ``declined`` (acknowledged without ``toolsListChanged``) or
``unsupported`` (-32601: the server does not serve ``subscriptions/listen``)."""


class ListenLost(Exception):
    """The stream failed or dropped without the server's graceful close."""


@dataclass(frozen=True, slots=True)
class Frame:
    """What one message on the listen stream means to this subscription.

    Attributes:
        kind: ``ack``, ``changed``, ``cancelled``, ``result``, ``error`` or ``other``.
        honored: For ``ack``: whether the server honored ``toolsListChanged``.
        code: For ``error``: the JSON-RPC error code.
    """

    kind: Literal["ack", "changed", "cancelled", "result", "error", "other"]
    honored: bool = False
    code: int | None = None


_OTHER: Final = Frame("other")


def classify_frame(message: object, request_id: str) -> Frame:
    """Classify one JSON-RPC message of the stream opened by ``request_id``.

    Pure. Notifications count only when stamped with this subscription's id (SEP-2575:
    every frame carries it), so a stray notification cannot fake an acknowledgment; a
    response counts only with the request's id. Anything else is ``other``.
    """
    if not isinstance(message, Mapping):
        return _OTHER
    if "method" not in message:
        if message.get("id") != request_id:
            return _OTHER
        error = message.get("error")
        if isinstance(error, Mapping):
            code = error.get("code")
            return Frame("error", code=code if type(code) is int else None)
        return Frame("result") if "result" in message else _OTHER
    method = message.get("method")
    params = message.get("params")
    if not isinstance(params, Mapping):
        return _OTHER
    if method == CANCELLED:
        return Frame("cancelled") if params.get("requestId") == request_id else _OTHER
    meta = params.get("_meta")
    if not isinstance(meta, Mapping) or meta.get(SUBSCRIPTION_ID) != request_id:
        return _OTHER
    if method == ACKNOWLEDGED:
        honored = params.get("notifications")
        if not isinstance(honored, Mapping):
            return _OTHER  # malformed: not an acknowledgment
        return Frame("ack", honored=honored.get("toolsListChanged") is True)
    if method == TOOLS_CHANGED:
        return Frame("changed")
    return _OTHER


async def listen_for_tool_changes(
    http: httpx2.AsyncClient,
    url: str,
    *,
    version: str,
    client_info: Mapping[str, Any],
    ack_timeout: float,
    read_timeout: float | None = READ_TIMEOUT,
    on_acknowledged: Callable[[], Awaitable[None]],
    on_changed: Callable[[], Awaitable[None]],
) -> ListenEnd:
    """Hold one ``subscriptions/listen`` stream for tool-list changes until it ends.

    Args:
        http: The client to send with (it carries the session's credentials and marks
            the request long-lived for the guarded transport's stream pool).
        url: The MCP endpoint.
        version: The stateless revision negotiated with the server.
        client_info: ``clientInfo`` for the request's ``_meta``.
        ack_timeout: Seconds to wait for the acknowledgment (and to connect and send).
        read_timeout: Seconds the stream may be silent once acknowledged.
        on_acknowledged: Awaited once the server has acknowledged the subscription
            (and honored ``toolsListChanged``), before any change is reported.
        on_changed: Awaited for each ``notifications/tools/list_changed``.

    Returns:
        Why the stream ended (:data:`ListenEnd`).

    Raises:
        ListenLost: The request failed, the acknowledgment did not come in time, the
            stream was silent for ``read_timeout`` or ended without the server's
            graceful close.
    """
    request_id = f"tether-listen-{next(_ids)}"
    body, headers = stateless_request(
        request_id,
        LISTEN_METHOD,
        version,
        params={"notifications": {"toolsListChanged": True}},
        client_info=client_info,
    )
    headers["Accept"] = "application/json, text/event-stream"
    acked = False
    try:
        with anyio.fail_after(ack_timeout) as ack_scope:
            timeout = httpx2.Timeout(ack_timeout, read=read_timeout)
            async with http.stream(
                "POST", url, json=body, headers=headers, timeout=timeout
            ) as response:
                if response.headers.get("content-type", "").startswith(
                    "application/json"
                ):
                    await response.aread()
                    return _answer(_parse(response.content, request_id))
                if response.status_code != 200:
                    raise ListenLost(f"HTTP {response.status_code}")
                async for event in httpx2.EventSource(response):
                    frame = _parse(event.data, request_id)
                    if frame.kind == "ack":
                        if not frame.honored:
                            return "declined"
                        acked = True
                        ack_scope.deadline = float("inf")  # the stream may idle now
                        await on_acknowledged()
                    elif frame.kind == "changed" and acked:
                        await on_changed()
                    elif frame.kind == "cancelled":
                        raise ListenLost("the server cancelled the subscription")
                    elif frame.kind in ("result", "error"):
                        return _answer(frame)
                raise ListenLost("the stream ended without the server's close")
    except TimeoutError as exc:
        raise ListenLost("no acknowledgment in time") from exc
    except (httpx2.HTTPError, TetherError) as exc:  # TetherError: the guarded transport
        raise ListenLost(f"the stream failed: {exc!r}") from exc


def _parse(data: str | bytes, request_id: str) -> Frame:
    """:func:`classify_frame` of an SSE event's data or a JSON body; unparsable: other."""
    try:
        message = load_json(
            data.encode() if isinstance(data, str) else data,
            max_depth=_MAX_FRAME_DEPTH,
        )
    except ValueError:
        logger.debug("an unparsable frame on a listen stream was ignored")
        return _OTHER
    return classify_frame(message, request_id)


def _answer(frame: Frame) -> ListenEnd:
    """The end a JSON-RPC response means: a result closes, -32601 refuses."""
    if frame.kind == "result":
        return "closed"
    if frame.kind == "error" and frame.code == METHOD_NOT_FOUND:
        return "unsupported"
    raise ListenLost(
        f"the server answered with error {frame.code}"
        if frame.kind == "error"
        else "the server's answer was not a JSON-RPC response"
    )
