"""MCPSession against real MCP servers built with the official SDK, on loopback.

One uvicorn server runs in a background thread for the module. It mounts several MCP
endpoints, each a lowlevel ``Server`` behind a ``StreamableHTTPSessionManager`` and a
small ASGI gate that records the JSON-RPC methods it sees and can expire sessions, pin
the protocol revision to 2025-03-26 or demand a bearer token:

=============  =========================================================================
``/sse/``      stateful, SSE responses (2025-11-25 with ``mode="legacy"``)
``/json/``     stateful, JSON responses
``/legacy/``   only 2025-03-26: refuses ``server/discover`` and modern headers
``/stateless/`` stateless manager; ``mode="auto"`` negotiates 2026-07-28
``/expiring/`` answers 404 to every request that carries a session id
``/flaky/``    stateful, for cutting response streams (``Gate.break_calls``)
``/flaky-stateless/`` the same, stateless
``/auth/``     401 unless ``Bearer good``; 403 ``insufficient_scope`` for ``narrow``
``/listen/``   stateless, serves ``subscriptions/listen`` (so advertises
               ``tools.listChanged``); ``notify_changed`` publishes on :data:`BUS`
``/no-listen/`` the same capability, but the gate answers ``subscriptions/listen`` with
               -32601 (``Gate.refuse_listen``)
=============  =========================================================================
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import httpcore2
import httpx2
import mcp.types as types
import pytest
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.subscriptions import ListenHandler, ServerEvent, ToolsListChanged
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Message, Receive, Scope, Send

from tether.errors import (
    AuthorizationRequired,
    MCPProtocolError,
    NetworkError,
    RequestTimeout,
    ResponseTooLarge,
    SessionExpired,
    StepUpRequired,
    UsageError,
)
from tether.mcp import session as session_module
from tether.mcp.auth import AccessToken, BearerAuth
from tether.mcp.elicitation import accept_defaults
from tether.mcp.pool import SessionPool
from tether.mcp.session import (
    MODERN_FIRST,
    Era,
    EraMemory,
    MCPSession,
    connect_mode,
)
from tether.net.client import guarded_client
from tether.net.policy import NetworkPolicy
from tether.oauth.challenge import BearerChallenge

# --------------------------------------------------------------------- the server

EXTRA_TOOLS = [f"extra_{i}" for i in range(4)]
TOOL_NAMES = [
    "echo",
    "slow",
    "rendezvous",
    "progress",
    "notify_changed",
    "fail",
    "boom",
    "forever",
    "drop_listeners",  # ends every open listen stream gracefully
]


class CountingBus:
    """An in-process ``SubscriptionBus`` that counts its open listen streams."""

    def __init__(self) -> None:
        self._listeners: dict[object, Any] = {}

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    async def publish(self, event: ServerEvent) -> None:
        for listener in list(self._listeners.values()):
            listener(event)
        await anyio.lowlevel.checkpoint()

    def subscribe(self, listener: Any) -> Any:
        token = object()
        self._listeners[token] = listener
        return lambda: self._listeners.pop(token, None)


BUS = CountingBus()


class Rendezvous:
    """Server-side barrier: each call waits until ``n`` calls are in flight at once.

    Sequential calls can never meet, so a test that completes proved concurrency
    without timing anything. The 30 s bound is only a hang guard.
    """

    def __init__(self) -> None:
        self.arrived = 0
        self.met: anyio.Event | None = None

    async def meet(self, n: int) -> None:
        if self.met is None:
            self.met = anyio.Event()
        met = self.met
        self.arrived += 1
        if self.arrived >= n:
            self.arrived, self.met = 0, None
            met.set()
        with anyio.fail_after(30):
            await met.wait()


RENDEZVOUS = Rendezvous()
LISTEN = ListenHandler(BUS)
ALL_TOOLS = TOOL_NAMES + EXTRA_TOOLS
PAGE_SIZE = 4


async def list_tools(
    ctx: Any, params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    start = int(params.cursor) if params is not None and params.cursor else 0
    page = [
        types.Tool(name=name, input_schema={"type": "object"})
        for name in ALL_TOOLS[start : start + PAGE_SIZE]
    ]
    more = start + PAGE_SIZE < len(ALL_TOOLS)
    return types.ListToolsResult(
        tools=page, next_cursor=str(start + PAGE_SIZE) if more else None
    )


def text(value: str, *, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=value)], is_error=is_error
    )


async def _wait(name: str, args: dict[str, Any]) -> None:
    if name == "slow":  # the server's behaviour: it hangs this long
        await anyio.sleep(float(args.get("seconds", 1)))
    else:
        await RENDEZVOUS.meet(int(args.get("n", 2)))


def _hostile(name: str, args: dict[str, Any]) -> types.CallToolResult:
    if name == "huge":  # one SSE event over httpx2's 1 MiB max_event_size
        return text("x" * (1024 * 1024 + 1))
    code = int(args.get("code", -32042))  # boom: a JSON-RPC error the server chose
    raise MCPError(code=code, message=str(args.get("message", "boom")))


async def call_tool(
    ctx: Any, params: types.CallToolRequestParams
) -> types.CallToolResult:
    args = params.arguments or {}
    name = params.name
    if name in ("slow", "rendezvous"):
        await _wait(name, args)
    elif name == "progress":
        for step in range(3):
            await ctx.session.report_progress(step + 1, 3, f"step {step + 1}")
    elif name == "notify_changed":
        if ctx.protocol_version == "2026-07-28":
            await BUS.publish(ToolsListChanged())  # to listen subscribers only
        else:
            await ctx.session.send_tool_list_changed()
    elif name == "drop_listeners":
        LISTEN.close()
    elif name == "fail":
        return text("the tool failed", is_error=True)
    elif name in ("boom", "huge"):
        return _hostile(name, args)
    elif name == "ask":  # elicitation/create in the middle of the call
        schema = {
            "type": "object",
            "properties": {"city": {"type": "string", "default": "Oslo"}},
        }
        answer = await ctx.session.elicit_form(
            "where?", schema, related_request_id=ctx.request_id
        )
        return text(json.dumps(answer.model_dump(exclude_none=True)))
    elif name == "forever":
        while True:  # keep-alives that never end
            await ctx.session.report_progress(0, None, "still working")
            await anyio.sleep(0.05)
    return text(f"{name}:{args.get('text', '')}:{ctx.protocol_version}")


@dataclass
class Gate:
    """ASGI layer in front of one session manager."""

    manager: StreamableHTTPSessionManager
    only_version: str | None = None
    bearer: bool = False
    expire_always: bool = False
    break_calls: int = 0  # cut this many tools/call response streams before the answer
    get_delay: float = 0.0  # hold the listening GET this long before serving it
    refuse_listen: bool = False  # answer subscriptions/listen with -32601
    hold_listen: bool = False  # hold subscriptions/listen unanswered while set
    methods: list[str] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)
    expired: set[str] = field(default_factory=set)
    tokens: list[str] = field(default_factory=list)

    def expire_all(self) -> None:
        self.expired |= self.sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.manager.handle_request(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body, msg = await _read_json(receive)
        method = str(msg.get("method", scope["method"]))
        await self._hold(method)
        if method == "tools/call" and self.break_calls > 0:
            self.break_calls -= 1
            await _cut_stream(send)
            return
        refusal = self._refusal(headers, msg, method)
        if refusal is not None:
            status, payload, extra = refusal
            await _respond(send, status, payload, extra)
            return
        if self.only_version and method == "initialize":
            msg["params"]["protocolVersion"] = self.only_version
            body = json.dumps(msg).encode()

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # blocks until the client disconnects
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                for key, value in message.get("headers", []):
                    if key.lower() == b"mcp-session-id":
                        self.sessions.add(value.decode())
            await send(message)

        await self.manager.handle_request(scope, replay, watch)

    async def _hold(self, method: str) -> None:
        if method == "GET" and self.get_delay:
            await anyio.sleep(self.get_delay)
        self.methods.append(method)
        while method == "subscriptions/listen" and self.hold_listen:  # noqa: ASYNC110 - a flag the test's thread clears
            await anyio.sleep(0.01)

    def _refusal(
        self, headers: dict[str, str], msg: dict[str, Any], method: str
    ) -> tuple[int, Any, dict[str, str]] | None:
        if self.refuse_listen and method == "subscriptions/listen":
            return 200, _rpc_error(msg, -32601, "Method not found"), {}
        sid = headers.get("mcp-session-id")
        if sid is not None and (self.expire_always or sid in self.expired):
            return 404, _rpc_error(msg, -32600, "Session not found"), {}
        if self.bearer:
            token = headers.get("authorization", "").removeprefix("Bearer ")
            self.tokens.append(token)
            if token not in ("good", "narrow"):
                challenge = (
                    'Bearer error="invalid_token", resource_metadata="https://x/prm"'
                )
                return 401, None, {"www-authenticate": challenge}
            if token == "narrow" and method == "tools/call":
                challenge = 'Bearer error="insufficient_scope", scope="tools.write"'
                return 403, None, {"www-authenticate": challenge}
        version = headers.get("mcp-protocol-version")
        if self.only_version and version is not None and version != self.only_version:
            text = f"Bad Request: Unsupported protocol version: {version}"
            return 400, _rpc_error(msg, -32600, text), {}
        return None


async def _read_json(receive: Receive) -> tuple[bytes, dict[str, Any]]:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    with contextlib.suppress(ValueError):
        parsed = json.loads(body) if body else {}
        if isinstance(parsed, dict):
            return body, parsed
    return body, {}


async def _cut_stream(send: Send) -> None:
    """Open an SSE response, send a comment, and end it without an answer."""
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b": working\n\n"})


def _rpc_error(msg: dict[str, Any], code: int, message: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": msg.get("id"),
        "error": {"code": code, "message": message},
    }


async def _respond(
    send: Send, status: int, payload: Any, headers: dict[str, str]
) -> None:
    body = b"" if payload is None else json.dumps(payload).encode()
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    if payload is not None:
        raw.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def build_gates() -> dict[str, Gate]:
    def manager(listen: bool = False, **kwargs: Any) -> StreamableHTTPSessionManager:
        server: Server[Any] = Server(
            "peer",
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            on_subscriptions_listen=LISTEN if listen else None,
        )
        return StreamableHTTPSessionManager(server, **kwargs)

    return {
        "sse": Gate(manager()),
        "json": Gate(manager(json_response=True)),
        "legacy": Gate(manager(), only_version="2025-03-26"),
        "stateless": Gate(manager(stateless=True)),
        "expiring": Gate(manager(), expire_always=True),
        "auth": Gate(manager(), bearer=True),
        "flaky": Gate(manager()),
        "flaky-stateless": Gate(manager(stateless=True)),
        "listen": Gate(manager(listen=True, stateless=True)),
        "no-listen": Gate(manager(listen=True, stateless=True), refuse_listen=True),
    }


@dataclass
class Peer:
    port: int
    gates: dict[str, Gate]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}/"


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    gates = build_gates()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for gate in gates.values():
                await stack.enter_async_context(gate.manager.run())
            yield

    app = Starlette(
        routes=[Mount(f"/{name}", app=gate) for name, gate in gates.items()],
        lifespan=lifespan,
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_level="warning", ws="none", loop="asyncio", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30  # a hang guard only
    while not server.started:
        assert thread.is_alive(), "server died"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield Peer(sock.getsockname()[1], gates)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=30) as client:  # generous under load
        yield client


@pytest.fixture(autouse=True)
def _reset_gates(peer: Peer) -> None:
    for gate in peer.gates.values():
        gate.methods.clear()
        gate.tokens.clear()
        gate.break_calls = 0
        gate.get_delay = 0.0
        gate.hold_listen = False


# --------------------------------------------------------------------- tests


@pytest.mark.parametrize("path", ["sse", "json"])
async def test_stateful_2025_11_25_initialize_list_call(
    peer: Peer, http: httpx2.AsyncClient, path: str
) -> None:
    async with MCPSession(peer.url(path), http, mode="legacy") as session:
        assert not session.connected  # lazy
        tools = await session.list_tools()
        assert session.protocol_version == "2025-11-25"
        assert session.stateless is False
        assert session.capabilities is not None
        assert "tools" in session.capabilities
        assert session.server_info is not None
        assert session.server_info["name"] == "peer"
        assert [tool["name"] for tool in tools] == ALL_TOOLS
        assert tools[0]["inputSchema"] == {"type": "object"}
        result = await session.call_tool("echo", {"text": "hi"})
    assert result["content"] == [{"type": "text", "text": "echo:hi:2025-11-25"}]
    assert not result.get("isError")
    methods = peer.gates[path].methods
    assert methods.count("initialize") == 1
    assert methods.count("tools/list") >= 3  # three pages
    assert "DELETE" in methods  # the session is terminated on close (HTTP-8)


@pytest.mark.parametrize(("path", "mode"), [("sse", "legacy"), ("stateless", "auto")])
async def test_progress_arrives_before_the_result(
    peer: Peer, http: httpx2.AsyncClient, path: str, mode: str
) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(
        progress: float, total: float | None, message: str | None
    ) -> None:
        seen.append((progress, total, message))

    async with MCPSession(peer.url(path), http, mode=mode) as session:
        result = await session.call_tool("progress", {}, progress_callback=on_progress)
        assert len(seen) == 3  # all delivered by the time the result is returned
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    assert result["content"][0]["text"].startswith("progress:")


async def test_tool_error_is_a_result_not_an_exception(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    async with MCPSession(peer.url("sse"), http, mode="legacy") as session:
        result = await session.call_tool("fail", {})
    assert result["isError"] is True
    assert result["content"][0]["text"] == "the tool failed"


@pytest.mark.parametrize(("path", "mode"), [("sse", "legacy"), ("stateless", "auto")])
async def test_jsonrpc_error_becomes_mcp_protocol_error(
    peer: Peer, http: httpx2.AsyncClient, path: str, mode: str
) -> None:
    async with MCPSession(peer.url(path), http, mode=mode, server="peer") as session:
        with pytest.raises(MCPProtocolError) as caught:
            await session.call_tool("boom", {})
        assert (await session.call_tool("echo", {}))["content"]  # the session lives on
    assert caught.value.details["code"] == -32042
    assert caught.value.details["message"] == "boom"
    assert caught.value.server == "peer"
    assert caught.value.step == "tools/call"


@pytest.mark.parametrize(("path", "mode"), [("sse", "legacy"), ("stateless", "auto")])
async def test_server_error_32000_is_a_tool_error_not_a_lost_connection(
    peer: Peer, http: httpx2.AsyncClient, path: str, mode: str
) -> None:
    # -32000 is the SDK's CONNECTION_CLOSED, but also JSON-RPC's generic server error.
    hostile = "\x1b]0;pwned\x07\x1b[31mdatabase down\x1b[0m " + "y" * 5000
    async with MCPSession(peer.url(path), http, mode=mode, server="peer") as session:
        with pytest.raises(MCPProtocolError) as caught:
            await session.call_tool("boom", {"code": -32000, "message": hostile})
        assert (await session.call_tool("echo", {}))["content"]  # the session lives on
    assert not isinstance(caught.value, NetworkError)
    assert caught.value.details["code"] == -32000
    message = caught.value.details["message"]
    assert message.startswith("database down y")
    assert "\x1b" not in str(caught.value)
    assert "\x07" not in str(caught.value)
    assert len(message) <= 500


async def test_sse_event_over_the_sdk_limit_is_too_large(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    async with MCPSession(peer.url("sse"), http, mode="legacy") as session:
        with pytest.raises(ResponseTooLarge) as caught:
            await session.call_tool("huge", {})
        assert (await session.call_tool("echo", {}))["content"]
    assert "byte limit" in caught.value.message


async def test_list_changed_notification_calls_back(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    changed = anyio.Event()

    async def on_tools_changed() -> None:
        changed.set()

    async with MCPSession(
        peer.url("sse"), http, mode="legacy", on_tools_changed=on_tools_changed
    ) as session:
        await session.call_tool("notify_changed", {})
        with anyio.fail_after(30):  # a hang guard only
            await changed.wait()


async def test_expired_session_is_recreated_once(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    gate = peer.gates["sse"]
    async with MCPSession(peer.url("sse"), http, mode="legacy") as session:
        await session.call_tool("echo", {})
        gate.expire_all()
        result = await session.call_tool("echo", {"text": "again"})
        assert result["content"][0]["text"] == "echo:again:2025-11-25"
        assert gate.methods.count("initialize") == 2
        await session.call_tool("echo", {})  # the new session is reused
    assert gate.methods.count("initialize") == 2


async def test_second_expiry_raises_session_expired(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    gate = peer.gates["expiring"]
    async with MCPSession(peer.url("expiring"), http, mode="legacy") as session:
        await session.connect()
        with pytest.raises(SessionExpired):
            await session.call_tool("echo", {})
    assert gate.methods.count("initialize") == 2
    assert gate.methods.count("tools/call") == 2


async def test_server_that_only_speaks_2025_03_26(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    async with MCPSession(peer.url("legacy"), http) as session:  # mode="auto"
        tools = await session.list_tools()
        result = await session.call_tool("echo", {"text": "old"})
        assert session.protocol_version == "2025-03-26"
        assert session.stateless is False
    assert len(tools) == len(ALL_TOOLS)
    assert result["content"][0]["text"] == "echo:old:2025-03-26"
    methods = peer.gates["legacy"].methods
    assert methods[:2] == ["server/discover", "initialize"]  # probe, then fall back


async def test_stateless_2026_07_28(peer: Peer, http: httpx2.AsyncClient) -> None:
    gate = peer.gates["stateless"]
    async with MCPSession(peer.url("stateless"), http) as session:
        tools = await session.list_tools()
        result = await session.call_tool("echo", {"text": "new"})
        assert session.protocol_version == "2026-07-28"
        assert session.stateless is True
    assert [tool["name"] for tool in tools] == ALL_TOOLS
    assert result["content"][0]["text"] == "echo:new:2026-07-28"
    assert "initialize" not in gate.methods
    assert gate.methods[0] == "server/discover"

    gate.methods.clear()
    async with MCPSession(peer.url("stateless"), http, mode="2026-07-28") as session:
        await session.call_tool("echo", {})  # a remembered era skips the probe (R6.4.3)
    # The call lists first (the SDK mirrors x-mcp-header arguments only for tools it
    # listed, HTTP7-4), so the SDK's output-schema check needs no list of its own.
    assert gate.methods[-1] == "tools/call"
    assert set(gate.methods[:-1]) == {"tools/list"}


async def test_broken_stateless_stream_is_reissued_once(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    gate = peer.gates["flaky-stateless"]
    async with MCPSession(peer.url("flaky-stateless"), http) as session:
        gate.break_calls = 1
        result = await session.call_tool("echo", {"text": "again"})
        assert result["content"][0]["text"] == "echo:again:2026-07-28"
        gate.break_calls = 2
        with pytest.raises(NetworkError, match="closed"):
            await session.call_tool("echo", {})
    assert gate.methods.count("tools/call") == 4


class _BreakFirstCalls(httpx2.AsyncBaseTransport):
    """Real HTTP, except that the first ``times`` ``tools/call`` POSTs fail on the wire.

    What a reset of a reused pooled connection looks like (a server closing it as
    the request arrives), which a real server cannot be made to do on cue.
    """

    def __init__(self, error: Callable[[], Exception], times: int = 1) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._error = error
        self.left = times
        self.attempts = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST" and b'"tools/call"' in request.content:
            self.attempts += 1
            if self.left > 0:
                self.left -= 1
                raise self._error()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _guarded_reset() -> Exception:
    """As the guarded transport raises a reset: Tether's error, httpcore's cause."""
    try:
        raise httpcore2.ReadError("")
    except httpcore2.ReadError as exc:
        error = NetworkError("connection to 127.0.0.1 failed: ")
        error.__cause__ = exc
        return error


@pytest.mark.parametrize(
    "error",
    [
        lambda: httpx2.ReadError(""),
        lambda: httpx2.RemoteProtocolError("Server disconnected"),
        _guarded_reset,
    ],
    ids=["httpx2-reset", "httpx2-disconnected", "guarded-reset"],
)
async def test_a_stateless_call_whose_connection_broke_is_reissued_once(
    peer: Peer, error: Callable[[], Exception]
) -> None:
    """HTTP7-1: a connection that broke before any answer is a broken stream too."""
    transport = _BreakFirstCalls(error)
    async with (
        httpx2.AsyncClient(transport=transport, timeout=30) as http,
        MCPSession(peer.url("stateless"), http) as session,
    ):
        result = await session.call_tool("echo", {"text": "again"})
        assert result["content"][0]["text"] == "echo:again:2026-07-28"
        assert transport.attempts == 2
        transport.left = 2  # broken twice: the second break is the caller's error
        with pytest.raises(NetworkError):
            await session.call_tool("echo", {"text": "x"})
        assert transport.attempts == 4
    assert peer.gates["stateless"].methods.count("tools/call") == 1


@pytest.mark.parametrize(
    ("path", "mode", "error", "raised"),
    [
        ("stateless", "auto", lambda: httpx2.ConnectError("refused"), NetworkError),
        ("stateless", "auto", lambda: httpx2.ReadTimeout("slow"), RequestTimeout),
        ("sse", "legacy", lambda: httpx2.ReadError(""), NetworkError),
    ],
    ids=["refused", "timeout", "stateful-reset"],
)
async def test_other_failures_are_not_reissued(
    peer: Peer,
    path: str,
    mode: str,
    error: Callable[[], Exception],
    raised: type[Exception],
) -> None:
    """Not a broken stream, or not the stateless revision: one attempt only."""
    transport = _BreakFirstCalls(error)
    async with (
        httpx2.AsyncClient(transport=transport, timeout=30) as http,
        MCPSession(peer.url(path), http, mode=mode) as session,
    ):
        await session.connect()
        with pytest.raises(raised):
            await session.call_tool("echo", {})
        assert transport.attempts == 1


async def test_broken_stateful_stream_is_not_reissued(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    gate = peer.gates["flaky"]
    async with MCPSession(peer.url("flaky"), http, mode="legacy") as session:
        gate.break_calls = 1
        with pytest.raises(NetworkError):
            await session.call_tool("echo", {})
        assert (await session.call_tool("echo", {}))["content"]
    assert gate.methods.count("tools/call") == 2


async def test_slow_tool_times_out(peer: Peer, http: httpx2.AsyncClient) -> None:
    # Only the hanging call gets the short deadline: connect and the later echo keep
    # a generous one, so a loaded machine cannot make the success paths time out.
    async with MCPSession(peer.url("sse"), http, mode="legacy", timeout=30) as session:
        await session.connect()
        session.timeout = 0.5
        started = anyio.current_time()
        with pytest.raises(RequestTimeout) as caught:
            await session.call_tool("slow", {"seconds": 60})  # the server hangs
        assert anyio.current_time() - started >= 0.5  # not before the deadline
        assert caught.value.step == "tools/call"
        session.timeout = 30
        assert (await session.call_tool("echo", {}))["content"]  # still usable


@pytest.mark.parametrize(("path", "mode"), [("sse", "legacy"), ("stateless", "auto")])
async def test_endless_keepalives_still_time_out(
    peer: Peer, path: str, mode: str
) -> None:
    # Progress arrives every 50 ms for ever; the client's read timeout (30 s) is far
    # beyond the overall deadline, so only that deadline (3 s, set after a generous
    # connect) can end the call. No upper wall-clock bound: never before the deadline.
    ticks: list[float] = []

    async def on_progress(
        progress: float, total: float | None, message: str | None
    ) -> None:
        ticks.append(progress)

    async with (
        httpx2.AsyncClient(timeout=30) as http,
        MCPSession(peer.url(path), http, mode=mode, timeout=30) as session,
    ):
        await session.connect()
        session.timeout = 3.0
        started = anyio.current_time()
        with pytest.raises(RequestTimeout) as caught:
            await session.call_tool("forever", {}, progress_callback=on_progress)
        assert anyio.current_time() - started >= 3.0
        assert caught.value.step == "tools/call"
    assert ticks  # keep-alives did arrive, and did not extend the deadline


@pytest.mark.parametrize(("path", "mode"), [("sse", "legacy"), ("stateless", "auto")])
async def test_concurrent_calls_run_in_parallel(
    peer: Peer, path: str, mode: str
) -> None:
    """Each call waits on the server until all five are in flight at once.

    Calls made one after another could never meet (the server gives up after its
    30 s hang guard), so five answers prove concurrency without timing anything.
    """
    results: list[dict[str, Any]] = []

    async def one() -> None:
        results.append(await session.call_tool("rendezvous", {"n": 5}))

    async with (
        httpx2.AsyncClient(timeout=60) as http,
        MCPSession(peer.url(path), http, mode=mode) as session,
    ):
        await session.connect()
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(one)
    assert [r.get("isError", False) for r in results] == [False] * 5
    methods = peer.gates[path].methods
    assert methods.count("initialize") + methods.count("server/discover") == 1


async def test_unreachable_server_is_a_network_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        async with (
            httpx2.AsyncClient(timeout=2) as http,
            MCPSession(f"http://127.0.0.1:{port}/mcp", http) as session,
        ):
            with pytest.raises(NetworkError) as caught:
                await session.list_tools()
            assert not session.connected
    # what the wire said stays the cause, not the SDK's generic error
    assert isinstance(caught.value.__cause__, httpx2.ConnectError)


async def test_guarded_client_from_net(peer: Peer) -> None:
    policy = NetworkPolicy.from_allowlist(["127.0.0.1"], require_https=False)
    async with (
        guarded_client(policy, timeout=5, follow_redirects=False) as http,
        MCPSession(peer.url("json"), http, mode="legacy") as session,
    ):
        assert len(await session.list_tools()) == len(ALL_TOOLS)


# --------------------------------------------------------------------- bearer auth


@dataclass
class FakeSource:
    """A TokenSource: hands out ``first``, then ``refreshed`` after a rejection."""

    first: str
    refreshed: str | None = None
    rejections: list[tuple[str, BearerChallenge | None, int]] = field(
        default_factory=list
    )

    async def current(self) -> AccessToken:
        return AccessToken(self.first)

    async def rejected(
        self, token: AccessToken, challenge: BearerChallenge | None, *, status: int
    ) -> AccessToken:
        self.rejections.append((token.access_token, challenge, status))
        if challenge is not None and challenge.error == "insufficient_scope":
            raise StepUpRequired(
                "more scope", details={"required_scopes": challenge.scope}
            )
        if self.refreshed is None:
            raise AuthorizationRequired("no refresh token")
        self.first = self.refreshed
        return AccessToken(self.refreshed)


async def test_bearer_refresh_then_retry(peer: Peer) -> None:
    source = FakeSource("stale", refreshed="good")
    async with (
        httpx2.AsyncClient(timeout=5, auth=BearerAuth(source)) as http,
        MCPSession(peer.url("auth"), http, mode="legacy") as session,
    ):
        assert len(await session.list_tools()) == len(ALL_TOOLS)
    assert len(source.rejections) == 1
    token, challenge, status = source.rejections[0]
    assert (token, status) == ("stale", 401)
    assert challenge is not None
    assert challenge.resource_metadata == "https://x/prm"
    assert peer.gates["auth"].tokens[:2] == ["stale", "good"]


async def test_bearer_refused_after_refresh_is_authorization_required(
    peer: Peer,
) -> None:
    source = FakeSource("bad", refreshed="worse")
    async with (
        httpx2.AsyncClient(timeout=5, auth=BearerAuth(source, server="peer")) as http,
        MCPSession(peer.url("auth"), http) as session,  # mode="auto": probe + fallback
    ):
        with pytest.raises(AuthorizationRequired) as caught:
            await session.list_tools()
    assert type(caught.value) is AuthorizationRequired
    assert caught.value.details["status"] == 401
    assert len(source.rejections) == 1  # the first failure ends the connect
    assert peer.gates["auth"].tokens == ["bad", "worse"]


async def test_bearer_without_refresh_is_authorization_required(peer: Peer) -> None:
    source = FakeSource("bad")
    async with (
        httpx2.AsyncClient(timeout=5, auth=BearerAuth(source)) as http,
        MCPSession(peer.url("auth"), http, mode="legacy") as session,
    ):
        with pytest.raises(AuthorizationRequired, match="no refresh token"):
            await session.connect()


async def test_bearer_insufficient_scope_is_step_up(peer: Peer) -> None:
    source = FakeSource("narrow")
    async with (
        httpx2.AsyncClient(timeout=5, auth=BearerAuth(source)) as http,
        MCPSession(peer.url("auth"), http, mode="legacy") as session,
    ):
        await session.list_tools()  # allowed with the narrow token
        with pytest.raises(StepUpRequired) as caught:
            await session.call_tool("echo", {})
        assert await session.list_tools()  # one refused call does not end the session
    assert caught.value.details["required_scopes"] == ("tools.write",)
    assert [status for _, _, status in source.rejections] == [403]


# --------------------------------------------------------------------- the pool


async def test_pool_reuses_a_connected_session(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    def factory(server_id: str, subject: str, task_group: Any) -> MCPSession:
        return MCPSession(peer.url("sse"), http, mode="legacy", task_group=task_group)

    async with SessionPool(factory) as pool:
        first = await pool.get("srv", "alice")
        await first.call_tool("echo", {})
        assert await pool.get("srv", "alice") is first
        await (await pool.get("srv", "alice")).call_tool("echo", {})
        bob = await pool.get("srv", "bob")
        assert bob is not first
        await bob.list_tools()
    assert peer.gates["sse"].methods.count("initialize") == 2
    assert peer.gates["sse"].methods.count("DELETE") == 2


# --------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    "kwargs",
    [{"timeout": 0}, {"max_pages": 0}, {"mode": "2025-11-25"}, {"mode": "modern"}],
)
async def test_rejects_bad_settings(
    http: httpx2.AsyncClient, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(UsageError):
        MCPSession("https://mcp.example/mcp", http, **kwargs)


async def test_needs_a_task_group(http: httpx2.AsyncClient) -> None:
    session = MCPSession("https://mcp.example/mcp", http)
    with pytest.raises(UsageError, match="async with"):
        await session.list_tools()
    await session.aclose()


async def test_body_exceptions_are_not_wrapped(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    async def body() -> None:
        async with MCPSession(peer.url("sse"), http, mode="legacy") as session:
            await session.connect()
            raise KeyError("boom")

    with pytest.raises(KeyError):
        await body()


async def test_per_session_auth_on_a_shared_client(peer: Peer) -> None:
    alice, bob = FakeSource("good"), FakeSource("bad")
    async with (
        httpx2.AsyncClient(timeout=5) as http,  # one connection pool for both subjects
        MCPSession(peer.url("auth"), http, auth=BearerAuth(alice), mode="legacy") as a,
        MCPSession(peer.url("auth"), http, auth=BearerAuth(bob), mode="legacy") as b,
    ):
        assert len(await a.list_tools()) == len(ALL_TOOLS)
        with pytest.raises(AuthorizationRequired):
            await b.list_tools()
    assert alice.rejections == []


@pytest.mark.parametrize(
    ("version", "mode"),
    [
        ("2026-07-28", "2026-07-28"),
        ("2025-11-25", "legacy"),
        ("2025-03-26", "legacy"),
        (None, "auto"),
        ("1999-01-01", "auto"),
    ],
)
def test_connect_mode_from_a_remembered_version(version: str | None, mode: str) -> None:
    assert connect_mode(version) == mode


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (None, {"action": "decline"}),  # production default: declared, declined
        (accept_defaults, {"action": "accept", "content": {"city": "Oslo"}}),
    ],
)
async def test_elicitation_goes_to_the_handler(
    peer: Peer, http: httpx2.AsyncClient, handler: Any, expected: dict[str, Any]
) -> None:
    async with MCPSession(
        peer.url("sse"), http, mode="legacy", elicitation=handler
    ) as session:
        result = await session.call_tool("ask", {})
    assert json.loads(result["content"][0]["text"]) == expected


async def test_first_request_waits_for_the_listening_stream(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    """A stateful server may answer on the GET stream (Streamable HTTP, listening).

    The SDK opens that stream in the background after ``initialized``; the session lets
    it open before its first request, so nothing the server sends there is missed.
    """
    peer.gates["sse"].get_delay = 0.1  # a slow listening stream
    async with MCPSession(peer.url("sse"), http, mode="legacy") as session:
        await session.call_tool("echo", {"text": "hi"})
    methods = peer.gates["sse"].methods
    assert methods.index("GET") < methods.index("tools/call")


async def test_stateless_connect_does_not_wait_for_a_listening_stream(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    async with MCPSession(peer.url("stateless"), http) as session:
        await session.connect()
    assert "GET" not in peer.gates["stateless"].methods  # so nothing to wait for


# ------------------------------------------------ stateless list_changed (listen)


async def _until(condition: Callable[[], bool], seconds: float = 30) -> None:
    """Poll: the state lives in the server's thread, with no event to wait on.

    ``seconds`` is only a hang guard, generous for a loaded machine.
    """
    deadline = time.monotonic() + seconds
    while True:
        if condition():
            return
        assert time.monotonic() < deadline, "the condition did not come true"
        await anyio.sleep(0.01)


async def test_stateless_tool_list_change_arrives_on_a_subscription(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    """2026-07-28 has no GET stream: the change comes on ``subscriptions/listen``."""
    calls = 0

    async def on_tools_changed() -> None:
        nonlocal calls
        calls += 1

    async with MCPSession(
        peer.url("listen"), http, on_tools_changed=on_tools_changed
    ) as session:
        await session.connect()
        assert session.stateless is True
        assert (session.capabilities or {})["tools"]["listChanged"] is True
        await _until(lambda: BUS.listeners == 1)
        await session.call_tool("notify_changed", {})
        await _until(lambda: calls == 1)
        await session.call_tool("notify_changed", {})
        await _until(lambda: calls == 2)
        await anyio.sleep(0.1)
        assert calls == 2  # once per change: the SDK's copy to the handler is skipped
        assert peer.gates["listen"].methods.count("subscriptions/listen") == 1
    # closing the session ends the stream; the server sees its subscriber go
    await _until(lambda: BUS.listeners == 0)


async def test_subscription_is_reopened_and_the_gap_reported(
    peer: Peer, http: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed stream is re-opened; events are not replayed, so the cache is dropped."""
    monkeypatch.setattr(session_module, "SUBSCRIBE_BACKOFF", (0.05, 0.2))
    changed = 0

    async def on_tools_changed() -> None:
        nonlocal changed
        changed += 1

    async with MCPSession(
        peer.url("listen"), http, on_tools_changed=on_tools_changed
    ) as session:
        await session.connect()
        await _until(lambda: BUS.listeners == 1)
        await session.call_tool("drop_listeners", {})  # graceful server-side close
        await _until(
            lambda: peer.gates["listen"].methods.count("subscriptions/listen") == 2
        )
        await _until(lambda: changed == 1)  # the re-opened stream reports the gap
        await _until(lambda: BUS.listeners == 1)
        await session.call_tool("notify_changed", {})
        await _until(lambda: changed == 2)
    await _until(lambda: BUS.listeners == 0)


