"""Benchmark row 2: a toolset of 1,000 servers (first view, then calls).

Not a test. Run from the repository root::

    .venv/bin/python bench/toolset_wide.py [--servers 1000] [--processes 4]
        [--rounds 5] [--calls 100] [--sequential-rounds 1]

Starts ``--processes`` SDK MCP servers (``tests/peers``, no auth, JSON answers, every
revision the SDK knows) and registers ``--servers`` Tether servers spread over them, all
in one toolset. Each Tether server gets its own MCP session, as 1,000 distinct servers
would.

First view, per round, cold (tool cache and sessions dropped first), interleaved:

* ``tether view``: ``tether.toolset(..., refresh=True)``, the servers listed
  concurrently (16 at a time, each within its own deadline);
* ``sdk fan-out``: the bare SDK doing the same with ``asyncio`` and a semaphore of 16:
  one ``Client`` per server (one shared ``httpx2.AsyncClient``), ``initialize`` if the
  revision needs it, ``tools/list``: the floor;
* ``tether view, sequential`` (``--sequential-rounds``): the same view with a fan-out
  of 1, i.e. what the sum of the servers costs.

Then warm calls, interleaved: ``tether.call`` through the wide toolset, through a
one-server toolset, ``tether.call_tool``, and the bare SDK's ``call_tool``: a call must
not depend on the toolset's size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from typing import Any

import common  # noqa: F401  (puts src/ and tests/ on sys.path)
import httpx2
from common import (
    LOOPBACK,
    REDIRECT_URI,
    Series,
    add_open_servers,
    header,
    interleaved,
    percentile,
    print_table,
    ratio_stats,
    summarize,
    write,
)
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from peers.fixture import MCPServer
from tether.hub.tether import Tether
from tether.store.crypto import KeyRing

FAN_OUT = 16


CPU: dict[str, list[float]] = {}
"""Client CPU seconds (``time.process_time``) per first view, by client."""


async def sdk_fan_out(urls: list[str], http: httpx2.AsyncClient) -> float:
    """Seconds for the bare SDK to list every server's tools, 16 at a time."""
    gate = asyncio.Semaphore(FAN_OUT)

    async def one(url: str) -> None:
        async with (
            gate,
            Client(streamable_http_client(url, http_client=http), cache=None) as sdk,
        ):
            await sdk.list_tools()

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(url) for url in urls))
    CPU.setdefault("sdk fan-out", []).append(time.process_time() - cpu)
    return time.perf_counter() - start


async def tether_view(tether: Tether, ids: list[str], fan_out: int) -> float:
    """Seconds for a cold first view of the wide toolset."""
    for server_id in ids:
        await tether.tools.invalidate(server_id)
    tether.toolsets.fan_out = fan_out
    start, cpu = time.perf_counter(), time.process_time()
    view = await tether.toolset("wide", refresh=True)
    took = time.perf_counter() - start
    name = "tether view" if fan_out > 1 else "tether view, sequential"
    CPU.setdefault(name, []).append(time.process_time() - cpu)
    if view.excluded:
        raise RuntimeError(f"servers left out: {list(view.excluded)[:5]}")
    return took


def stats(values: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(values), 3),
        "p99_s": round(percentile(values, 99), 3),
        "rounds": len(values),
    }


async def first_views(
    tether: Tether, ids: list[str], urls: list[str], rounds: int, seq_rounds: int
) -> dict[str, Any]:
    http = httpx2.AsyncClient(timeout=60.0, trust_env=False)
    times: dict[str, list[float]] = {"tether view": [], "sdk fan-out": []}
    for r in range(rounds):
        pair = [
            ("tether view", lambda: tether_view(tether, ids, FAN_OUT)),
            ("sdk fan-out", lambda: sdk_fan_out(urls, http)),
        ]
        for name, run in pair if r % 2 == 0 else pair[::-1]:
            times[name].append(await run())
            print(f"  first view round {r + 1}: {name} {times[name][-1]:.2f} s")
    sequential = []
    for r in range(seq_rounds):
        sequential.append(await tether_view(tether, ids, 1))
        print(f"  sequential round {r + 1}: {sequential[-1]:.2f} s")
    await http.aclose()
    tether.toolsets.fan_out = FAN_OUT
    ratios = [
        t / s for t, s in zip(times["tether view"], times["sdk fan-out"], strict=True)
    ]
    out: dict[str, Any] = {name: stats(values) for name, values in times.items()}
    out["ratio_tether_vs_sdk"] = {
        "min": round(min(ratios), 3),
        "median": round(statistics.median(ratios), 3),
        "max": round(max(ratios), 3),
    }
    if sequential:
        out["tether view, sequential"] = stats(sequential)
    out["cpu_median_s"] = {
        name: round(statistics.median(values), 3) for name, values in CPU.items()
    }
    return out


