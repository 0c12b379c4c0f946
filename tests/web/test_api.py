"""The JSON API: every route, its success and each 4xx path, against real peers."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from peers.fixture import AuthServer, MCPServer
from tether.errors import StorageError
from tether.net.browser import follow_authorization
from tether.net.policy import NetworkPolicy
from tether.store.base import Connection

from .conftest import BASE, LOOPBACK, Service

POLICY = NetworkPolicy.from_allowlist(LOOPBACK)
CALLBACK = f"{BASE}/oauth/callback"


def error(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code
    return body


async def add_server(svc: Service, **spec: Any) -> dict[str, Any]:
    async with svc.admin as c:
        r = await c.post("/api/v1/servers", json=spec)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def connect_shared(svc: Service, server_id: str) -> None:
    """Start as an admin, open the connect link in a browser, let the auto-approving
    AS answer, land on the callback in that browser (issue 7 item 11)."""
    async with svc.admin as c:
        r = await c.post(f"/api/v1/servers/{server_id}/connection")
    assert r.status_code == 201, r.text
    started = r.json()
    async with svc.anon as browser:
        # the bare authorization URL is bound to the admin: no browser completes it
        bare = await follow_authorization(
            started["authorization_url"], CALLBACK, POLICY
        )
        refused = await browser.get("/oauth/callback", params=bare)
        assert refused.status_code == 400, refused.text
        page = await browser.get(started["connect_url"])
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        token = parse_qs(urlsplit(started["connect_url"]).query)["token"][0]
        link = await browser.post("/connect", data={"token": token, "csrf": csrf[1]})
        assert link.status_code == 303
        params = await follow_authorization(link.headers["location"], CALLBACK, POLICY)
        done = await browser.get("/oauth/callback", params=params)
    assert done.status_code == 200, done.text
    assert "Connected" in done.text


# ---------------------------------------------------------------------- access


async def test_missing_bad_and_revoked_keys_are_401(service: Service) -> None:
    async with service.anon as c:
        error(await c.get("/api/v1/servers"), 401, "auth.unauthenticated")
        r = await c.get("/api/v1/servers", headers={"Authorization": "Basic abc"})
        error(r, 401, "auth.unauthenticated")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    async with service.client("tk_nope_" + "x" * 40) as c:
        error(await c.get("/api/v1/servers"), 401, "auth.unauthenticated")
    await service.tether.stores.api_keys.revoke("wiki")
    async with service.client(service.other_app_key) as c:
        body = error(await c.get("/api/v1/servers"), 401, "auth.unauthenticated")
    assert "revoked" in body["message"]


async def test_app_keys_may_not_administer(service: Service) -> None:
    async with service.client(service.app_key) as c:
        assert (await c.get("/api/v1/servers")).status_code == 200
        r = await c.post("/api/v1/servers", json={"name": "x", "url": "https://x.test"})
        error(r, 403, "auth.forbidden")
        error(await c.get("/api/v1/credentials"), 403, "auth.forbidden")
        error(await c.get("/api/v1/audit"), 403, "auth.forbidden")
        error(await c.delete("/api/v1/toolsets/x"), 403, "auth.forbidden")


async def test_unknown_route_is_a_json_404(service: Service) -> None:
    async with service.admin as c:
        error(await c.get("/api/v1/nothing"), 404, "not_found")


# ---------------------------------------------------------------------- servers


async def test_server_crud(service: Service, open_mcp_server: MCPServer) -> None:
    created = await add_server(
        service, name="Open", url=open_mcp_server.url, allow_networks=LOOPBACK
    )
    assert created["name"] == "Open"
    async with service.admin as c:
        listed = (await c.get("/api/v1/servers")).json()
        assert [s["name"] for s in listed] == ["Open"]
        assert (await c.get("/api/v1/servers/Open")).json()["id"] == created["id"]
        r = await c.patch(
            f"/api/v1/servers/{created['id']}", json={"timeout_seconds": 60}
        )
        assert r.status_code == 200
        assert r.json()["timeout_seconds"] == 60
        r = await c.patch("/api/v1/servers/Open", json={"timeout_seconds": 0})
        body = error(r, 422, "validation")
        assert "timeout_seconds" in body["details"]["fields"]
        assert (await c.delete("/api/v1/servers/Open")).status_code == 204
        error(await c.get("/api/v1/servers/Open"), 404, "not_found")
        error(await c.delete("/api/v1/servers/Open"), 404, "not_found")
        error(await c.patch("/api/v1/servers/Open", json={}), 404, "not_found")


async def test_invalid_servers_get_field_messages(service: Service) -> None:
    async with service.admin as c:
        r = await c.post("/api/v1/servers", json={"name": "", "timeout_seconds": "x"})
        fields = error(r, 422, "validation")["details"]["fields"]
        assert set(fields) >= {"name", "url", "timeout_seconds"}
        r = await c.post(
            "/api/v1/servers", json={"name": "a", "url": "http://10.1.2.3/mcp"}
        )
        assert "url" in error(r, 422, "validation")["details"]["fields"]
        r = await c.post(
            "/api/v1/servers",
            json={"name": "a", "url": "https://x.test", "bogus": 1},
        )
        assert "bogus" in error(r, 422, "validation")["details"]["fields"]


async def test_test_connection_saved_and_unsaved(
    service: Service, open_mcp_server: MCPServer
) -> None:
    spec = {"name": "Open", "url": open_mcp_server.url, "allow_networks": LOOPBACK}
    async with service.admin as c:
        r = await c.post("/api/v1/servers/test", json=spec)
        assert r.status_code == 200, r.text
        assert "echo" in r.json()["tool_names"]
        assert (await c.get("/api/v1/servers")).json() == []  # nothing saved
        oauth = {**spec, "auth_mode": "oauth"}
        error(await c.post("/api/v1/servers/test", json=oauth), 400, "usage")
        error(
            await c.post("/api/v1/servers/test", json={"name": "x"}), 422, "validation"
        )
    await add_server(service, **spec)
    async with service.client(service.app_key) as c:
        r = await c.post("/api/v1/servers/Open/test")
        assert r.json()["tool_count"] == len(r.json()["tool_names"]) > 0
        error(await c.post("/api/v1/servers/Nope/test"), 404, "not_found")
        error(await c.post("/api/v1/servers/test", json=spec), 403, "auth.forbidden")


# ---------------------------------------------------------------------- credentials


async def test_credentials_are_write_only(service: Service) -> None:
    async with service.admin as c:
        r = await c.post(
            "/api/v1/credentials", json={"name": "token", "value": "s3cret-value"}
        )
        assert r.status_code == 201
        assert "value" not in r.json()
        listed = await c.get("/api/v1/credentials")
        assert "s3cret-value" not in listed.text
        r = await c.patch("/api/v1/credentials/token", json={"description": "d"})
        assert r.json()["description"] == "d"
        error(await c.patch("/api/v1/credentials/none", json={}), 404, "not_found")
        r = await c.post("/api/v1/credentials", json={"name": "token", "value": "v"})
        error(r, 422, "validation")
        error(
            await c.post("/api/v1/credentials", json={"name": "x"}), 422, "validation"
        )
        r = await c.post(
            "/api/v1/servers",
            json={
                "name": "H",
                "url": "https://127.0.0.1:1/mcp",
                "auth_mode": "header",
                "credential_id": listed.json()[0]["id"],
                "allow_networks": LOOPBACK,
            },
        )
        assert r.status_code == 201, r.text
        error(await c.delete("/api/v1/credentials/token"), 422, "validation")
        assert (await c.delete("/api/v1/servers/H")).status_code == 204
        assert (await c.delete("/api/v1/credentials/token")).status_code == 204
        error(await c.delete("/api/v1/credentials/token"), 404, "not_found")
    assert "s3cret-value" not in str(await service.tether.audit())


# ---------------------------------------------------------------------- connections


async def test_shared_connection_start_callback_status_disconnect(
    service: Service, mcp_server: MCPServer
) -> None:
    server = await add_server(
        service, name="Prot", url=mcp_server.url, auth_mode="oauth"
    )
    async with service.client(service.app_key, user="alice") as c:
        r = await c.post(f"/api/v1/servers/{server['id']}/connection")
        error(r, 403, "auth.forbidden")
        error(await c.delete("/api/v1/servers/Prot/connection"), 403, "auth.forbidden")
        r = await c.post("/api/v1/servers/Prot/connection/refresh")
        error(r, 403, "auth.forbidden")
    await connect_shared(service, server["id"])
    async with service.admin as c:
        info = (await c.get("/api/v1/servers/Prot/connection")).json()
        assert info["status"] == "connected"
        assert "access_token" not in str(info)
        assert [x["status"] for x in (await c.get("/api/v1/connections")).json()] == [
            "connected"
        ]
        r = await c.post("/api/v1/servers/Prot/connection/refresh")
        assert r.json()["refreshed_at"] is not None
        metrics = (await c.get("/metrics")).text
        assert 'tether_refreshes_total{outcome="ok"} 1' in metrics
        assert 'tether_connections{status="connected"} 1' in metrics
        assert "tether_mcp_sessions " in metrics
        r = await c.delete("/api/v1/servers/Prot/connection")
        assert r.status_code == 200
        info = (await c.get("/api/v1/servers/Prot/connection")).json()
        assert info["status"] == "disconnected"
        error(await c.get("/api/v1/servers/Nope/connection"), 404, "not_found")
        r = await c.post("/api/v1/servers/Prot/connection/refresh")
        error(r, 401, "authorization_required")
        error(await c.get("/api/v1/connections?server=Nope"), 404, "not_found")


async def test_connection_pages_by_cursor(service: Service) -> None:
    """Keyset pages: every connection once, in key order, whatever the page size."""
    server = await add_server(
        service,
        name="Many",
        url="https://127.0.0.1:9/mcp",
        auth_mode="oauth",
        oauth={"per_user": True},
    )
    subjects = [f"crm/u{n:02d}" for n in range(7)]
    for subject in subjects:
        await service.tether.stores.connections.save(
            Connection(server["id"], subject, status="connected"), expected_version=0
        )
    async with service.admin as c:
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 3}
        pages = 0
        while True:
            r = await c.get("/api/v1/connections", params=params)
            assert r.status_code == 200, r.text
            seen += [x["subject"] for x in r.json()]
            pages += 1
            if "X-Next-Cursor" not in r.headers:
                break
            params["after"] = r.headers["X-Next-Cursor"]
        assert (seen, pages) == (subjects, 3)
        r = await c.get("/api/v1/connections", params={"limit": 7})
        assert len(r.json()) == 7
        assert "X-Next-Cursor" not in r.headers  # exactly full: no next page
        error(await c.get("/api/v1/connections?after=nope"), 422, "validation")
    async with service.client(service.app_key, user="alice") as c:
        r = await c.get("/api/v1/connections", params={"limit": 6})
        assert [x["subject"] for x in r.json()] == subjects[:6]  # crm's own users
        assert "X-Next-Cursor" in r.headers
    async with service.client(service.other_app_key, user="alice") as c:
        r = await c.get("/api/v1/connections", params={"limit": 1})
        assert r.json() == []  # another app sees none of them
        assert "X-Next-Cursor" not in r.headers


async def test_callback_failures(service: Service) -> None:
    async with service.anon as c:
        r = await c.get("/oauth/callback", params={"state": "forged", "code": "c"})
    assert r.status_code == 400
    assert "callback_rejected" in r.text
    assert "text/html" in r.headers["content-type"]


async def test_connecting_a_server_without_oauth_is_a_conflict(
    service: Service, open_mcp_server: MCPServer
) -> None:
    await add_server(
        service, name="Open", url=open_mcp_server.url, allow_networks=LOOPBACK
    )
    async with service.admin as c:
        error(await c.post("/api/v1/servers/Open/connection"), 409, "configuration")


async def test_per_user_connections_belong_to_one_app(
    service: Service, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    server = await add_server(
        service,
        name="Mine",
        url=mcp_server.url,
        auth_mode="oauth",
        oauth={"per_user": True},
    )
    path = f"/api/v1/servers/{server['id']}/connection"
    async with service.client(service.app_key) as c:
        error(await c.post(path), 403, "auth.forbidden")  # names no user
    async with service.client(service.app_key, user="alice") as c:
        r = await c.post(path, json={"return_to": "https://evil.test/"})
        error(r, 403, "auth.forbidden")
        r = await c.post(path, json={"user": "bob"})
        error(r, 403, "auth.forbidden")  # an app acts only for its header's user
        r = await c.post(path)
        assert r.json()["subject"] == "crm/alice"
        params = await follow_authorization(
            r.json()["authorization_url"], CALLBACK, POLICY
        )
        r = await c.post(path, json={"return_to": "http://app.test/done"})
        assert r.json()["connect_url"].startswith(f"{BASE}/connect?token=")
    # a bare authorization URL for a user completes only where the flow started
    async with service.anon as c:
        r = await c.get("/oauth/callback", params=params)
        assert r.status_code == 400
        assert "another user" in r.text
    async with service.client(service.other_app_key, user="alice") as c:
        info = (await c.get(path)).json()
        assert info["subject"] == "wiki/alice"
        assert info["status"] == "disconnected"
        assert (await c.get("/api/v1/connections")).json() == []
    async with service.admin as c:
        r = await c.get(path, params={"user": "crm/alice"})
        assert r.json()["subject"] == "crm/alice"
        error(await c.get(path, params={"user": ""}), 422, "validation")


async def test_connect_link_completes_in_the_browser_and_returns(
    service: Service, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    server = await add_server(
        service,
        name="Mine",
        url=mcp_server.url,
        auth_mode="oauth",
        oauth={"per_user": True},
    )
    path = f"/api/v1/servers/{server['id']}/connection"
    async with service.client(service.app_key, user="alice") as c:
        link = (await c.post(path, json={"return_to": "http://app.test/back"})).json()
    async with service.anon as browser:
        page = await browser.get(link["connect_url"])
        assert page.status_code == 200
        assert "crm" in page.text
        assert "alice" in page.text
        token = parse_qs(urlsplit(link["connect_url"]).query)["token"][0]
        r = await browser.post("/connect", data={"token": token})
        assert r.status_code == 403  # no CSRF token: only the page's form starts it
        assert "auth.forbidden" in r.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        r = await browser.post("/connect", data={"token": token, "csrf": csrf[1]})
        assert r.status_code == 303
        params = await follow_authorization(r.headers["location"], CALLBACK, POLICY)
        r = await browser.get("/oauth/callback", params=params)
        assert r.status_code == 303
        assert r.headers["location"].startswith(
            "http://app.test/back?tether_status=connected"
        )
        # a tampered link is refused
        bad = await browser.get("/connect", params={"token": "tampered"})
        assert bad.status_code == 400
        assert "not valid" in bad.text
    async with service.client(service.app_key, user="alice") as c:
        assert (await c.get(path)).json()["status"] == "connected"
        r = await c.get(f"/api/v1/servers/{server['id']}/tools")
        assert "whoami" in [t["name"] for t in r.json()]
        r = await c.delete(path)
        assert r.status_code == 200
    async with service.client(service.app_key) as c:
        error(await c.delete(path), 403, "auth.forbidden")


# ---------------------------------------------------------------------- tools


async def test_tools_list_and_call(
    service: Service, open_mcp_server: MCPServer
) -> None:
    await add_server(
        service, name="Open", url=open_mcp_server.url, allow_networks=LOOPBACK
    )
    async with service.client(service.app_key, user="u1") as c:
        tools = (await c.get("/api/v1/servers/Open/tools")).json()
        assert "echo" in [t["name"] for t in tools]
        r = await c.post(
            "/api/v1/servers/Open/tools/echo/call", json={"arguments": {"text": "hi"}}
        )
        assert r.json()["is_error"] is False
        assert "hi" in r.json()["text"]
        r = await c.post("/api/v1/servers/Open/tools/nope/call", json={})
        assert r.json()["is_error"] is True
        r = await c.post("/api/v1/servers/Open/tools/echo/call", json={"arguments": 1})
        error(r, 422, "validation")
        error(await c.get("/api/v1/servers/Nope/tools"), 404, "not_found")


# ---------------------------------------------------------------------- toolsets


async def test_toolsets(service: Service, open_mcp_server: MCPServer) -> None:
    await add_server(
        service, name="Open", url=open_mcp_server.url, allow_networks=LOOPBACK
    )
    spec = {"name": "kit", "servers": [{"server": "Open", "tools": ["echo"]}]}
    async with service.admin as c:
        r = await c.post("/api/v1/toolsets", json=spec)
        assert r.status_code == 201, r.text
        assert r.json()["servers"] == [{"server": "Open", "tools": ["echo"]}]
        error(await c.post("/api/v1/toolsets", json={"name": ""}), 422, "validation")
        r = await c.post(
            "/api/v1/toolsets", json={"name": "x", "servers": [{"server": "Nope"}]}
        )
        error(r, 422, "validation")
        exported = (await c.get("/api/v1/toolsets/kit/export")).json()
        exported["name"] = "kit2"
        r = await c.post("/api/v1/toolsets/import", json=exported)
        assert r.status_code == 201
        bad = {
            **exported,
            "name": "kit3",
            "servers": [{"server": "Open", "tools": ["zzz"]}],
        }
        error(await c.post("/api/v1/toolsets/import", json=bad), 422, "validation")
        r = await c.put("/api/v1/toolsets/kit2", json={"servers": [{"server": "Open"}]})
        assert r.json()["servers"] == [{"server": "Open", "tools": None}]
        assert [t["name"] for t in (await c.get("/api/v1/toolsets")).json()] == [
            "kit",
            "kit2",
        ]
        assert (await c.delete("/api/v1/toolsets/kit2")).status_code == 204
        error(await c.get("/api/v1/toolsets/kit2"), 404, "not_found")
        error(
            await c.put("/api/v1/toolsets/kit2", json={"servers": []}), 404, "not_found"
        )
    async with service.client(service.app_key, user="u1") as c:
        assert (await c.get("/api/v1/toolsets/kit")).json()["name"] == "kit"
        for provider, key in (
            ("openai_chat", "function"),
            ("openai_responses", "name"),
            ("anthropic", "input_schema"),
        ):
            r = await c.get("/api/v1/toolsets/kit/tools", params={"provider": provider})
            assert len(r.json()["tools"]) == 1
            assert key in r.json()["tools"][0]
        r = await c.get("/api/v1/toolsets/kit/tools", params={"provider": "x"})
        error(r, 422, "validation")
        r = await c.post(
            "/api/v1/toolsets/kit/call",
            json={"tool": "echo", "arguments": {"text": "t"}},
        )
        assert r.json()["is_error"] is False
        error(await c.post("/api/v1/toolsets/kit/call", json={}), 422, "validation")
        error(await c.post("/api/v1/toolsets/kit/import", json={}), 404, "not_found")


# ---------------------------------------------------------------------- audit, ops


async def test_audit(service: Service, open_mcp_server: MCPServer) -> None:
    await add_server(
        service, name="Open", url=open_mcp_server.url, allow_networks=LOOPBACK
    )
    async with service.admin as c:
        events = (await c.get("/api/v1/audit", params={"server": "Open"})).json()
        assert events[0]["action"] == "server.create"
        assert events[0]["actor"] == "admin:ops"
        error(await c.get("/api/v1/audit", params={"limit": 0}), 422, "validation")
        error(await c.get("/api/v1/audit", params={"server": "x"}), 404, "not_found")


async def test_ops_and_metrics(service: Service, open_mcp_server: MCPServer) -> None:
    await add_server(
        service, name="Open", url=open_mcp_server.url, allow_networks=LOOPBACK
    )
    async with service.admin as c:
        await c.post(
            "/api/v1/servers/Open/tools/echo/call", json={"arguments": {"text": "a"}}
        )
        await c.post("/api/v1/servers/Open/tools/fail/call", json={})
    async with service.anon as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        assert (await c.get("/readyz")).json() == {"status": "ready"}
        r = await c.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'tether_tool_calls_total{outcome="ok"} 1' in r.text
    assert 'tether_tool_calls_total{outcome="error"} 1' in r.text
    assert 'tether_tool_call_seconds_count{outcome="ok"} 1' in r.text


class _DownStore:
    async def list(self) -> list[Any]:
        raise StorageError("database is unreachable")


async def test_readyz_fails_when_the_store_fails(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service.tether.stores, "servers", _DownStore())
    async with service.anon as c:
        error(await c.get("/readyz"), 500, "storage")
        assert (await c.get("/healthz")).status_code == 200


async def test_openapi_schema(service: Service) -> None:
    async with service.anon as c:
        schema = (await c.get("/api/v1/openapi.json")).json()
    paths = set(schema["paths"])
    assert "/api/v1/servers/{ref}/connection" in paths
    assert "/api/v1/toolsets/{ref}/tools" in paths
    assert not any(p.startswith("/admin") for p in paths)


@pytest.mark.parametrize("path", ["/oauth/client-metadata.json"])
async def test_no_metadata_document_on_plain_http(service: Service, path: str) -> None:
    async with service.anon as c:
        error(await c.get(path), 404, "not_found")


async def test_a_bug_is_a_json_500(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> list[Any]:
        raise RuntimeError("bug with token=abc")

    monkeypatch.setattr(service.tether.servers, "list", broken)
    transport = httpx2.ASGITransport(app=service.app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(
        transport=transport,
        base_url=BASE,
        headers={"Authorization": f"Bearer {service.admin_key}"},
    ) as c:
        r = await c.get("/api/v1/servers")
    body = error(r, 500, "tether.error")
    assert "abc" not in r.text
    assert body["message"] == "internal error; see the service log"
