"""MCPSession's 2026-07-28 behaviour against a real SDK server (stateless manager).

One uvicorn server in a background thread mounts a stateless lowlevel ``Server`` behind
an ASGI gate that records each POST's headers and body and can (a) answer the first
request with ``UnsupportedProtocolVersion`` (-32022) and (b) drop ``resultType`` from
JSON results, as a server that relies on the default ``complete`` does.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import mcp.types as types
import pytest
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Message, Receive, Scope, Send

from tether.errors import MCPProtocolError, NetworkError
from tether.mcp.session import MODERN_FIRST, Era, EraMemory, MCPSession

TOOLS = [
    types.Tool(
        name="annotated",
        input_schema={
            "type": "object",
            "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "note": {"type": "string", "x-mcp-header": "Note"},
                "plain": {"type": "string"},
            },
        },
    ),
    types.Tool(
        name="bad_header",
        input_schema={
            "type": "object",
            "properties": {"v": {"type": "object", "x-mcp-header": "Obj"}},
        },
    ),
]


async def list_tools(
    ctx: Any, params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> Any:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"called:{params.name}")]
    )


@dataclass
class Gate:
    manager: StreamableHTTPSessionManager
    posts: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    reject_versions: int = 0
    drop_result_type: bool = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.manager.handle_request(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        body = json.loads(raw)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.posts.append((headers, body))
        if self.reject_versions > 0:
            self.reject_versions -= 1
            error = {
                "jsonrpc": "2.0",
                "id": body.get("id"),
                "error": {
                    "code": -32022,
                    "message": "Unsupported protocol version",
                    "data": {"supported": ["2026-07-28"], "requested": "x"},
                },
            }
            await _json(send, 400, error)
            return

        async def replay() -> Message:
            return {"type": "http.request", "body": raw, "more_body": False}

        if not self.drop_result_type:
            await self.manager.handle_request(scope, replay, send)
            return
        start: Message = {}
        out: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            else:
                out.append(message.get("body", b""))

        await self.manager.handle_request(scope, replay, capture)
        answer = json.loads(b"".join(out)) if out and b"".join(out) else None
        if isinstance(answer, dict) and isinstance(answer.get("result"), dict):
            answer["result"].pop("resultType", None)
            await _json(send, start["status"], answer)
            return
        await send(start)
        await send({"type": "http.response.body", "body": b"".join(out)})


async def _json(send: Send, status: int, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})


@pytest.fixture(scope="module")
def gate() -> Iterator[tuple[str, Gate]]:
    server_: Server[Any] = Server(
        "modern", on_list_tools=list_tools, on_call_tool=call_tool
    )
    the_gate = Gate(
        StreamableHTTPSessionManager(server_, stateless=True, json_response=True)
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with the_gate.manager.run():
            yield

    app = Starlette(routes=[Mount("/mcp", app=the_gate)], lifespan=lifespan)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", ws="none", loop="asyncio")
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30  # a hang guard only
    while not server.started:
        assert thread.is_alive()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp/", the_gate
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(autouse=True)
def _reset(gate: tuple[str, Gate]) -> None:
    gate[1].posts.clear()
    gate[1].reject_versions = 0
    gate[1].drop_result_type = False


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=30) as client:
        yield client


def _calls(the_gate: Gate) -> list[tuple[dict[str, str], dict[str, Any]]]:
    return [(h, b) for h, b in the_gate.posts if b.get("method") == "tools/call"]


async def test_every_request_carries_version_method_and_meta(
    gate: tuple[str, Gate], http: httpx2.AsyncClient
) -> None:
    url, the_gate = gate
    async with MCPSession(url, http, mode="2026-07-28") as session:
        await session.call_tool("annotated", {"region": "eu"})
    assert [b["method"] for _, b in the_gate.posts] == ["tools/list", "tools/call"]
    for headers, body in the_gate.posts:
        meta = body["params"]["_meta"]
        assert headers["mcp-protocol-version"] == "2026-07-28"
        assert meta["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
        assert meta["io.modelcontextprotocol/clientInfo"]["name"] == "tether"
        assert "io.modelcontextprotocol/clientCapabilities" in meta
        assert headers["mcp-method"] == body["method"]
    assert _calls(the_gate)[0][0]["mcp-name"] == "annotated"


async def test_x_mcp_header_arguments_are_mirrored_without_a_prior_list(
    gate: tuple[str, Gate], http: httpx2.AsyncClient
) -> None:
    url, the_gate = gate
    async with MCPSession(url, http, mode="2026-07-28") as session:
        await session.call_tool(
            "annotated", {"region": "us-west1", "note": "Hello, 世界", "plain": "x"}
        )
        await session.call_tool("annotated", {"region": "eu", "note": None})
    first, second = (headers for headers, _ in _calls(the_gate))
    assert first["mcp-param-region"] == "us-west1"
    assert first["mcp-param-note"] == "=?base64?SGVsbG8sIOS4lueVjA==?="
    assert not any(k.endswith("-plain") for k in first)
    assert second["mcp-param-region"] == "eu"
    assert "mcp-param-note" not in second  # null is left out
    # one listing serves both calls
    assert [b["method"] for _, b in the_gate.posts].count("tools/list") == 1


async def test_tool_with_invalid_annotation_is_dropped_and_not_called(
    gate: tuple[str, Gate], http: httpx2.AsyncClient
) -> None:
    url, the_gate = gate
    async with MCPSession(url, http, mode="2026-07-28") as session:
        names = [tool["name"] for tool in await session.list_tools()]
        with pytest.raises(MCPProtocolError) as caught:
            await session.call_tool("bad_header", {"v": {}})
    assert names == ["annotated"]
    assert caught.value.details["reason"] == "tool_unavailable"
    assert _calls(the_gate) == []


async def test_unsupported_version_is_retried_with_a_supported_one(
    gate: tuple[str, Gate], http: httpx2.AsyncClient
) -> None:
    url, the_gate = gate
    the_gate.reject_versions = 1
    async with MCPSession(url, http, mode="2026-07-28") as session:
        result = await session.call_tool("annotated", {"region": "eu"})
        assert session.protocol_version == "2026-07-28"
    assert result["content"][0]["text"] == "called:annotated"
    assert [b["method"] for _, b in the_gate.posts] == [
        "tools/list",
        "tools/list",
        "tools/call",
    ]


async def test_auto_mode_retries_discover_after_unsupported_version(
    gate: tuple[str, Gate], http: httpx2.AsyncClient
) -> None:
    url, the_gate = gate
    the_gate.reject_versions = 1
    async with MCPSession(url, http) as session:
        await session.list_tools()
        assert session.protocol_version == "2026-07-28"
    methods = [b["method"] for _, b in the_gate.posts]
    assert methods[:2] == ["server/discover", "server/discover"]
    assert "initialize" not in methods


async def test_result_without_result_type_is_complete(
    gate: tuple[str, Gate], http: httpx2.AsyncClient
) -> None:
    url, the_gate = gate
    the_gate.drop_result_type = True
    async with MCPSession(url, http, mode="2026-07-28") as session:
        result = await session.call_tool("annotated", {"region": "eu"})
    assert result["content"][0]["text"] == "called:annotated"
    assert result.get("isError") in (None, False)


def _methods(the_gate: Gate) -> list[str]:
    return [str(b.get("method")) for _, b in the_gate.posts]


async def test_a_known_definition_spares_the_list(
    gate: tuple[str, Gate], http: httpx2.AsyncClient
) -> None:
    """The caller's cached definitions name the x-mcp-header arguments (HTTP7-4)."""
    url, the_gate = gate

    async def known() -> list[dict[str, Any]]:
        return [
            t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in TOOLS
        ]

    async with MCPSession(url, http, mode="2026-07-28", known_tools=known) as session:
        await session.call_tool("annotated", {"region": "eu"})
        # a known definition the SDK's filter drops is not trusted: list, then refuse
        with pytest.raises(MCPProtocolError) as caught:
            await session.call_tool("bad_header", {"v": {}})
    assert _methods(the_gate) == ["tools/call", "tools/list"]
    assert _calls(the_gate)[0][0]["mcp-param-region"] == "eu"
    assert caught.value.details["reason"] == "tool_unavailable"


