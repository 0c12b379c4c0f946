"""Admin pages without a browser: sign-in, CSRF, form errors, OAuth failure pages."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from peers.fixture import AuthServer, MCPServer

from .conftest import BASE, LOOPBACK, Service


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


@pytest.fixture
async def browser(service: Service) -> AsyncIterator[httpx2.AsyncClient]:
    """A signed-in admin's cookie jar."""
    async with service.anon as c:
        page = await c.get("/admin/login")
        r = await c.post(
            "/admin/login",
            data={"api_key": service.admin_key, "csrf": csrf_of(page.text)},
        )
        assert r.status_code == 303
        yield c


async def test_pages_need_a_session(service: Service) -> None:
    async with service.anon as c:
        r = await c.get("/admin/")
        assert r.status_code == 303
        assert r.headers["location"] == "/admin/login"
        # an API key header does not open the pages
        r = await c.get(
            "/admin/", headers={"Authorization": f"Bearer {service.admin_key}"}
        )
        assert r.status_code == 303


async def test_sign_in_refuses_app_keys_and_bad_keys(service: Service) -> None:
    async with service.anon as c:
        token = csrf_of((await c.get("/admin/login")).text)
        r = await c.post(
            "/admin/login", data={"api_key": service.app_key, "csrf": token}
        )
        assert r.status_code == 422
        assert "not an admin key" in r.text
        r = await c.post(
            "/admin/login", data={"api_key": "tk_x_yyyyyyyyyy", "csrf": token}
        )
        assert r.status_code == 401
        assert "not valid" in r.text
        r = await c.post("/admin/login", data={"api_key": service.admin_key})
        assert r.status_code == 403
        assert "security token" in r.text


async def test_every_form_needs_the_csrf_token(
    service: Service, browser: httpx2.AsyncClient
) -> None:
    for path in (
        "/admin/servers/new",
        "/admin/toolsets",
        "/admin/credentials",
        "/admin/logout",
        "/admin/servers/x/delete",
    ):
        r = await browser.post(path, data={"csrf": "forged"})
        assert r.status_code == 403, path
        assert "auth.forbidden" in r.text


async def test_editor_shows_field_errors_inline(
    service: Service, browser: httpx2.AsyncClient
) -> None:
    token = csrf_of((await browser.get("/admin/servers/new")).text)
    r = await browser.post(
        "/admin/servers/new",
        data={
            "csrf": token,
            "name": "",
            "url": "https://x.test/mcp",
            "auth_mode": "oauth",
            "oauth.token_params": '{"a": [1]}',
            "oauth.authorization_params": "{nope",
        },
    )
    assert r.status_code == 422
    assert 'id="error-oauth-authorization_params"' in r.text
    assert "not valid JSON" in r.text
    assert '<details id="oauth-advanced" open' in r.text
    r = await browser.post(
        "/admin/servers/new",
        data={
            "csrf": token,
            "name": "",
            "url": "https://x.test/mcp",
            "timeout_seconds": "0",
        },
    )
    assert r.status_code == 422
    assert 'id="error-name"' in r.text
    assert 'id="error-timeout_seconds"' in r.text


