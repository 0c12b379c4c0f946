"""The examples of docs/embedding.md, run as written against real peers."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx2
import pytest

from peers.fixture import AuthServer, MCPServer
from tether.hub.tether import Tether
from tether.net.browser import follow_authorization
from tether.net.policy import NetworkPolicy
from tether.store.crypto import KeyRing

from .conftest import LOOPBACK

DOC = Path(__file__).resolve().parents[2] / "docs" / "embedding.md"
PUBLIC = "http://127.0.0.1:8000"
POLICY = NetworkPolicy.from_allowlist(LOOPBACK)


def example(name: str, tmp_path: Path) -> ModuleType:
    """Load the code block after ``<!-- example: name -->`` as a module."""
    text = DOC.read_text()
    found = re.search(
        rf"<!-- example: {name} -->\n```python\n(.*?)```", text, flags=re.DOTALL
    )
    assert found, f"no {name} example in {DOC}"
    path = tmp_path / f"embed_{name}.py"
    path.write_text(found.group(1))
    spec = importlib.util.spec_from_file_location(f"embed_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
async def test_example_connects_a_user_and_returns(
    framework: str, tmp_path: Path, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    build: Callable[..., Any] = example(framework, tmp_path).build_app
    app = build(
        PUBLIC,
        secret="test-secret-" + framework,
        database_url="memory://",
        key_ring=KeyRing.generate(),
        allow_networks=LOOPBACK,
    )
    async with app.router.lifespan_context(app):
        tether: Tether = _tether_of(app)
        await tether.servers.create(
            {
                "name": "Docs",
                "url": mcp_server.url,
                "auth_mode": "oauth",
                "oauth": {"per_user": True},
            },
            actor="test",
        )
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url=PUBLIC) as alice:
            r = await alice.get("/tether/connections/Docs")
            assert r.status_code == 401
            await alice.get("/login/alice")
            assert (await alice.get("/")).json()["user"] == "alice"
            r = await alice.get(
                "/tether/connect/Docs", params={"return_to": "https://evil.test/"}
            )
            assert r.status_code == 403
            r = await alice.get("/tether/connect/Docs", params={"return_to": "/"})
            assert r.status_code == 303
            params = await follow_authorization(
                r.headers["location"], f"{PUBLIC}/tether/oauth/callback", POLICY
            )
            r = await alice.get("/tether/oauth/callback", params=params)
            assert r.status_code == 303
            assert r.headers["location"].startswith("/?tether_status=connected")
            home = await alice.get(r.headers["location"])
            assert home.json()["query"]["tether_server"] == "Docs"
            status = (await alice.get("/tether/connections/Docs")).json()
            assert status["status"] == "connected"
            assert status["subject"] == "alice"
            tools = (await alice.get("/tools/Docs")).json()
            assert "whoami" in [t["name"] for t in tools]
        async with httpx2.AsyncClient(transport=transport, base_url=PUBLIC) as bob:
            await bob.get("/login/bob")
            status = (await bob.get("/tether/connections/Docs")).json()
            assert status["status"] == "disconnected"
            # bob cannot finish alice's replayed callback
            r = await bob.get("/tether/oauth/callback", params=params)
            assert r.status_code == 400
        async with httpx2.AsyncClient(transport=transport, base_url=PUBLIC) as alice2:
            await alice2.get("/login/alice")
            r = await alice2.post("/tether/connections/Docs/disconnect")
            assert r.status_code == 200
            status = (await alice2.get("/tether/connections/Docs")).json()
            assert status["status"] == "disconnected"


def _tether_of(app: Any) -> Tether:
    state = getattr(app.state, "tether", None)
    if isinstance(state, Tether):
        return state
    for route in app.routes:  # the Flask shell keeps it in the embedded app's override
        sub = getattr(route, "app", None)
        overrides = getattr(sub, "dependency_overrides", {})
        for provider in overrides.values():
            try:
                value = provider()
            except TypeError:
                continue
            if isinstance(value, Tether):
                return value
    raise AssertionError("no Tether found on the app")
