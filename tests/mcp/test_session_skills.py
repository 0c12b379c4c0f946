"""MCPSession's Skills methods (SEP-2640) against a JSON-RPC server in process.

The SDK's lowlevel server has no ``skills/list``, so a small ASGI app answers like the
conformance suite's fixture: ``initialize`` declares the extension, ``skills/list``
pages the entries, ``resources/read`` serves the files (optionally tampered). It runs
behind ``httpx2.ASGITransport``: no sockets.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from peers.skill_server import SkillServer
from tether.errors import MCPProtocolError, SkillVerificationFailed
from tether.mcp.session import MODERN_FIRST, Era, EraMemory, MCPSession


@pytest.fixture
def server() -> SkillServer:
    return SkillServer()


@contextlib.asynccontextmanager
async def connected(server: SkillServer) -> AsyncIterator[MCPSession]:
    transport = httpx2.ASGITransport(app=server)
    async with (
        httpx2.AsyncClient(transport=transport) as client,
        MCPSession(
            "http://skills.test/mcp", client, server="docs", mode="legacy", timeout=10
        ) as session,
    ):
        yield session


async def test_list_skills_reads_no_file(server: SkillServer) -> None:
    async with connected(server) as session:
        skills = await session.list_skills()
        assert [s.name for s in skills] == ["alpha", "beta"]  # gamma is malformed
        assert session.offers_skills
        assert server.methods.count("skills/list") == 2
        assert server.reads == []  # SEP-2640: nothing is fetched ahead of need


async def test_read_skill_then_a_file(server: SkillServer) -> None:
    async with connected(server) as session:
        alpha = (await session.list_skills())[0]
        skill = await session.read_skill(alpha)
        assert skill.body == "\nBody of alpha.\n"
        assert server.reads == ["skill://alpha/SKILL.md"]
        notes = await session.read_skill_file(alpha, "skill://alpha/ref/NOTES.md")
        assert notes == b"notes\n"


async def test_a_tampered_skill_is_refused(server: SkillServer) -> None:
    async with connected(server) as session:
        server.tampered.add("skill://alpha/SKILL.md")
        alpha = (await session.list_skills())[0]
        with pytest.raises(SkillVerificationFailed) as caught:
            await session.read_skill(alpha)
        assert caught.value.server == "docs"
        assert caught.value.details["skill"] == "alpha"
        assert caught.value.details["reason"] == "size"


async def test_a_tampered_file_is_refused(server: SkillServer) -> None:
    async with connected(server) as session:
        server.tampered.add("skill://alpha/ref/NOTES.md")
        alpha = (await session.list_skills())[0]
        with pytest.raises(
            SkillVerificationFailed, match=r"NOTES\.md failed verification"
        ):
            await session.read_skill_file(alpha, "skill://alpha/ref/NOTES.md")


async def test_no_extension_no_request(server: SkillServer) -> None:
    server.extension = False
    transport = httpx2.ASGITransport(app=server)
    async with (
        httpx2.AsyncClient(transport=transport) as client,
        MCPSession("http://skills.test/mcp", client, mode="legacy") as session,
    ):
        assert await session.list_skills() == []
        assert not session.offers_skills
    assert "skills/list" not in server.methods


async def test_a_cursor_loop_ends(server: SkillServer) -> None:
    async with connected(server) as session:
        original = server.result

        def looping(method: str, params: dict[str, Any]) -> dict[str, Any]:
            if method == "skills/list":
                return {"skills": [], "nextCursor": "again"}
            return original(method, params)

        server.result = looping  # type: ignore[method-assign]
        with pytest.raises(MCPProtocolError, match="skills/list did not end"):
            await session.list_skills()


async def test_modern_first_falls_back_when_discover_is_not_answered(
    server: SkillServer,
) -> None:
    """A ``server/discover`` answer that is no DiscoverResult is no modern evidence.

    The session assumed 2026-07-28 (no probe); asking the capabilities the skills
    need shows the server is older, so it connects with ``initialize`` (HTTP7-8).
    """
    eras = EraMemory()
    transport = httpx2.ASGITransport(app=server)
    async with (
        httpx2.AsyncClient(transport=transport) as client,
        MCPSession(
            "http://skills.test/mcp", client, mode=MODERN_FIRST, eras=eras, timeout=10
        ) as session,
    ):
        skills = await session.list_skills()
        assert session.stateless is False
    assert [s.name for s in skills] == ["alpha", "beta"]
    assert server.methods[:2] == ["server/discover", "initialize"]
    assert eras.get("http://skills.test/mcp") == Era("legacy")
