"""A JSON-RPC server offering Skills (SEP-2640), like the conformance suite's fixture.

The SDK's lowlevel server has no ``skills/list``: ``initialize`` declares the extension,
``skills/list`` pages the entries (plus one malformed entry), ``resources/read`` serves
the files, optionally tampered. An ASGI app, for ``httpx2.ASGITransport`` or uvicorn.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

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
