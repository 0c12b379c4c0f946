"""Benchmark row 5: 50 concurrent callers, TCP connections per 1,000 calls.

Not a test. Run from the repository root::

    .venv/bin/python bench/concurrent_callers.py [--callers 50] [--calls 1000]
        [--rounds 5]

Starts the SDK MCP server (``tests/peers``, no auth, JSON answers, every revision the
SDK knows). Per round, interleaved, ``--callers`` tasks share one client and make
``--calls`` ``echo`` calls in all:

* ``tether``: ``tether.call_tool`` (one pooled MCP session);
* ``sdk``: one ``mcp.client.Client`` over one ``httpx2.AsyncClient``;
* ``raw httpx2``: one ``httpx2.AsyncClient`` posting stateless 2026-07-28
  ``tools/call`` requests (the floor: one connection per caller at most).

Printed: latency median and p99, calls per second, and the TCP connections opened per
``--calls`` calls (counted at ``httpcore2.AnyIOBackend.connect_tcp``, which every client
here uses), with the ratio to the SDK's latency (min / median / max over rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import common  # noqa: F401  (puts src/ and tests/ on sys.path)
import httpcore2
import httpx2
from common import LOOPBACK, REDIRECT_URI, add_open_servers, header, percentile, write
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from peers.fixture import MCPServer
from tether.hub.tether import Tether
from tether.store.crypto import KeyRing

CONNECTS = [0]
VERSION = "2026-07-28"


def count_connects() -> None:
    original = httpcore2.AnyIOBackend.connect_tcp

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        CONNECTS[0] += 1
        return await original(self, *args, **kwargs)

    httpcore2.AnyIOBackend.connect_tcp = counted  # type: ignore[method-assign]


def raw_caller(url: str, http: httpx2.AsyncClient) -> Any:
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": VERSION,
        "Mcp-Method": "tools/call",
        "Mcp-Name": "echo",
    }
    meta = {
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }

    async def call() -> None:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "x"}, "_meta": meta},
        }
        resp = await http.post(url, json=body, headers=headers)
        resp.raise_for_status()
        if "result" not in resp.json():
            raise RuntimeError(resp.text)

    return call


async def one_round(call: Any, callers: int, calls: int) -> dict[str, float]:
    latencies: list[float] = []

    async def caller() -> None:
        for _ in range(calls // callers):
            start = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - start) * 1000)

    connects = CONNECTS[0]
    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    wall = time.perf_counter() - start
    return {
        "median_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 99),
        "calls_per_s": len(latencies) / wall,
        "connects": CONNECTS[0] - connects,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    report = header()
    with MCPServer(None, MCP_JSON_RESPONSE=1) as mcp:
        tether = await Tether.open(
            database_url="memory://",
            key_ring=KeyRing.generate(),
            redirect_uri=REDIRECT_URI,
            allow_networks=LOOPBACK,
        )
        await add_open_servers(tether, [mcp.url])
        raw_http = httpx2.AsyncClient(timeout=30.0, trust_env=False)
        sdk_http = httpx2.AsyncClient(timeout=30.0, trust_env=False)
        async with Client(
            streamable_http_client(mcp.url, http_client=sdk_http), cache=None
        ) as sdk:

            async def via_tether() -> None:
                result = await tether.call_tool("s0000", "echo", {"text": "x"})
                if result.is_error:
                    raise RuntimeError(result.text)

            async def via_sdk() -> None:
                await sdk.call_tool("echo", {"text": "x"})

            clients = {
                "tether": via_tether,
                "sdk": via_sdk,
                "raw httpx2": raw_caller(mcp.url, raw_http),
            }
            for call in clients.values():
                await one_round(call, args.callers, args.callers * 2)  # warm-up
            rows: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
            names = list(clients)
            for r in range(args.rounds):
                for name in names[r % 3 :] + names[: r % 3]:
                    rows[name].append(
                        await one_round(clients[name], args.callers, args.calls)
                    )
            server = await tether.servers.get("s0000")
            session = await tether.tools.session(server, "shared")
            mode = {"tether": session.protocol_version, "sdk": sdk.protocol_version}
        await raw_http.aclose()
        await sdk_http.aclose()
        await tether.aclose()
    out: dict[str, Any] = {}
    for name, values in rows.items():
        ratios = [
            v["median_ms"] / s["median_ms"]
            for v, s in zip(values, rows["sdk"], strict=True)
        ]
        out[name] = {
            key: round(statistics.median(v[key] for v in values), 2)
            for key in ("median_ms", "p99_ms", "calls_per_s", "connects")
        }
        out[name]["connects_range"] = [
            min(v["connects"] for v in values),
            max(v["connects"] for v in values),
        ]
        out[name]["ratio_vs_sdk"] = {
            "min": round(min(ratios), 3),
            "median": round(statistics.median(ratios), 3),
            "max": round(max(ratios), 3),
        }
    report.update(
        callers=args.callers,
        calls=args.calls,
        rounds=args.rounds,
        mode=mode,
        clients=out,
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    count_connects()
    report = asyncio.run(run(args))
    mode = report["mode"]
    print(
        f"{args.callers} concurrent callers, {args.calls} calls per round, "
        f"{args.rounds} rounds; mode: tether {mode['tether']}, sdk {mode['sdk']}, "
        "raw 2026-07-28; JSON answers"
    )
    print(
        f"{'client':12} {'median ms':>10} {'p99 ms':>8} {'calls/s':>8} "
        f"{'TCP conns':>10}   ratio vs sdk (min / median / max)"
    )
    for name, row in report["clients"].items():
        r = row["ratio_vs_sdk"]
        lo, hi = row["connects_range"]
        print(
            f"{name:12} {row['median_ms']:>10.2f} {row['p99_ms']:>8.2f} "
            f"{row['calls_per_s']:>8.1f} {row['connects']:>5.0f} ({lo}-{hi})   "
            f"{r['min']:.3f} / {r['median']:.3f} / {r['max']:.3f}"
        )
    write("concurrent_callers", report)


if __name__ == "__main__":
    main()
