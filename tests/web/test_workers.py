"""``tether serve`` as separate OS processes on one PostgreSQL database: a connect
started on one process is completed by a callback that lands on the other."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from peers.fixture import AuthServer, MCPServer, free_port
from store.conftest import SKIP_PG, postgres_schema
from tether.net.browser import follow_authorization
from tether.net.policy import NetworkPolicy

from .conftest import LOOPBACK

TETHER = str(Path(sys.executable).parent / "tether")
POLICY = NetworkPolicy.from_allowlist(LOOPBACK)

pytestmark = [pytest.mark.postgres, SKIP_PG]


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [TETHER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@contextmanager
def serving(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """One ``tether serve`` process; yields its base URL once /healthz answers."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [TETHER, "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # a readiness probe with a generous bound
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=5) as r:  # noqa: S310
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_a_callback_on_another_worker_completes_the_flow(
    tmp_path: Path, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    port_a, port_b = free_port(), free_port()
    async with postgres_schema() as db_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        env.update(
            TETHER_HOME=str(tmp_path),
            TETHER_DATABASE_URL=db_url,
            TETHER_PUBLIC_URL=f"http://127.0.0.1:{port_a}",
            TETHER_ALLOW_NETWORKS=json.dumps(LOOPBACK),
            TETHER_RETURN_URLS=json.dumps([f"http://127.0.0.1:{port_a}/healthz"]),
        )
        _cli(env, "migrate")
        admin_key = _cli(env, "apikeys", "create", "ops", "--role", "admin")
        app_key = _cli(env, "apikeys", "create", "crm")
        listed = _cli(env, "apikeys", "list")
        assert "ops  admin" in listed
        assert admin_key not in listed
        with (
            serving(env, port_a, tmp_path / "a.log") as a,
            serving(env, port_b, tmp_path / "b.log") as b,
        ):
            code = await _shared_flow(a, b, admin_key, mcp_server)
            await _browser_flow(a, b, admin_key, app_key, mcp_server)
            await _jobs_elected_once(a, b)
        assert "tk_" not in (tmp_path / "a.log").read_text()
        # structured logs: one JSON object a line, the callback's code masked
        lines = [json.loads(x) for x in (tmp_path / "b.log").read_text().splitlines()]
        callbacks = [x["msg"] for x in lines if "/oauth/callback" in x["msg"]]
        assert callbacks
        assert all("code=********" in m for m in callbacks)
        assert code not in (tmp_path / "b.log").read_text()
        _cli(env, "apikeys", "revoke", "crm")
        assert "revoked" in _cli(env, "apikeys", "list")


async def _jobs_elected_once(a: str, b: str) -> None:
    """Both processes run the jobs; each job's lease elects one, and both name it."""
    async with httpx2.AsyncClient() as c:
        texts = [(await c.get(f"{base}/metrics")).text for base in (a, b)]
    for job in ("refresh", "tools", "health"):
        holders = set()
        for text in texts:
            found = re.search(
                rf'tether_job_lease_holder_info{{holder="([^"]+)",job="{job}"}} 1', text
            )
            assert found, text
            holders.add(found.group(1))
        assert len(holders) == 1  # every worker names the same holder
        held = [f'tether_job_lease_held{{job="{job}"}} 1' in t for t in texts]
        assert sorted(held) == [False, True]  # ... which is one of the two processes
        runner = texts[held.index(True)]
        assert f'tether_job_runs_total{{job="{job}"}} 0' not in runner


async def _shared_flow(a: str, b: str, key: str, mcp: MCPServer) -> str:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(headers=headers) as api:
        created = await api.post(
            f"{a}/api/v1/servers",
            json={"name": "Shared", "url": mcp.url, "auth_mode": "oauth"},
        )
        assert created.status_code == 201, created.text
        started = await api.post(f"{a}/api/v1/servers/Shared/connection")
    async with httpx2.AsyncClient() as browser:  # the admin's browser, two workers
        url = started.json()["connect_url"]
        page = await browser.get(url)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        token = parse_qs(urlsplit(url).query)["token"][0]
        r = await browser.post(f"{a}/connect", data={"token": token, "csrf": csrf[1]})
        assert r.status_code == 303, r.text
        params = await follow_authorization(
            r.headers["location"], f"{a}/oauth/callback", POLICY
        )
        landed = await browser.get(f"{b}/oauth/callback", params=params)  # other worker
        assert landed.status_code == 200, landed.text
    async with httpx2.AsyncClient(headers=headers) as api:
        status = await api.get(f"{a}/api/v1/servers/Shared/connection")
        assert status.json()["status"] == "connected"
    return str(params["code"])


async def _browser_flow(a: str, b: str, admin: str, app: str, mcp: MCPServer) -> None:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {admin}"}) as api:
        spec: dict[str, Any] = {
            "name": "Mine",
            "url": mcp.url,
            "auth_mode": "oauth",
            "oauth": {"per_user": True},
        }
        assert (await api.post(f"{a}/api/v1/servers", json=spec)).status_code == 201
    app_headers = {"Authorization": f"Bearer {app}", "X-Tether-User": "alice"}
    async with httpx2.AsyncClient(headers=app_headers) as api:
        link = await api.post(
            f"{a}/api/v1/servers/Mine/connection",
            json={"return_to": f"{a}/healthz?from=app"},
        )
        assert link.status_code == 201, link.text
    async with httpx2.AsyncClient() as browser:  # one cookie jar, two workers
        page = await browser.get(link.json()["connect_url"])
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        token = parse_qs(urlsplit(link.json()["connect_url"]).query)["token"][0]
        r = await browser.post(f"{b}/connect", data={"token": token, "csrf": csrf[1]})
        assert r.status_code == 303, r.text
        params = await follow_authorization(
            r.headers["location"], f"{a}/oauth/callback", POLICY
        )
        r = await browser.get(f"{b}/oauth/callback", params=params)
        assert r.status_code == 303, r.text
        assert "tether_status=connected" in r.headers["location"]
    async with httpx2.AsyncClient(headers=app_headers) as api:
        status = await api.get(f"{b}/api/v1/servers/Mine/connection")
        assert status.json()["status"] == "connected"
