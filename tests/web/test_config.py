"""Settings read once: the public URL rule, the session secret, return URLs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx2
import pytest
from pydantic import SecretStr

from tether.config import Settings
from tether.errors import ConfigurationError
from tether.hub.tether import Tether
from tether.store.crypto import KeyRing
from tether.web.app import create_app
from tether.web.config import WebConfig, public_base, return_url_allowed


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://tether.example.com/", "https://tether.example.com"),
        ("https://example.com/tether", "https://example.com/tether"),
        ("http://127.0.0.1:8470", "http://127.0.0.1:8470"),
        ("http://localhost:9", "http://localhost:9"),
        ("http://[::1]:9/", "http://[::1]:9"),
    ],
)
def test_public_urls(url: str, base: str) -> None:
    assert public_base(url) == base


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://tether.example.com", "must use https"),
        ("http://10.0.0.5:8470", "must use https"),
        ("ftp://x", "absolute http(s)"),
        ("tether.example.com", "absolute http(s)"),
        ("https://x.example/?a=1", "query or fragment"),
    ],
)
def test_bad_public_urls_are_refused_clearly(url: str, words: str) -> None:
    with pytest.raises(
        ConfigurationError, match=words.replace("(", r"\(").replace(")", r"\)")
    ):
        public_base(url)


def test_create_app_refuses_plain_http_off_loopback(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        create_app(Settings(home=tmp_path, public_url="http://tether.example.com"))


def test_derived_urls_and_the_session_secret_file(tmp_path: Path) -> None:
    web = WebConfig.from_settings(
        Settings(home=tmp_path, public_url="https://t.example/base/")
    )
    assert web.callback_url == "https://t.example/base/oauth/callback"
    assert web.metadata_url == "https://t.example/base/oauth/client-metadata.json"
    assert web.secure_cookies
    secret_file = tmp_path / "session-secret"
    assert os.stat(secret_file).st_mode & 0o777 == 0o600
    again = WebConfig.from_settings(Settings(home=tmp_path))
    assert again.session_secret == web.session_secret  # every worker agrees
    assert again.metadata_url is None  # plain http on loopback: no CIMD
    assert not again.secure_cookies
    given = WebConfig.from_settings(
        Settings(home=tmp_path, session_secret=SecretStr("from-env"))
    )
    assert given.session_secret == "from-env"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("/settings", True),
        ("//evil.test/x", False),
        ("/\\evil.test", False),
        ("https://app.example/back", True),
        ("https://app.example.evil.test/", False),
        ("https://evil.test/", False),
    ],
)
def test_return_urls(url: str, allowed: bool) -> None:
    assert return_url_allowed(url, ("https://app.example/",)) is allowed


async def test_metadata_document_on_https(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, public_url="https://tether.example.com")
    web = WebConfig.from_settings(settings)
    async with await Tether.open(
        database_url="memory://",
        key_ring=KeyRing.generate(),
        redirect_uri=web.callback_url,
        client_metadata_url=web.metadata_url,
    ) as tether:
        app = create_app(settings, tether=tether)
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(
                transport=transport, base_url="https://tether.example.com"
            ) as c:
                r = await c.get("/oauth/client-metadata.json")
                login = await c.get("/admin/login")
    doc = r.json()
    assert doc["client_id"] == "https://tether.example.com/oauth/client-metadata.json"
    assert doc["redirect_uris"] == ["https://tether.example.com/oauth/callback"]
    assert doc["token_endpoint_auth_method"] == "none"
    assert r.headers["content-type"] == "application/json"
    assert "max-age" in r.headers["cache-control"]
    assert "secure" in login.headers["set-cookie"].lower()


async def test_lifespan_opens_and_closes_its_own_tether(tmp_path: Path) -> None:
    ran: list[str] = []
    started = asyncio.Event()

    async def job(tether: Tether) -> None:
        await tether.stores.servers.list()
        ran.append("started")
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            ran.append("cancelled")

    app = create_app(Settings(home=tmp_path), background=[job])
    async with app.router.lifespan_context(app):
        tether = app.state.tether
        assert isinstance(tether, Tether)
        assert (tmp_path / "tether.db").exists()
        assert (tmp_path / "keys").exists()
        await started.wait()
    assert ran == ["started", "cancelled"]
