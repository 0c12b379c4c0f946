"""First look: the app answers."""

from __future__ import annotations

from .conftest import Service


async def test_healthz(service: Service) -> None:
    async with service.anon as c:
        r = await c.get("/healthz")
        assert r.json() == {"status": "ok"}
        r = await c.get("/api/v1/servers")
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "auth.unauthenticated"
    async with service.admin as c:
        r = await c.post("/api/v1/servers", json={"name": "x", "url": "ftp:"})
        print(r.json())
        assert r.status_code == 422
