"""Benchmark row 6: the memory of 1,000 servers held in one process.

Not a test. Run from the repository root::

    .venv/bin/python bench/memory_servers.py [--servers 1000] [--processes 4]
        [--rounds 5]

Starts ``--processes`` SDK MCP servers (``tests/peers``, no auth, JSON answers). Each
measurement is a fresh OS process (this script re-run with ``--child``), so resident
memory is not shared between clients; rounds alternate the clients' order:

* ``tether``: ``Tether.open`` (SQLite in a temporary folder, its schema made by a
  separate ``migrate`` process first as a deployment's ``tether migrate`` does, or by
  ``Tether.open`` itself with ``--fresh-database``), ``--servers`` servers
  registered, then ``list_tools`` on each: one pooled MCP session per server, held,
  measured once every session's tool-list subscription is open (the peers count them);
* ``sdk``: ``--servers`` ``mcp.client.Client`` sessions over one shared
  ``httpx2.AsyncClient``, ``list_tools`` on each, held.

Both clients keep the tool lists they were given (an application holds the tools it
hands its model), so the lists weigh on both sides alike. Tether holds, per server, its
tool list, a session (no connection: a fan-out closes each stateless connection once
its list is in) and the session's ``subscriptions/listen`` stream, which the SDK does
not open; the SDK holds its list and an open session.

Printed, from ``/proc/self/status`` ``VmRSS``: the RSS after the imports (``base``), the
fixed cost of ``Tether.open`` (``open``), and the growth for the servers (``held``:
RSS with every session open minus ``base``), as median and p99 over the rounds, and the
ratio of Tether's ``held`` to the SDK's (min / median / max over rounds), with and
without the fixed part. ``Tether.open``'s fixed part is mostly code: SQLAlchemy and
aiosqlite (~180 modules); Alembic with Mako and Pygments only when it migrates
(``--fresh-database``). See ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

import common  # puts src/ and tests/ on sys.path
from common import (
    LOOPBACK,
    REDIRECT_URI,
    add_open_servers,
    header,
    percentile,
    rss_kib,
    write,
)

FAN_OUT = 16


MIGRATE = "import asyncio, sys; from tether.store.migrate import migrate; " + (
    "asyncio.run(migrate(sys.argv[1]))"
)


async def child_tether(urls: list[str], url: str) -> dict[str, int]:
    from tether.hub.tether import Tether
    from tether.store.crypto import KeyRing

    gc.collect()
    base = rss_kib()
    tether = await Tether.open(
        database_url=url,
        key_ring=KeyRing.generate(),
        redirect_uri=REDIRECT_URI,
        allow_networks=LOOPBACK,
    )
    gc.collect()
    opened = rss_kib()
    await add_open_servers(tether, urls)
    listed = await tether.list_tools_many(concurrency=FAN_OUT)
    failed = [name for name, r in listed.items() if not isinstance(r, list)]
    if failed:
        raise RuntimeError(f"not listed: {failed[:5]}")
    # a fan-out subscribes to tool-list changes once every list is in: count the
    # memory with every subscription open, as a process holding the lists has them
    await subscriptions_open(urls, len(urls))
    gc.collect()
    held = rss_kib()
    await tether.aclose()
    return {"base": base, "open": opened - base, "held": held - base}


async def subscriptions_open(urls: list[str], expected: int) -> None:
    """Wait until the peers hold ``expected`` ``subscriptions/listen`` streams."""
    import httpx2

    origins = sorted({url.rsplit("/", 1)[0] for url in urls})
    async with httpx2.AsyncClient(trust_env=False, timeout=60) as http:
        for _ in range(2400):  # 120 s at most
            held = 0
            for origin in origins:
                held += (await http.get(f"{origin}/_listeners")).json()["listeners"]
            if held >= expected:
                return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"only {held} of {expected} subscriptions opened")


async def child_sdk(urls: list[str]) -> dict[str, int]:
    import httpx2
    from mcp.client.client import Client
    from mcp.client.streamable_http import streamable_http_client

    gc.collect()
    base = rss_kib()
    http = httpx2.AsyncClient(timeout=60.0, trust_env=False)
    lists = []  # held, as Tether's are: an application keeps the tools it was given
    async with contextlib.AsyncExitStack() as stack:
        # one after another: an SDK session is exited by the task that entered it
        for url in urls:
            client = await stack.enter_async_context(
                Client(streamable_http_client(url, http_client=http), cache=None)
            )
            lists.append(await client.list_tools())
        gc.collect()
        held = rss_kib()
        assert len(lists) == len(urls)
    await http.aclose()
    return {"base": base, "open": 0, "held": held - base}


def child(kind: str, urls: list[str], fresh: bool) -> None:
    # import what both clients import before the baseline: only the sessions differ
    import httpx2  # noqa: F401
    import mcp.client.client  # noqa: F401

    if kind == "sdk":
        print(json.dumps(asyncio.run(child_sdk(urls))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        if not fresh:  # deployed: `tether migrate` ran before, in another process
            subprocess.run(
                [sys.executable, "-c", MIGRATE, url],
                check=True,
                env={**os.environ, "PYTHONPATH": common.SRC},
            )
        print(json.dumps(asyncio.run(child_tether(urls, url))))


def measure(kind: str, urls: list[str], fresh: bool) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind]
        + (["--fresh-database"] if fresh else []),
        input=json.dumps(urls),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def stats(values: list[int]) -> dict[str, float]:
    return {
        "median_mib": round(statistics.median(values) / 1024, 1),
        "p99_mib": round(percentile([float(v) for v in values], 99) / 1024, 1),
    }


def spread(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from peers.fixture import MCPServer

    report = header()
    rows: dict[str, list[dict[str, int]]] = {"tether": [], "sdk": []}
    with contextlib.ExitStack() as stack:
        peers = [
            stack.enter_context(MCPServer(None, MCP_JSON_RESPONSE=1))
            for _ in range(args.processes)
        ]
        urls = [peers[n % len(peers)].url for n in range(args.servers)]
        for r in range(args.rounds):
            for kind in ("tether", "sdk") if r % 2 == 0 else ("sdk", "tether"):
                rows[kind].append(measure(kind, urls, args.fresh_database))
                got = rows[kind][-1]
                print(
                    f"  round {r + 1} {kind:6}: base {got['base'] / 1024:6.1f} MiB, "
                    f"open +{got['open'] / 1024:5.1f} MiB, "
                    f"held +{got['held'] / 1024:6.1f} MiB"
                )
    pairs = list(zip(rows["tether"], rows["sdk"], strict=True))
    ratios = [t["held"] / s["held"] for t, s in pairs]
    session_ratios = [(t["held"] - t["open"]) / s["held"] for t, s in pairs]
    report.update(
        servers=args.servers,
        processes=args.processes,
        database="fresh (migrated by Tether.open)"
        if args.fresh_database
        else "existing (migrated beforehand)",
        rounds=args.rounds,
        clients={
            kind: {
                part: stats([row[part] for row in values])
                for part in ("base", "open", "held")
            }
            for kind, values in rows.items()
        },
        held_ratio=spread(ratios),
        sessions_ratio=spread(session_ratios),
        raw=rows,
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers",
        type=int,
        default=90,
        help="above ~100 a run stalls: each 2026-07-28 session's listen stream "
        "holds one of the guarded client's 100 connections (docs/benchmarks.md)",
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--fresh-database",
        action="store_true",
        help="Tether.open creates the SQLite schema (a first start, Alembic loaded) "
        "instead of opening one `tether migrate` made",
    )
    parser.add_argument("--child", choices=["tether", "sdk"])
    args = parser.parse_args()
    if args.child:
        child(args.child, json.loads(sys.stdin.read()), args.fresh_database)
        return
    report = run(args)
    print(
        f"\n{args.servers} servers held in one process ({args.rounds} rounds, "
        f"fresh process each; SQLite database {report['database']}); "
        "RSS growth over the post-import baseline:"
    )
    for kind, row in report["clients"].items():
        print(
            f"  {kind:6} held +{row['held']['median_mib']:6.1f} MiB median "
            f"(p99 {row['held']['p99_mib']:.1f}); Tether.open alone "
            f"+{row['open']['median_mib']:.1f} MiB; base {row['base']['median_mib']} MiB"
        )
    r = report["held_ratio"]
    print(
        f"  tether / sdk held: {r['min']:.3f} / {r['median']:.3f} / {r['max']:.3f} "
        "(min / median / max over rounds; target <= 1.2)"
    )
    r = report["sessions_ratio"]
    print(
        f"  without Tether.open's fixed part (held - open) / sdk: {r['min']:.3f} / "
        f"{r['median']:.3f} / {r['max']:.3f}"
    )
    write("memory_servers", report)


if __name__ == "__main__":
    main()
