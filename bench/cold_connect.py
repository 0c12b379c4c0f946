"""Benchmark rows 3-4: a cold OAuth connect and a second user, Tether vs the bare SDK.

Not a test. Run from the repository root::

    .venv/bin/python bench/cold_connect.py [--rounds 7]

Starts oidc-provider (auto-approving, open dynamic registration, rotating refresh
tokens) and the SDK MCP server it protects (JSON answers, every revision the SDK
knows). Per round, interleaved, each client starts from nothing (a fresh in-memory
Tether, a fresh SDK ``OAuthClientProvider`` with in-memory storage) and times, from the
first request to the first tool result:

* ``tether``: ``connect`` → the authorization (followed headlessly) → ``complete`` →
  ``call_tool("echo")``;
* ``sdk``: ``mcp.client.Client`` over ``streamable_http_client`` with an
  ``httpx2.AsyncClient(auth=OAuthClientProvider(...))`` → ``call_tool("echo")``; the SDK
  discovers, registers and authorizes on the first 401 (its redirect handler follows the
  same headless authorization);
* ``tether, 2nd user``: on the same Tether, another user of the per-user server
  connects and calls: discovery and registration are reused.

Printed: wall time and client CPU (median and p99 over rounds), the ratio to the SDK
(min / median / max over rounds), the requests each sent to the MCP server and to the
AS (the headless "browser" hops to the AS are counted for both), the negotiated mode and
the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import common  # noqa: F401  (puts src/ and tests/ on sys.path)
import httpcore2
import httpx2
from common import LOOPBACK, REDIRECT_URI, header, percentile, write
from mcp.client.auth import OAuthClientProvider
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from peers.fixture import AuthServer, MCPServer
from tether.hub.tether import Tether
from tether.net.browser import follow_authorization
from tether.net.policy import NetworkPolicy
from tether.store.crypto import KeyRing

POLICY = NetworkPolicy.from_allowlist(LOOPBACK)
SENT: Counter[str] = Counter()  # port -> requests, every client in the process


def count_requests() -> None:
    """Count at the connection pool, under every client and the SDK's auth flow."""
    original = httpcore2.AsyncConnectionPool.handle_async_request

    async def handle(self: Any, request: Any) -> Any:
        SENT[str(request.url.port)] += 1
        return await original(self, request)

    httpcore2.AsyncConnectionPool.handle_async_request = handle  # type: ignore[method-assign]


