"""Schemathesis against the OpenAPI schema of a live service: no request makes it fail.

Every operation gets generated requests (valid and invalid) with an admin key; no
response may be a 500 (an unhandled error). Upstream failures keep their documented
mappings (502/504), but the service resolves every host to a documentation address
here, so nothing leaves the machine: server URLs are refused by the SSRF guard.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from peers.fixture import free_port
from tether.config import Settings
from tether.hub.tether import Tether
from tether.store.crypto import KeyRing
from tether.web.app import create_app
from tether.web.security import issue_key

#: Operations that reach remote servers with a valid body (a form test connects).
SKIP = {("POST", "/api/v1/servers/test")}


async def _documentation_address(host: str, port: int) -> list[str]:
    return ["192.0.2.1"]  # RFC 5737 TEST-NET-1: never public, never reached


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets)  # type: ignore[arg-type]
        self.ready.set()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The service in its own thread and event loop; yields (base URL, admin key)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def main() -> None:
        tether = await Tether.open(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}",
            key_ring=KeyRing.generate(),
            redirect_uri=f"{base}/oauth/callback",
            resolver=_documentation_address,
        )
        async with tether:
            _, holder["key"] = await issue_key(tether, "fuzz", "admin")
            app = create_app(Settings(home=tmp_path, public_url=base), tether=tether)
            server = _Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"),
                ready,
            )
            holder["server"] = server
            await server.serve()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(60), "the service did not start"
    try:
        yield base, str(holder["key"])
    finally:
        server = holder["server"]
        assert isinstance(server, _Server)
        server.should_exit = True
        thread.join(60)


def test_no_operation_answers_500(live: tuple[str, str]) -> None:
    base, key = live
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {key}"}
    checked = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIP:
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case[Any]) -> None:
            response = case.call(base_url=base, headers=headers, timeout=30)
            assert response.status_code < 500 or response.status_code in (502, 504), (
                f"{case.method} {case.formatted_path}: {response.status_code} "
                f"{response.text[:300]}"
            )
            if response.status_code >= 400:
                assert "code" in response.json()["error"]

        check()
        checked += 1
    assert checked >= 20
