"""MCPSession's Skills methods (SEP-2640) against a JSON-RPC server in process.

The SDK's lowlevel server has no ``skills/list``, so a small ASGI app answers like the
conformance suite's fixture: ``initialize`` declares the extension, ``skills/list``
pages the entries, ``resources/read`` serves the files (optionally tampered). It runs
behind ``httpx2.ASGITransport``: no sockets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from tether.errors import MCPProtocolError, SkillVerificationFailed
from tether.mcp.session import MCPSession
from tether.mcp.skills import EXTENSION


def skill_md(name: str) -> str:
    return f"---\nname: {name}\ndescription: The {name} skill\n---\n\nBody of {name}.\n"


def listed(name: str, files: dict[str, str]) -> dict[str, Any]:
    uri = f"skill://{name}/SKILL.md"
    return {
        "uri": uri,
        "frontmatter": {"name": name, "description": f"The {name} skill"},
        "resources": [
            {
                "uri": file_uri,
                "digest": "sha256:" + hashlib.sha256(text.encode()).hexdigest(),
                "size": len(text.encode()),
            }
            for file_uri, text in files.items()
        ],
    }


@dataclass
class SkillServer:
    """The fixture: two skills, one per ``skills/list`` page, plus one bad entry."""

    extension: bool = True
    tampered: set[str] = field(default_factory=set)
    methods: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            self.files[f"skill://{name}/SKILL.md"] = skill_md(name)
        self.files["skill://alpha/ref/NOTES.md"] = "notes\n"

    def pages(self) -> list[list[dict[str, Any]]]:
        alpha = {u: t for u, t in self.files.items() if u.startswith("skill://alpha/")}
        beta = {"skill://beta/SKILL.md": self.files["skill://beta/SKILL.md"]}
        broken = {"uri": "skill://gamma/SKILL.md", "frontmatter": {"name": "gamma"}}
        return [[listed("alpha", alpha)], [listed("beta", beta), broken]]

    def result(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "initialize":
            capabilities: dict[str, Any] = {"resources": {}}
            if self.extension:
                capabilities["extensions"] = {EXTENSION: {}}
            return {
                "protocolVersion": params["protocolVersion"],
                "capabilities": capabilities,
                "serverInfo": {"name": "skills", "version": "1"},
            }
        if method == "skills/list":
            index = int(params.get("cursor") or 0)
            page: dict[str, Any] = {"skills": self.pages()[index]}
            if index + 1 < len(self.pages()):
                page["nextCursor"] = str(index + 1)
            return page
        if method == "resources/read":
            uri = params["uri"]
            self.reads.append(uri)
            text = self.files[uri] + ("tampered\n" if uri in self.tampered else "")
            return {
                "contents": [{"uri": uri, "mimeType": "text/markdown", "text": text}]
            }
        return {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if request.method != "POST":
            await Response(status_code=405)(scope, receive, send)
            return
        message = json.loads(await request.body())
        self.methods.append(message["method"])
        if "id" not in message:
            await Response(status_code=202)(scope, receive, send)
            return
        result = self.result(message["method"], message.get("params") or {})
        body = {"jsonrpc": "2.0", "id": message["id"], "result": result}
        await JSONResponse(body)(scope, receive, send)


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
