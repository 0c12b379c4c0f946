"""Property: whatever JSON-RPC results or SSE events an MCP server sends, only a
TetherError escapes ``MCPSession``.

A scripted transport (``httpx2.MockTransport``) answers the handshake properly, then
answers ``tools/list`` and ``tools/call`` with generated bodies: JSON-RPC results and
errors of any shape, deep JSON, SSE streams with odd fields, ids and events. A real
server cannot be made to send most of these, which is why a mock is used here.

The session's deadline is short (0.5 s) because an answer with the wrong id leaves the
request waiting: either outcome (a result or ``RequestTimeout``) satisfies the property,
so the test does not depend on how fast the machine is.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx2
from hypothesis import given
from hypothesis import strategies as st

from fuzz.strategies import deep_json, json_values, scalars, texts
from tether.errors import TetherError
from tether.mcp.session import MCPSession

URL = "http://mcp.test/mcp"
INIT_RESULT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {"tools": {}},
    "serverInfo": {"name": "fuzz", "version": "1"},
}

RESULTS = st.one_of(
    json_values(),
    st.fixed_dictionaries(
        {},
        optional={
            "tools": st.one_of(
                st.lists(
                    st.fixed_dictionaries(
                        {"name": st.one_of(texts, scalars)},
                        optional={"inputSchema": json_values(), "description": scalars},
                    ),
                    max_size=3,
                ),
                json_values(),
            ),
            "nextCursor": st.one_of(texts, scalars),
            "content": json_values(),
            "isError": scalars,
            "structuredContent": json_values(),
        },
    ),
)
ERRORS = st.fixed_dictionaries(
    {},
    optional={
        "code": st.one_of(st.sampled_from([-32000, -32603, -32001, -32042]), scalars),
        "message": st.one_of(texts, scalars),
        "data": json_values(),
    },
)


@st.composite
def messages(draw: st.DrawFn, request_id: Any) -> Any:
    """One JSON-RPC message for the request, often well-formed, sometimes not."""
    shape = draw(st.sampled_from(["result", "error", "junk", "other_id"]))
    if shape == "result":
        return {"jsonrpc": "2.0", "id": request_id, "result": draw(RESULTS)}
    if shape == "error":
        return {"jsonrpc": "2.0", "id": request_id, "error": draw(ERRORS)}
    if shape == "other_id":
        return {"jsonrpc": "2.0", "id": draw(scalars), "result": draw(RESULTS)}
    return draw(json_values())


@st.composite
def answers(draw: st.DrawFn) -> tuple[int, str, bytes]:
    """(status, content type, body) for a request with id 1 (the SDK's first call)."""
    status = draw(st.sampled_from([200, 200, 200, 202, 400, 404, 500]))
    kind = draw(st.sampled_from(["json", "sse", "deep", "raw"]))
    if kind == "deep":
        return status, "application/json", draw(deep_json(100, 3_000))
    if kind == "raw":
        body = draw(st.binary(max_size=300))
        return (
            status,
            draw(st.sampled_from(["application/json", "text/event-stream"])),
            body,
        )
    message = draw(messages(draw(st.sampled_from([1, 2, "1", None]))))
    data = json.dumps(message, allow_nan=True)
    if kind == "json":
        return status, "application/json", data.encode("utf-8", "surrogatepass")
    fields = draw(
        st.lists(
            st.one_of(
                st.just(f"data: {data}"),
                st.builds(lambda t: f"data: {t}", texts),
                st.sampled_from(
                    ["event: message", "event: ping", "id: 7", "retry: x", ": c"]
                ),
                st.builds(lambda t: f"{t}: {t}", texts),
            ),
            min_size=1,
            max_size=4,
        )
    )
    stream = "\n".join(fields) + draw(st.sampled_from(["\n\n", "\n", "", "\r\n\r\n"]))
    return status, "text/event-stream", stream.encode("utf-8", "surrogatepass")


def transport(answer: tuple[int, str, bytes]) -> httpx2.MockTransport:
    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.method != "POST":
            return httpx2.Response(405)
        message = json.loads(request.content)
        method = message.get("method")
        if method == "initialize":
            body = {"jsonrpc": "2.0", "id": message["id"], "result": INIT_RESULT}
            return httpx2.Response(200, json=body, headers={"mcp-session-id": "s1"})
        if "id" not in message:  # notifications
            return httpx2.Response(202)
        status, content_type, raw = answer
        return httpx2.Response(
            status, content=raw, headers={"content-type": content_type}
        )

    return httpx2.MockTransport(handle)


async def exercise(answer: tuple[int, str, bytes], call: bool, mode: str) -> None:
    async with httpx2.AsyncClient(transport=transport(answer)) as http:
        try:
            async with MCPSession(
                URL, http, mode=mode, server="fuzz", timeout=0.5, max_pages=3
            ) as session:
                if call:
                    await session.call_tool("t", {"a": 1})
                else:
                    await session.list_tools()
        except TetherError:
            pass


@given(answers(), st.booleans(), st.sampled_from(["legacy", "2026-07-28"]))
def test_jsonrpc_results_and_sse_events(
    answer: tuple[int, str, bytes], call: bool, mode: str
) -> None:
    # legacy: initialize is answered properly, the call gets the generated answer;
    # 2026-07-28 (stateless): server/discover already gets it.
    anyio.run(exercise, answer, call, mode)