async def test_server_lifecycle_in_pages(
    service: Service, browser: httpx2.AsyncClient, open_mcp_server: MCPServer
) -> None:
    token = csrf_of((await browser.get("/admin/credentials")).text)
    r = await browser.post(
        "/admin/credentials", data={"csrf": token, "name": "k", "value": "v-secret"}
    )
    assert r.status_code == 303
    assert "v-secret" not in (await browser.get("/admin/credentials")).text
    r = await browser.post(
        "/admin/servers/new",
        data={
            "csrf": token,
            "name": "Open",
            "url": open_mcp_server.url,
            "enabled": "on",
            "timeout_seconds": "20",
            "auth_mode": "none",
            "allow_networks": ", ".join(LOOPBACK),
        },
    )
    assert r.status_code == 303
    edit = r.headers["location"]
    r = await browser.post(edit + "/test", data={"csrf": token})
    page = await browser.get(edit)
    assert 'id="test-result"' in page.text
    assert "echo" in page.text
    r = await browser.post(
        edit,
        data={
            "csrf": token,
            "name": "Open",
            "url": open_mcp_server.url,
            "enabled": "on",
            "timeout_seconds": "45",
            "auth_mode": "none",
            "allow_networks": ", ".join(LOOPBACK),
        },
    )
    assert r.status_code == 303
    assert (await service.tether.servers.get("Open")).timeout_seconds == 45
    listing = await browser.get("/admin/")
    assert "Open" in listing.text
    tools = await browser.get(edit + "/tools")
    assert 'id="tool-add"' in tools.text
    r = await browser.post(
        edit + "/tools/add/call", data={"csrf": token, "arg.a": "2", "arg.b": "3"}
    )
    assert "5" in (await browser.get(edit + "/tools")).text
    audit = await browser.get("/admin/audit")
    assert "server.update" in audit.text
    r = await browser.post(edit + "/delete", data={"csrf": token})
    assert r.status_code == 303
    assert (await browser.get(edit)).status_code == 404


async def test_oauth_failures_have_a_page(
    service: Service,
    browser: httpx2.AsyncClient,
    auth_server: AuthServer,
    mcp_server: MCPServer,
) -> None:
    await service.tether.servers.create(
        {"name": "Prot", "url": mcp_server.url, "auth_mode": "oauth"}, actor="t"
    )
    server = await service.tether.servers.get("Prot")
    token = csrf_of((await browser.get(f"/admin/servers/{server.id}")).text)
    r = await browser.post(f"/admin/servers/{server.id}/connect", data={"csrf": token})
    assert r.status_code == 303
    query = parse_qs(urlsplit(r.headers["location"]).query)
    state = query["state"][0]
    # the user pressed "deny" at the provider
    r = await browser.get(
        "/oauth/callback",
        params={"state": state, "error": "access_denied", "iss": auth_server.issuer},
    )
    assert r.status_code in (400, 502)
    assert "The connection failed" in r.text
    assert "oauth.access_denied" in r.text
    # replayed: the state is used up
    r = await browser.get("/oauth/callback", params={"state": state, "code": "x"})
    assert r.status_code == 400
    assert "callback_rejected" in r.text
    page = await browser.get(f"/admin/servers/{server.id}")
    assert 'id="last-error"' in page.text


async def test_toolset_picker(
    service: Service, browser: httpx2.AsyncClient, open_mcp_server: MCPServer
) -> None:
    await service.tether.servers.create(
        {"name": "Open", "url": open_mcp_server.url, "allow_networks": LOOPBACK},
        actor="t",
    )
    await service.tether.list_tools("Open")
    token = csrf_of((await browser.get("/admin/toolsets")).text)
    r = await browser.post("/admin/toolsets", data={"csrf": token, "name": ""})
    assert r.status_code == 422
    r = await browser.post("/admin/toolsets", data={"csrf": token, "name": "kit"})
    edit = r.headers["location"]
    server = await service.tether.servers.get("Open")
    r = await browser.post(
        edit,
        data={
            "csrf": token,
            "server": server.id,
            f"tools.{server.id}": ["echo", "add"],
        },
    )
    assert r.status_code == 303
    exported = await service.tether.toolsets.export("kit")
    assert exported["servers"] == [{"server": "Open", "tools": ["echo", "add"]}]
    r = await browser.post(edit + "/delete", data={"csrf": token})
    assert r.status_code == 303


async def test_security_headers(service: Service) -> None:
    async with service.anon as c:
        r = await c.get("/admin/login")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    cookie = r.headers["set-cookie"]
    assert "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower()
    assert BASE.startswith("http://")  # loopback: no Secure flag expected here
