"""The admin pages in a real browser (Debian's Chromium driven by Playwright).

The service runs under uvicorn on loopback with SQLite; the MCP server is protected by
the real oidc-provider in login-form mode, so the browser fills its login and consent
pages. Screenshots of each step go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
import uvicorn

from peers.plugin import PeerFactory
from tether.config import Settings
from tether.hub.tether import Tether
from tether.web.app import create_app
from tether.web.security import issue_key

from .conftest import LOOPBACK

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is absent (apt-get install chromium; .ci/run does)",
)


def _free_port() -> int:
    from peers.fixture import free_port

    return free_port()


class _Server(uvicorn.Server):
    """uvicorn with an event set once it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class Live:
    """The service on a real port."""

    def __init__(self, base: str, tether: Tether) -> None:
        self.base = base
        self.tether = tether


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    """``create_app`` (own lifespan, SQLite, key file) served by uvicorn on loopback."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        home=tmp_path,
        public_url=base,
        allow_networks=LOOPBACK,
        return_urls=[f"{base}/healthz"],
        client_name="Tether browser test",
    )
    app = create_app(settings)
    server = _Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    done, _ = await asyncio.wait(
        [task, asyncio.create_task(server.ready.wait())],
        return_when=asyncio.FIRST_COMPLETED,
    )
    if task in done:
        task.result()  # startup failed: raise its error
    try:
        yield Live(base, app.state.tether)
    finally:
        server.should_exit = True
        await task


async def test_admin_connects_browses_calls_and_disconnects(
    tmp_peers: PeerFactory, live: Live
) -> None:
    from playwright.async_api import async_playwright, expect

    peers = tmp_peers.peers(as_env={"AS_INTERACTION": "form"})
    _, admin_key = await issue_key(live.tether, "browser-admin", "admin")
    _, app_key = await issue_key(live.tether, "hostapp", "app")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = 0

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = await browser.new_page()

        async def snap(name: str) -> None:
            nonlocal shot
            shot += 1
            await page.screenshot(
                path=ARTIFACTS / f"{shot:02d}-{name}.png", full_page=True
            )

        # sign in
        await page.goto(f"{live.base}/admin/")
        await expect(page.locator("#api_key")).to_be_visible()
        await page.fill("#api_key", "tk_wrong_key_value_that_is_long")
        await page.click("#sign-in")
        await expect(page.locator("#form-error")).to_contain_text("not valid")
        await page.fill("#api_key", admin_key)
        await page.click("#sign-in")
        await expect(page.locator("#servers")).to_be_visible()
        await snap("signed-in")

        # add the OAuth server; invalid advanced JSON is refused inline first
        await page.click("#new-server")
        await page.fill("#name", "Peer MCP")
        await page.fill("#description", "oidc-provider protected")
        await page.fill("#url", peers.url)
        await page.select_option("#auth_mode", "oauth")
        await page.click("#oauth-advanced summary")
        await page.fill("#oauth-authorization_params", "[1, 2]")
        await page.click("#save")
        await expect(page.locator("#error-oauth-authorization_params")).to_contain_text(
            "JSON object"
        )
        await snap("inline-validation")
        await page.fill("#oauth-authorization_params", "")
        await page.click("#save")
        await expect(page.locator("#connection-status")).to_have_text("Disconnected")
        await expect(page.locator("#test")).to_be_disabled()
        await snap("server-saved")

        # connect: the provider's login and consent pages
        await page.click("#connect")
        await page.fill("#username", "test-user")
        await page.fill("#password", "test-password")
        await snap("provider-login")
        await page.click("#submit")
        await expect(page.locator("#allow")).to_be_visible()
        await snap("provider-consent")
        await page.click("#allow")
        await expect(page.locator("#connection-status")).to_have_text("Connected")
        await page.click("#connection-details summary")
        await expect(page.locator("#issuer")).to_have_text(peers.issuer)
        await snap("connected")

        # test connection, browse tools, call one
        await page.click("#test")
        await expect(page.locator("#test-result")).to_contain_text("echo")
        await page.click("#tools-link")
        await expect(page.locator("#tool-echo")).to_contain_text("text")
        await expect(page.locator("#tool-echo .req")).to_have_count(1)
        await snap("tools")
        await page.fill("#arg-echo-text", "hello from chromium")
        await page.click("#call-echo")
        await expect(page.locator("#call-result")).to_contain_text(
            "hello from chromium"
        )
        await snap("tool-called")

        # a toolset with one picked tool
        await page.goto(f"{live.base}/admin/toolsets")
        await page.fill("#toolset-name", "assistant")
        await page.click("#create-toolset")
        await page.check("#server-Peer\\ MCP")
        await page.check("#pick-Peer\\ MCP-echo")
        await page.click("#save-toolset")
        await expect(page.locator("#notice")).to_have_text("Saved.")
        await expect(page.locator("#pick-Peer\\ MCP-echo")).to_be_checked()
        await snap("toolset")

        # disconnect
        await page.goto(f"{live.base}/admin/")
        await page.click("text=Peer MCP")
        await page.click("#disconnect")
        await expect(page.locator("#connection-status")).to_have_text("Disconnected")
        await snap("disconnected")

        # the background jobs, from the navigation bar
        await page.click("#nav-jobs")
        for job in ("refresh", "tools", "health"):
            await expect(page.locator(f"#job-{job}")).to_be_visible()
        await snap("jobs")

        # end-user flow on a per-user server: a signed link, consent, the return URL
        async with httpx2.AsyncClient(base_url=live.base) as api:
            created = await api.post(
                "/api/v1/servers",
                headers={"Authorization": f"Bearer {admin_key}"},
                json={
                    "name": "Per user",
                    "url": peers.url,
                    "auth_mode": "oauth",
                    "oauth": {"per_user": True},
                },
            )
            assert created.status_code == 201, created.text
            started = await api.post(
                f"/api/v1/servers/{created.json()['id']}/connection",
                headers={
                    "Authorization": f"Bearer {app_key}",
                    "X-Tether-User": "alice",
                },
                json={"return_to": f"{live.base}/healthz?from=hostapp"},
            )
            assert started.status_code == 201, started.text
        user_context = await browser.new_context()
        page = await user_context.new_page()
        await page.goto(started.json()["connect_url"])
        await expect(page.locator("#connect-who")).to_contain_text("alice")
        await snap("connect-your-account")
        await page.click("#continue")
        await page.fill("#username", "test-user")
        await page.fill("#password", "test-password")
        await page.click("#submit")
        await page.click("#allow")
        await page.wait_for_url(f"{live.base}/healthz?**")
        assert "tether_status=connected" in page.url
        assert "from=hostapp" in page.url
        await snap("end-user-returned")
        await browser.close()

    info = await live.tether.connection("Per user", user="hostapp/alice")
    assert info.status == "connected"