async def test_a_failing_cache_of_definitions_falls_back_to_listing(
    gate: tuple[str, Gate], http: httpx2.AsyncClient
) -> None:
    url, the_gate = gate

    async def known() -> list[dict[str, Any]]:
        raise NetworkError("the store is away")

    async with MCPSession(url, http, mode="2026-07-28", known_tools=known) as session:
        await session.call_tool("annotated", {"region": "eu"})
    assert _methods(the_gate) == ["tools/list", "tools/call"]
    assert _calls(the_gate)[0][0]["mcp-param-region"] == "eu"


async def test_a_remembered_era_that_fails_is_probed_again(
    gate: tuple[str, Gate], http: httpx2.AsyncClient
) -> None:
    """The era is re-probed when the remembered one fails (MCP Base 07 Versioning)."""
    url, the_gate = gate
    the_gate.reject_versions = 1  # the remembered initialize gets -32022
    eras = EraMemory()
    eras.put(url, Era("legacy"))
    async with MCPSession(url, http, mode=MODERN_FIRST, eras=eras) as session:
        result = await session.call_tool("annotated", {"region": "eu"})
        assert session.protocol_version == "2026-07-28"
    assert result["content"][0]["text"] == "called:annotated"
    assert _methods(the_gate) == ["initialize", "tools/list", "tools/call"]
    assert eras.get(url) == Era("2026-07-28")
