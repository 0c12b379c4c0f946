"""Benchmark row 1: ``tether.call(toolset, ...)`` vs ``call_tool`` vs the bare SDK.

Not a test. Run from the repository root::

    .venv/bin/python bench/toolset_call.py [--calls 200] [--rounds 7] [--warmup 30]

Starts oidc-provider (rotating refresh tokens) and the SDK MCP server protected by it
(``tests/peers``), answering JSON (``MCP_JSON_RESPONSE=1``), with every protocol
revision the SDK knows, so both clients negotiate the same mode (printed). Tether
connects over OAuth (dynamic registration, PKCE, headless approval); the bare SDK
(``mcp.client.Client`` over ``streamable_http_client``) gets the same access token as
a static ``Authorization`` header. All three keep their connection and session.

Per round, interleaved: ``tether.call("agent", "echo", ...)`` (the README's path),
``tether.call_tool("bench", "echo", ...)`` and ``sdk.call_tool("echo", ...)``.
Printed: median and p99 per call, client CPU per call, the ratio to the SDK's median
(min / median / max over the rounds; target for the toolset call <= 1.05x a direct
call_tool), the negotiated mode and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from typing import Any

import common  # noqa: F401  (puts src/ and tests/ on sys.path)
import httpx2
from common import (
    LOOPBACK,
    REDIRECT_URI,
    header,
    interleaved,
    print_table,
    summarize,
    write,
)
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from peers.fixture import AuthServer, MCPServer
from tether.hub.tether import Tether
from tether.net.browser import follow_authorization
from tether.store.crypto import KeyRing


async def connected_tether(tmp: str, mcp: MCPServer) -> Tether:
    tether = await Tether.open(
        database_url=f"sqlite+aiosqlite:///{tmp}/bench.db",
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
        },
        actor="bench",
    )
    started = await tether.connect("bench", user="bench")
    params = await follow_authorization(
        started.authorization_url, REDIRECT_URI, tether.fetcher.policy
    )
    await tether.complete(params, user="bench")
    await tether.toolsets.create("agent", [{"server": "bench"}], actor="bench")
    return tether


async def run(calls: int, rounds: int, warmup: int) -> dict[str, Any]:
    report = header()
    with (
        AuthServer(AS_LOG=0) as auth,
        MCPServer(auth, MCP_JSON_RESPONSE=1) as mcp,
        tempfile.TemporaryDirectory() as tmp,
    ):
        tether = await connected_tether(tmp, mcp)
        server = await tether.servers.get("bench")
        conn = await tether.stores.connections.get(server.id, "shared")
        assert conn is not None
        assert conn.access_token is not None
        sdk_http = httpx2.AsyncClient(
            timeout=30.0,
            trust_env=False,
            headers={"Authorization": f"Bearer {conn.access_token.get_secret_value()}"},
        )
        async with Client(
            streamable_http_client(mcp.url, http_client=sdk_http), cache=None
        ) as sdk:

            async def toolset_call() -> None:
                result = await tether.call("agent", "echo", {"text": "x"})
                if result.is_error:
                    raise RuntimeError(result.text)

            async def call_tool() -> None:
                result = await tether.call_tool("bench", "echo", {"text": "x"})
                if result.is_error:
                    raise RuntimeError(result.text)

            async def bare_sdk() -> None:
                result = await sdk.call_tool("echo", {"text": "x"})
                if result.is_error:
                    raise RuntimeError(str(result.content))

            await toolset_call()
            session = await tether.tools.session(server, "shared")
            mode = {
                "tether": session.protocol_version,
                "sdk": sdk.protocol_version,
                "answers": "application/json (MCP_JSON_RESPONSE=1)",
            }
            series = interleaved(
                {
                    "tether.call(toolset)": toolset_call,
                    "tether.call_tool": call_tool,
                    "bare sdk": bare_sdk,
                },
                calls=calls,
                rounds=rounds,
                warmup=warmup,
            )
            results = await series
        await sdk_http.aclose()
        await tether.aclose()
    report.update(
        calls_per_round=calls,
        rounds=rounds,
        mode=mode,
        clients=summarize(results, "bare sdk"),
        toolset_vs_call_tool=summarize(
            {
                "tether.call(toolset)": results["tether.call(toolset)"],
                "tether.call_tool": results["tether.call_tool"],
            },
            "tether.call_tool",
        )["tether.call(toolset)"]["ratio_vs_tether.call_tool"],
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    report = asyncio.run(run(args.calls, args.rounds, args.warmup))
    mode = report["mode"]
    print_table(
        f"tools/call echo over OAuth, {args.calls} calls x {args.rounds} rounds; "
        f"mode: tether {mode['tether']}, sdk {mode['sdk']}, {mode['answers']}",
        report["clients"],
        "bare sdk",
    )
    r = report["toolset_vs_call_tool"]
    print(
        f"toolset call / call_tool: {r['min']:.3f} / {r['median']:.3f} / "
        f"{r['max']:.3f} (min / median / max over rounds; target <= 1.05)"
    )
    write("toolset_call", report)


if __name__ == "__main__":
    main()