async def setup(tmp: str, urls: list[str], database: str) -> tuple[Tether, list[str]]:
    tether = await Tether.open(
        database_url=database.replace("TMP", tmp),
        key_ring=KeyRing.generate(),
        redirect_uri=REDIRECT_URI,
        allow_networks=LOOPBACK,
    )
    ids = await add_open_servers(tether, urls)
    await tether.toolsets.create(
        "wide", [{"server": f"s{n:04d}"} for n in range(len(urls))], actor="bench"
    )
    await tether.toolsets.create("one", [{"server": "s0000"}], actor="bench")
    return tether, ids


async def run(args: argparse.Namespace) -> dict[str, Any]:
    report = header()
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        peers = [
            stack.enter_context(MCPServer(None, MCP_JSON_RESPONSE=1))
            for _ in range(args.processes)
        ]
        urls = [peers[n % len(peers)].url for n in range(args.servers)]
        start = time.perf_counter()
        tether, ids = await setup(tmp, urls, args.database)
        print(
            f"registered {args.servers} servers in {time.perf_counter() - start:.1f} s"
        )
        views = await first_views(
            tether, ids, urls, args.rounds, args.sequential_rounds
        )
        # the wide view is warm now; the tool named "echo" on s0000
        wide = await tether.toolset("wide")
        exposed = wide.names.exposed(ids[0], "echo")
        http = httpx2.AsyncClient(timeout=30.0, trust_env=False)
        async with Client(
            streamable_http_client(urls[0], http_client=http), cache=None
        ) as sdk:

            async def wide_call() -> None:
                result = await tether.call("wide", exposed, {"text": "x"})
                if result.is_error:
                    raise RuntimeError(result.text)

            async def one_call() -> None:
                result = await tether.call("one", "echo", {"text": "x"})
                if result.is_error:
                    raise RuntimeError(result.text)

            async def call_tool() -> None:
                result = await tether.call_tool("s0000", "echo", {"text": "x"})
                if result.is_error:
                    raise RuntimeError(result.text)

            async def bare_sdk() -> None:
                await sdk.call_tool("echo", {"text": "x"})

            results: dict[str, Series] = await interleaved(
                {
                    f"call, {args.servers}-server toolset": wide_call,
                    "call, 1-server toolset": one_call,
                    "tether.call_tool": call_tool,
                    "bare sdk": bare_sdk,
                },
                calls=args.calls,
                rounds=args.rounds,
                warmup=10,
            )
            mode = {"sdk": sdk.protocol_version}
        server = await tether.servers.get("s0000")
        mode["tether"] = (await tether.tools.session(server, "shared")).protocol_version
        await http.aclose()
        await tether.aclose()
    report.update(
        database=args.database.split(":")[0],
        servers=args.servers,
        processes=args.processes,
        rounds=args.rounds,
        calls_per_round=args.calls,
        mode=mode,
        first_view=views,
        calls=summarize(results, "bare sdk"),
        wide_vs_one=ratio_stats(
            results[f"call, {args.servers}-server toolset"],
            results["call, 1-server toolset"],
        ),
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers",
        type=int,
        default=90,
        help="servers in the toolset; before the stream pool (issue 9) a run stalled "
        "above ~100, each listen stream holding one of 100 connections",
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--sequential-rounds", type=int, default=1)
    parser.add_argument(
        "--database",
        default="sqlite+aiosqlite:///TMP/bench.db",
        help="Tether's store (TMP = a temporary folder); e.g. memory://",
    )
    args = parser.parse_args()
    report = asyncio.run(run(args))
    mode = report["mode"]
    print(
        f"\n{args.servers} servers on {args.processes} MCP server processes, "
        f"Tether store {report['database']}; "
        f"mode: tether {mode['tether']}, sdk {mode['sdk']}, JSON answers"
    )
    print("first view (cold, seconds):")
    cpu = report["first_view"]["cpu_median_s"]
    for name, row in report["first_view"].items():
        if name.startswith("ratio") or name.startswith("cpu"):
            continue
        print(
            f"  {name:26} median {row['median_s']:>7.2f}  p99 {row['p99_s']:>7.2f}"
            f"  ({row['rounds']} rounds), client CPU {cpu.get(name, 0):.2f} s"
        )
    r = report["first_view"]["ratio_tether_vs_sdk"]
    print(
        f"  tether / sdk fan-out: {r['min']:.3f} / {r['median']:.3f} / {r['max']:.3f}"
        " (min / median / max over rounds)"
    )
    print_table("warm calls:", report["calls"], "bare sdk")
    w = report["wide_vs_one"]
    print(
        f"wide / one-server toolset call: {w['min']:.3f} / {w['median']:.3f} / "
        f"{w['max']:.3f} (min / median / max over rounds)"
    )
    write("toolset_wide", report)


if __name__ == "__main__":
    main()
