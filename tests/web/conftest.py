"""Fixtures for web tests: the service app over an in-memory Tether, no sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI

from tether.config import Settings
from tether.hub.tether import Tether
from tether.store.crypto import KeyRing
from tether.web.app import create_app
from tether.web.security import issue_key

BASE = "http://127.0.0.1:8470"
LOOPBACK = ["127.0.0.0/8", "::1/128"]


@dataclass
class Service:
    """The app, its Tether, and clients with each kind of key."""

    app: FastAPI
    tether: Tether
    admin_key: str
    app_key: str
    other_app_key: str
    anon: httpx2.AsyncClient

    def client(self, key: str | None, user: str | None = None) -> httpx2.AsyncClient:
        headers = {}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if user:
            headers["X-Tether-User"] = user
        return httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=self.app),
            base_url=BASE,
            headers=headers,
        )

    @property
    def admin(self) -> httpx2.AsyncClient:
        return self.client(self.admin_key)


def settings_for(tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        home=tmp_path,
        public_url=BASE,
        allow_networks=LOOPBACK,
        return_urls=["http://app.test/"],
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def tether() -> AsyncIterator[Tether]:
    """A Tether on memory stores that may reach loopback peers."""
    async with await Tether.open(
        database_url="memory://",
        key_ring=KeyRing.generate(),
        redirect_uri=f"{BASE}/oauth/callback",
        allow_networks=LOOPBACK,
    ) as opened:
        yield opened


@pytest.fixture
async def service(tmp_path: Path, tether: Tether) -> AsyncIterator[Service]:
    """The app with its lifespan running."""
    app = create_app(settings_for(tmp_path), tether=tether)
    _, admin_key = await issue_key(tether, "ops", "admin")
    _, app_key = await issue_key(tether, "crm", "app")
    _, other_key = await issue_key(tether, "wiki", "app")
    async with app.router.lifespan_context(app):
        svc = Service(app, tether, admin_key, app_key, other_key, httpx2.AsyncClient())
        svc.anon = svc.client(None)
        yield svc