class Memory:
    """The SDK's TokenStorage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def tether_connect(tether: Tether, user: str) -> None:
    started = await tether.connect("bench", user=user)
    params = await follow_authorization(
        started.authorization_url, REDIRECT_URI, tether.fetcher.policy
    )
    await tether.complete(params, user=user)
    result = await tether.call_tool("bench", "echo", {"text": "x"}, user=user)
    if result.is_error:
        raise RuntimeError(result.text)


async def new_tether(mcp: MCPServer) -> Tether:
    tether = await Tether.open(
        database_url="memory://",
        key_ring=KeyRing.generate(),
        redirect_uri=REDIRECT_URI,
        allow_networks=LOOPBACK,
    )
    await tether.servers.create(
        {
            "name": "bench",
            "url": mcp.url,
            "auth_mode": "oauth",
            "allow_networks": LOOPBACK,
            "oauth": {"per_user": True},
        },
        actor="bench",
    )
    return tether


async def sdk_connect(mcp: MCPServer) -> str:
    """A cold SDK connect and one call; the negotiated revision."""
    params: dict[str, str] = {}

    async def redirect(url: str) -> None:
        params.update(await follow_authorization(url, REDIRECT_URI, POLICY))

    async def callback() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(
            code=params["code"], state=params.get("state"), iss=params.get("iss")
        )

    provider = OAuthClientProvider(
        server_url=mcp.url,
        client_metadata=OAuthClientMetadata(
            redirect_uris=[REDIRECT_URI],  # type: ignore[list-item]
            client_name="bench-sdk",
            grant_types=["authorization_code", "refresh_token"],
        ),
        storage=Memory(),
        redirect_handler=redirect,
        callback_handler=callback,
    )
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30.0, trust_env=False) as http,
        Client(streamable_http_client(mcp.url, http_client=http), cache=None) as sdk,
    ):
        result = await sdk.call_tool("echo", {"text": "x"})
        if result.is_error:
            raise RuntimeError(str(result.content))
        return str(sdk.protocol_version)


async def timed(run: Any, ports: dict[str, str]) -> dict[str, float]:
    SENT.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    await run()
    return {
        "wall_ms": (time.perf_counter() - wall) * 1000,
        "cpu_ms": (time.process_time() - cpu) * 1000,
        "mcp_requests": SENT[ports["mcp"]],
        "as_requests": SENT[ports["as"]],
    }


async def run(rounds: int) -> dict[str, Any]:
    report = header()
    rows: dict[str, list[dict[str, float]]] = {
        "tether": [],
        "sdk": [],
        "tether, 2nd user": [],
    }
    mode: dict[str, str] = {}
    with (
        AuthServer(AS_LOG=0) as auth,
        MCPServer(auth, MCP_JSON_RESPONSE=1) as mcp,
    ):
        ports = {
            "mcp": str(urlsplit(mcp.url).port),
            "as": str(urlsplit(auth.issuer).port),
        }
        await sdk_connect(mcp)  # warm-up: imports, first TCP connections
        warm = await new_tether(mcp)
        await tether_connect(warm, "warm")
        await warm.aclose()
        for r in range(rounds):
            tether = await new_tether(mcp)

            async def sdk() -> None:
                mode["sdk"] = await sdk_connect(mcp)

            async def first(tether: Tether = tether) -> None:
                await tether_connect(tether, "ann")

            async def second(tether: Tether = tether) -> None:
                await tether_connect(tether, "bob")

            order = [("tether", first), ("sdk", sdk)]
            for name, call in order if r % 2 == 0 else order[::-1]:
                rows[name].append(await timed(call, ports))
            rows["tether, 2nd user"].append(await timed(second, ports))
            server = await tether.servers.get("bench")
            session = await tether.tools.session(server, "bob")
            mode["tether"] = str(session.protocol_version)
            await tether.aclose()
            print(
                f"  round {r + 1}: "
                + ", ".join(f"{k} {v[-1]['wall_ms']:.0f} ms" for k, v in rows.items())
            )
    sdk_wall = [row["wall_ms"] for row in rows["sdk"]]
    out: dict[str, Any] = {}
    for name, values in rows.items():
        walls = [row["wall_ms"] for row in values]
        ratios = [w / s for w, s in zip(walls, sdk_wall, strict=True)]
        out[name] = {
            "wall_median_ms": round(statistics.median(walls), 1),
            "wall_p99_ms": round(percentile(walls, 99), 1),
            "cpu_median_ms": round(statistics.median(r["cpu_ms"] for r in values), 1),
            "mcp_requests": statistics.median(r["mcp_requests"] for r in values),
            "as_requests": statistics.median(r["as_requests"] for r in values),
            "ratio_vs_sdk": {
                "min": round(min(ratios), 3),
                "median": round(statistics.median(ratios), 3),
                "max": round(max(ratios), 3),
            },
        }
    report.update(rounds=rounds, mode=mode, clients=out, raw=rows)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    count_requests()
    report = asyncio.run(run(args.rounds))
    mode = report["mode"]
    print(
        f"\ncold OAuth connect + first call, {args.rounds} rounds; mode: tether "
        f"{mode.get('tether')}, sdk {mode.get('sdk')}, JSON answers"
    )
    print(
        f"{'client':18} {'wall ms':>8} {'p99':>8} {'cpu ms':>7} {'MCP req':>8} "
        f"{'AS req':>7}   ratio vs sdk (min / median / max)"
    )
    for name, row in report["clients"].items():
        r = row["ratio_vs_sdk"]
        print(
            f"{name:18} {row['wall_median_ms']:>8.1f} {row['wall_p99_ms']:>8.1f} "
            f"{row['cpu_median_ms']:>7.1f} {row['mcp_requests']:>8.0f} "
            f"{row['as_requests']:>7.0f}   "
            f"{r['min']:.3f} / {r['median']:.3f} / {r['max']:.3f}"
        )
    write("cold_connect", report)


if __name__ == "__main__":
    main()
