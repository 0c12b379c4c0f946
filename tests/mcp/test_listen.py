"""The light ``subscriptions/listen`` client (R6.4.7): frames, ends and failures.

The happy paths against the real SDK peer are in ``test_session.py`` (a change
arrives, a dropped stream is re-opened and the gap reported, a refusal is asked once).
Here a mock transport injects what a real server does not send: malformed frames,
frames for another subscription, a stream cut before the close, a server that never
acknowledges.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx2
import pytest

from tether.mcp.listen import (
    Frame,
    ListenLost,
    classify_frame,
    listen_for_tool_changes,
)

ID = "tether-listen-7"
META = {"io.modelcontextprotocol/subscriptionId": ID}


def ack(honored: bool = True, request_id: str = ID) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {
            "notifications": {"toolsListChanged": honored},
            "_meta": {"io.modelcontextprotocol/subscriptionId": request_id},
        },
    }


def changed(meta: dict[str, Any] | None = META) -> dict[str, Any]:
    params: dict[str, Any] = {} if meta is None else {"_meta": meta}
    return {
        "jsonrpc": "2.0",
        "method": "notifications/tools/list_changed",
        "params": params,
    }


# ---------------------------------------------------------------- classify_frame


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (ack(), Frame("ack", honored=True)),
        (ack(honored=False), Frame("ack", honored=False)),
        (ack(request_id="listen-1"), Frame("other")),  # another subscription's
        (changed(), Frame("changed")),
        (changed(meta=None), Frame("other")),  # not stamped: not ours
        (changed(meta={"io.modelcontextprotocol/subscriptionId": 7}), Frame("other")),
        (
            {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": ID},
            },
            Frame("cancelled"),
        ),
        (
            {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": "other"},
            },
            Frame("other"),
        ),
        ({"jsonrpc": "2.0", "id": ID, "result": {}}, Frame("result")),
        ({"jsonrpc": "2.0", "id": "x", "result": {}}, Frame("other")),
        (
            {"jsonrpc": "2.0", "id": ID, "error": {"code": -32601, "message": "no"}},
            Frame("error", code=-32601),
        ),
        (
            {"jsonrpc": "2.0", "id": ID, "error": {"code": "x", "message": "no"}},
            Frame("error", code=None),
        ),
        ({"jsonrpc": "2.0", "id": ID}, Frame("other")),
        (
            {
                "jsonrpc": "2.0",
                "method": "notifications/subscriptions/acknowledged",
                "params": {"_meta": META},  # no filter: malformed, not an ack
            },
            Frame("other"),
        ),
        ({"jsonrpc": "2.0", "method": "notifications/message"}, Frame("other")),
        ([1, 2], Frame("other")),
        ("text", Frame("other")),
    ],
)
def test_classify_frame(message: object, expected: Frame) -> None:
    assert classify_frame(message, ID) == expected


# ---------------------------------------------------------------- the exchange


class Server:
    """A mock endpoint: records the request, answers with ``respond``."""

    def __init__(self, respond: Callable[[dict[str, Any]], httpx2.Response]) -> None:
        self.respond = respond
        self.requests: list[httpx2.Request] = []
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        body = json.loads(request.content)
        self.bodies.append(body)
        return self.respond(body)


def sse(
    *messages: dict[str, Any] | str, forever: bool = False
) -> Callable[[dict[str, Any]], httpx2.Response]:
    """An SSE answer of ``messages`` (the request id filled in), then the end."""

    def respond(body: dict[str, Any]) -> httpx2.Response:
        async def stream() -> AsyncIterator[bytes]:
            for message in messages:
                if isinstance(message, str):
                    yield f"data: {message}\n\n".encode()
                    continue
                text = json.dumps(message).replace(ID, body["id"])
                yield f"event: message\ndata: {text}\n\n".encode()
            if forever:
                await anyio.sleep_forever()

        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=stream()
        )

    return respond


class Seen:
    def __init__(self) -> None:
        self.acknowledged = 0
        self.changes = 0

    async def on_acknowledged(self) -> None:
        self.acknowledged += 1

    async def on_changed(self) -> None:
        assert self.acknowledged == 1, "a change before the acknowledgment"
        self.changes += 1


async def listen(server: Server, seen: Seen, ack_timeout: float = 30.0) -> str:
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(server)) as http:
        return await listen_for_tool_changes(
            http,
            "http://mcp.test/mcp",
            version="2026-07-28",
            client_info={"name": "tether", "version": "1"},
            ack_timeout=ack_timeout,
            on_acknowledged=seen.on_acknowledged,
            on_changed=seen.on_changed,
        )


def result(body: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": body["id"], "result": {}}


async def test_the_request_is_a_stamped_2026_07_28_listen() -> None:
    """HTTP7-3, HTTP7-5: the revision's headers and ``_meta`` on the listen request."""
    server = Server(sse(ack(), {"jsonrpc": "2.0", "id": ID, "result": {}}))
    seen = Seen()
    assert await listen(server, seen) == "closed"
    (request,), (body,) = server.requests, server.bodies
    assert request.method == "POST"
    assert request.headers["mcp-protocol-version"] == "2026-07-28"
    assert request.headers["mcp-method"] == "subscriptions/listen"
    assert "text/event-stream" in request.headers["accept"]
    assert body["method"] == "subscriptions/listen"
    assert body["params"]["notifications"] == {"toolsListChanged": True}
    meta = body["params"]["_meta"]
    assert meta["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    assert meta["io.modelcontextprotocol/clientInfo"] == {
        "name": "tether",
        "version": "1",
    }
    assert "io.modelcontextprotocol/clientCapabilities" in meta
    assert isinstance(body["id"], str)
    assert seen.acknowledged == 1


