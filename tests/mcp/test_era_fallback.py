"""An older stateless server answers a 2026-07-28 request with a result of its own era.

Servers built on SDKs before 2026-07-28 in stateless mode answer ``tools/list`` without
``initialize`` and ignore the revision headers, so the first request of a modern-first
session gets HTTP 200 with a result lacking the revision's required fields (``ttlMs``,
``cacheScope``). That is no modern evidence: the session connects with ``initialize``
and remembers the older era (HTTP7-8), as the conformance suite's 0.1.16 servers
require. The server runs in process behind ``httpx2.ASGITransport``.
"""

from __future__ import annotations

from typing import Any

import httpx2

from peers.skill_server import SkillServer
from tether.mcp.session import MODERN_FIRST, Era, EraMemory, MCPSession

URL = "http://legacy.test/mcp"
TOOL = {"name": "echo", "inputSchema": {"type": "object"}}


class OlderStatelessServer(SkillServer):
    """Answers any ``tools/list``, with or without ``initialize``, in its own shape."""

    def result(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "tools/list":
            return {"tools": [TOOL]}
        return super().result(method, params)


async def test_a_result_of_an_older_era_falls_back_to_initialize() -> None:
    server = OlderStatelessServer()
    eras = EraMemory()
    transport = httpx2.ASGITransport(app=server)
    async with (
        httpx2.AsyncClient(transport=transport) as client,
        MCPSession(URL, client, mode=MODERN_FIRST, eras=eras, timeout=30) as session,
    ):
        tools = await session.list_tools()
        assert session.stateless is False
    assert [tool["name"] for tool in tools] == ["echo"]
    assert server.methods == [
        "tools/list",
        "initialize",
        "notifications/initialized",
        "tools/list",
    ]
    assert eras.get(URL) == Era("legacy")


async def test_the_remembered_older_era_sends_no_modern_request() -> None:
    server = OlderStatelessServer()
    eras = EraMemory()
    eras.put(URL, Era("legacy"))
    transport = httpx2.ASGITransport(app=server)
    async with (
        httpx2.AsyncClient(transport=transport) as client,
        MCPSession(URL, client, mode=MODERN_FIRST, eras=eras, timeout=30) as session,
    ):
        assert [tool["name"] for tool in await session.list_tools()] == ["echo"]
    assert server.methods[0] == "initialize"