async def test_no_subscription_without_the_capability(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    """A stateless server without ``tools.listChanged`` is not asked to subscribe."""

    async def on_tools_changed() -> None:
        raise AssertionError("no change was announced")

    async with MCPSession(
        peer.url("stateless"), http, on_tools_changed=on_tools_changed
    ) as session:
        await session.call_tool("echo", {})
        assert not (session.capabilities or {})["tools"].get("listChanged")
    assert "subscriptions/listen" not in peer.gates["stateless"].methods


async def test_refused_subscription_costs_requests_nothing(
    peer: Peer,
    http: httpx2.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that advertises the capability but refuses the method is asked once."""
    monkeypatch.setattr(session_module, "SUBSCRIBE_BACKOFF", (0.01, 0.01))
    gate = peer.gates["no-listen"]

    async def on_tools_changed() -> None:
        raise AssertionError("no change was announced")

    async with MCPSession(
        peer.url("no-listen"), http, on_tools_changed=on_tools_changed
    ) as session:
        for _ in range(3):
            result = await session.call_tool("echo", {"text": "x"})
            assert result["content"][0]["text"] == "echo:x:2026-07-28"
        await _until(lambda: "subscriptions/listen" in gate.methods)
        await anyio.sleep(0.1)  # no retries after -32601
    assert gate.methods.count("subscriptions/listen") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_subscription_does_not_delay_requests(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    """Requests never wait for the listen stream's acknowledgment.

    The server holds ``subscriptions/listen`` unanswered while the calls run: they
    can only complete if nothing waits for it (30 s is only a hang guard).
    """
    gate = peer.gates["listen"]
    gate.hold_listen = True

    async def on_tools_changed() -> None:
        pass

    async with MCPSession(
        peer.url("listen"), http, on_tools_changed=on_tools_changed
    ) as session:
        await session.connect()
        await _until(lambda: "subscriptions/listen" in gate.methods)
        with anyio.fail_after(30):
            for _ in range(5):
                await session.call_tool("echo", {})
        assert BUS.listeners == 0  # the subscription was still unanswered
        gate.hold_listen = False
        await _until(lambda: BUS.listeners == 1)
    await _until(lambda: BUS.listeners == 0)


# ------------------------------------------------------------ the minimum connect


async def test_modern_first_sends_no_discover_and_remembers_the_era(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    """The first request tells the era (Streamable HTTP 07 "Backward Compatibility")."""
    gate = peer.gates["stateless"]
    gate.methods.clear()
    eras = EraMemory()
    url = peer.url("stateless")
    async with MCPSession(url, http, mode=MODERN_FIRST, eras=eras) as session:
        result = await session.call_tool("echo", {"text": "new"})
        assert session.protocol_version == "2026-07-28"
        assert "tools" not in (session.capabilities or {})  # not asked yet
        await session.describe()
        assert "tools" in (session.capabilities or {})
        await session.describe()  # known now: nothing more is sent
    assert result["content"][0]["text"] == "echo:new:2026-07-28"
    assert gate.methods[0] == "tools/list"  # pages of it: the tool's definition
    assert [m for m in gate.methods if m != "tools/list"] == [
        "tools/call",
        "server/discover",
    ]
    remembered = eras.get(url)
    assert remembered is not None
    assert remembered.discover is not None

    gate.methods.clear()
    async with MCPSession(url, http, mode=MODERN_FIRST, eras=eras) as session:
        await session.call_tool("echo", {})
        assert "tools" in (session.capabilities or {})  # adopted, not asked
        await session.describe()
    assert [m for m in gate.methods if m != "tools/list"] == ["tools/call"]


async def test_modern_first_falls_back_to_initialize_on_an_older_server(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    """A 400 without a modern JSON-RPC error means an older server: initialize."""
    gate = peer.gates["legacy"]
    gate.methods.clear()
    eras = EraMemory()
    url = peer.url("legacy")
    async with MCPSession(url, http, mode=MODERN_FIRST, eras=eras) as session:
        result = await session.call_tool("echo", {"text": "old"})
        assert session.protocol_version == "2025-03-26"
    assert result["content"][0]["text"] == "echo:old:2025-03-26"
    assert gate.methods[:2] == ["tools/list", "initialize"]
    assert "server/discover" not in gate.methods
    assert eras.get(url) == Era("legacy")

    gate.methods.clear()
    async with MCPSession(url, http, mode=MODERN_FIRST, eras=eras) as session:
        await session.call_tool("echo", {})
    assert gate.methods[0] == "initialize"  # remembered: no stateless attempt


async def test_no_listen_stream_until_someone_watches(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    """A session that only calls holds no stream; ``watch_tools`` opens one (issue 9)."""
    gate = peer.gates["listen"]
    gate.methods.clear()

    async def on_tools_changed() -> None:
        pass

    async with MCPSession(
        peer.url("listen"),
        http,
        mode=MODERN_FIRST,
        on_tools_changed=on_tools_changed,
        watch_tools=False,
    ) as session:
        for _ in range(2):
            await session.call_tool("echo", {})
        assert "subscriptions/listen" not in gate.methods
        assert BUS.listeners == 0
        session.watch_tools()  # capabilities unknown (no discover): it asks
        await _until(lambda: BUS.listeners == 1)
        session.watch_tools()
        await session.call_tool("echo", {})
    assert gate.methods.count("subscriptions/listen") == 1
    assert "server/discover" not in gate.methods
    await _until(lambda: BUS.listeners == 0)


# ------------------------------------------------------- released connections (R6.4.7)


async def test_a_released_connection_keeps_its_subscription(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    """A stateless connection is closed; the subscription rides on without it.

    The next call makes a new connection at the remembered era (no ``server/discover``)
    and the change it causes arrives on the subscription opened before.
    """
    gate = peer.gates["listen"]
    calls = 0

    async def on_tools_changed() -> None:
        nonlocal calls
        calls += 1

    async with MCPSession(
        peer.url("listen"), http, on_tools_changed=on_tools_changed
    ) as session:
        await session.connect()
        await _until(lambda: BUS.listeners == 1)
        assert session.release() is True
        assert not session.connected
        assert session.busy  # the subscription keeps it in a pool
        assert session.release() is False  # nothing left to close
        gate.methods.clear()
        await session.call_tool("notify_changed", {})
        await _until(lambda: calls == 1)
        assert session.protocol_version == "2026-07-28"  # connected again
        assert [m for m in gate.methods if m != "tools/list"] == ["tools/call"]
        assert BUS.listeners == 1
    await _until(lambda: BUS.listeners == 0)


async def test_watching_a_released_session_subscribes_at_the_remembered_era(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    """With no connection, the era memory says what the server speaks."""

    async def on_tools_changed() -> None:
        pass

    gate = peer.gates["listen"]
    async with MCPSession(
        peer.url("listen"), http, on_tools_changed=on_tools_changed, watch_tools=False
    ) as session:
        await session.connect()
        assert session.release() is True
        gate.methods.clear()
        session.watch_tools()
        await _until(lambda: BUS.listeners == 1)
        assert not session.connected
        assert gate.methods == ["subscriptions/listen"]
    await _until(lambda: BUS.listeners == 0)


async def test_a_stateful_connection_is_not_released(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    """Its ``Mcp-Session-Id`` and GET stream are the server's state and change channel."""
    async with MCPSession(peer.url("sse"), http, mode="legacy") as session:
        await session.connect()
        assert session.release() is False
        assert session.connected


async def test_a_silent_subscription_is_reopened_and_the_gap_revalidated(
    peer: Peer, http: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No keep-alive exists on a listen stream: silence re-opens it (listen.py).

    A change may have gone unheard while no stream was open, so the holder is told
    to revalidate (``on_tools_gap``), not that the list changed. Before, the
    transport's read timeout ended the subscription for good.
    """
    monkeypatch.setattr(session_module, "LISTEN_READ_TIMEOUT", 0.3)
    monkeypatch.setattr(session_module, "SUBSCRIBE_BACKOFF", (0.05, 0.2))
    gate = peer.gates["listen"]
    gate.methods.clear()
    changed = gaps = 0

    async def on_tools_changed() -> None:
        nonlocal changed
        changed += 1

    async def on_tools_gap() -> None:
        nonlocal gaps
        gaps += 1

    async with MCPSession(
        peer.url("listen"),
        http,
        on_tools_changed=on_tools_changed,
        on_tools_gap=on_tools_gap,
    ) as session:
        await session.connect()
        await _until(lambda: gaps >= 2)
        assert gate.methods.count("subscriptions/listen") >= 3
        assert changed == 0  # silence is not a change
    await _until(lambda: BUS.listeners == 0)


async def test_a_released_session_subscribes_after_the_era_memory_forgot_it(
    peer: Peer, http: httpx2.AsyncClient
) -> None:
    """The era memory is bounded; a fan-out over more endpoints than it holds may
    have dropped this one by the time it watches: the session knows what it spoke."""

    async def on_tools_changed() -> None:
        pass

    eras = EraMemory(limit=1)
    async with MCPSession(
        peer.url("listen"),
        http,
        on_tools_changed=on_tools_changed,
        watch_tools=False,
        eras=eras,
    ) as session:
        await session.connect()
        assert session.release() is True
        eras.put("http://other.test/mcp", Era("legacy"))  # pushes this endpoint out
        assert eras.get(peer.url("listen")) is None
        session.watch_tools()
        await _until(lambda: BUS.listeners == 1)
        assert not session.connected
    await _until(lambda: BUS.listeners == 0)