async def test_changes_are_reported_after_the_acknowledgment_only() -> None:
    server = Server(
        sse(
            changed(),  # before the ack: not yet a subscription, ignored
            ack(),
            changed(),
            "not json",  # ignored
            changed(meta=None),  # not stamped with this subscription: ignored
            changed(),
            {"jsonrpc": "2.0", "id": ID, "result": {}},
        )
    )
    seen = Seen()
    assert await listen(server, seen) == "closed"
    assert (seen.acknowledged, seen.changes) == (1, 2)


async def test_a_declined_filter_ends_the_subscription() -> None:
    seen = Seen()
    assert await listen(Server(sse(ack(honored=False), forever=True)), seen) == (
        "declined"
    )
    assert seen.acknowledged == 0


@pytest.mark.parametrize("status", [200, 404])
async def test_method_not_found_means_unsupported(status: int) -> None:
    def respond(body: dict[str, Any]) -> httpx2.Response:
        error = {"code": -32601, "message": "Method not found"}
        return httpx2.Response(
            status, json={"jsonrpc": "2.0", "id": body["id"], "error": error}
        )

    assert await listen(Server(respond), Seen()) == "unsupported"


async def test_a_json_result_is_a_graceful_close_without_events() -> None:
    seen = Seen()
    assert await listen(
        Server(lambda b: httpx2.Response(200, json=result(b))), seen
    ) == ("closed")
    assert seen.acknowledged == 0


@pytest.mark.parametrize(
    ("respond", "why"),
    [
        (
            lambda b: httpx2.Response(
                400,
                json={
                    "jsonrpc": "2.0",
                    "id": b["id"],
                    "error": {"code": -32602, "message": "bad filter"},
                },
            ),
            "error -32602",
        ),
        (lambda b: httpx2.Response(200, json={"jsonrpc": "2.0", "id": "x"}), "not a"),
        (lambda b: httpx2.Response(502), "HTTP 502"),
        (
            lambda b: httpx2.Response(
                200, headers={"content-type": "application/json"}, content=b"{"
            ),
            "not a",
        ),
        (lambda b: httpx2.Response(200, content=b"data: x\n\n"), "stream failed"),
        (sse(ack(), changed()), "ended without the server's close"),
        (
            sse(
                ack(),
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": {"requestId": ID},
                },
                forever=True,
            ),
            "cancelled",
        ),
        (
            sse(
                ack(),
                {"jsonrpc": "2.0", "id": ID, "error": {"code": -32603, "message": "x"}},
            ),
            "error -32603",
        ),
    ],
    ids=[
        "json-error",
        "json-not-a-response",
        "local-502",
        "json-unparsable",
        "not-sse",
        "stream-cut",
        "server-cancel",
        "sse-error",
    ],
)
async def test_failures_are_a_lost_subscription(
    respond: Callable[[dict[str, Any]], httpx2.Response], why: str
) -> None:
    with pytest.raises(ListenLost, match=why):
        await listen(Server(respond), Seen())


async def test_no_acknowledgment_in_time_is_lost() -> None:
    """A server that holds the stream without acknowledging is given up on."""
    with pytest.raises(ListenLost, match="no acknowledgment"):
        await listen(Server(sse(forever=True)), Seen(), ack_timeout=0.05)


async def test_an_acknowledged_stream_may_idle_past_the_ack_timeout() -> None:
    """The acknowledgment deadline ends with the acknowledgment."""
    release = anyio.Event()

    def respond(body: dict[str, Any]) -> httpx2.Response:
        async def stream() -> AsyncIterator[bytes]:
            yield f"data: {json.dumps(ack()).replace(ID, body['id'])}\n\n".encode()
            await release.wait()
            yield f"data: {json.dumps(result(body))}\n\n".encode()

        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=stream()
        )

    seen = Seen()

    async def acknowledged() -> None:
        await Seen.on_acknowledged(seen)
        await anyio.sleep(0.2)  # longer than the ack timeout below
        release.set()

    seen.on_acknowledged = acknowledged  # type: ignore[method-assign]
    assert await listen(Server(respond), seen, ack_timeout=0.05) == "closed"


async def test_a_transport_error_is_lost() -> None:
    def respond(body: dict[str, Any]) -> httpx2.Response:
        raise httpx2.ConnectError("refused")

    with pytest.raises(ListenLost, match="refused"):
        await listen(Server(respond), Seen())


async def test_a_silent_stream_is_lost_after_the_read_timeout() -> None:
    """The guarded transport raises Tether's own errors while a body is read."""
    from tether.errors import RequestTimeout

    def respond(body: dict[str, Any]) -> httpx2.Response:
        async def stream() -> AsyncIterator[bytes]:
            yield f"data: {json.dumps(ack()).replace(ID, body['id'])}\n\n".encode()
            raise RequestTimeout("read timed out talking to mcp.test")

        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=stream()
        )

    server = Server(respond)
    seen = Seen()
    with pytest.raises(ListenLost, match="read timed out"):
        await listen(server, seen)
    assert seen.acknowledged == 1
    timeouts = server.requests[0].extensions["timeout"]
    assert timeouts["read"] == 300.0  # READ_TIMEOUT, not the client's
    assert timeouts["connect"] == 30.0  # the acknowledgment's
