"""Benchmark row 7: listing 100,000 connections, bulk vs keyset pages.

Not a test. Run from the repository root::

    .venv/bin/python bench/list_connections.py [--connections 100000] [--page 100]
        [--rounds 5]

Seeds a SQLite store with ``--connections`` connections (tokens sealed as Tether seals
them; written in bulk, which is only the set-up), then measures, each in a fresh OS
process so peak memory is its own, rounds interleaved:

* ``bulk``: ``stores.connections.list()``, every connection read and decrypted at once;
* ``paged``: ``Tether.list_connections(limit=--page, after=...)`` until the end: the
  latency of each page (median, p99) and the walk's total.

Printed: times, and the peak RSS growth (``VmHWM`` minus the RSS before listing). No
SDK row: the MCP SDK keeps no connections; the bulk call is the floor being replaced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import common  # noqa: F401  (puts src/ and tests/ on sys.path)
from common import LOOPBACK, REDIRECT_URI, header, percentile, rss_kib, write

KEY_FILE = "keys"


def peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


async def open_tether(folder: str) -> Any:
    from tether.hub.tether import Tether
    from tether.store.crypto import load_key_file

    ring = load_key_file(Path(folder, KEY_FILE))
    return await Tether.open(
        database_url=f"sqlite+aiosqlite:///{folder}/bench.db",
        key_ring=ring,
        redirect_uri=REDIRECT_URI,
        allow_networks=LOOPBACK,
    )


async def seed(folder: str, count: int) -> None:
    import sqlalchemy as sa
    from pydantic import SecretStr

    from tether.store import rows, schema
    from tether.store.base import Connection
    from tether.store.crypto import load_key_file

    ring = load_key_file(Path(folder, KEY_FILE))  # created, mode 0600
    tether = await open_tether(folder)
    server = await tether.servers.create(
        {
            "name": "personal",
            "url": "http://127.0.0.1:9/mcp",
            "auth_mode": "oauth",
            "allow_networks": LOOPBACK,
            "oauth": {"per_user": True},
        },
        actor="bench",
    )
    now = datetime.now(UTC)
    backend = tether.stores.connections._b  # set-up only: a bulk insert
    for start in range(0, count, 5000):
        batch = [
            {
                **rows.connection_row(
                    ring,
                    Connection(
                        server_id=server.id,
                        subject=f"user-{n:07d}",
                        status="connected",
                        access_token=SecretStr(f"access-{n}"),
                        refresh_token=SecretStr(f"refresh-{n}"),
                        expires_at=now + timedelta(hours=1),
                        connected_at=now,
                    ),
                ),
                "version": 1,
            }
            for n in range(start, min(count, start + 5000))
        ]
        async with backend.begin() as conn:
            await conn.execute(sa.insert(schema.connections), batch)
    await tether.aclose()


async def child_bulk(folder: str) -> dict[str, Any]:
    tether = await open_tether(folder)
    before = rss_kib()
    start = time.perf_counter()
    found = await tether.stores.connections.list()
    took = time.perf_counter() - start
    result = {"n": len(found), "total_s": took, "peak_kib": peak_kib() - before}
    await tether.aclose()
    return result


async def child_paged(folder: str, page: int) -> dict[str, Any]:
    tether = await open_tether(folder)
    before = rss_kib()
    pages: list[float] = []
    after: str | None = None
    n = 0
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        got = await tether.list_connections(limit=page, after=after)
        pages.append((time.perf_counter() - t) * 1000)
        n += len(got.items)
        if got.next is None:
            break
        after = got.next
    took = time.perf_counter() - start
    result = {
        "n": n,
        "total_s": took,
        "pages": len(pages),
        "page_median_ms": statistics.median(pages),
        "page_p99_ms": percentile(pages, 99),
        "peak_kib": peak_kib() - before,
    }
    await tether.aclose()
    return result


def measure(kind: str, folder: str, page: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, "--folder", folder]
    done = subprocess.run(
        [*command, "--page", str(page)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", choices=["bulk", "paged"])
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.child:
        run = (
            child_bulk(args.folder)
            if args.child == "bulk"
            else child_paged(args.folder, args.page)
        )
        print(json.dumps(asyncio.run(run)))
        return
    report = header()
    rows: dict[str, list[dict[str, Any]]] = {"bulk": [], "paged": []}
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        asyncio.run(seed(folder, args.connections))
        print(
            f"seeded {args.connections} connections in {time.perf_counter() - start:.1f} s"
        )
        for r in range(args.rounds):
            for kind in ("bulk", "paged") if r % 2 == 0 else ("paged", "bulk"):
                got = measure(kind, folder, args.page)
                if got["n"] != args.connections:
                    raise RuntimeError(f"{kind} listed {got['n']}")
                rows[kind].append(got)
                extra = (
                    f", page median {got['page_median_ms']:.1f} ms"
                    if kind == "paged"
                    else ""
                )
                print(
                    f"  round {r + 1} {kind:5}: {got['total_s']:.2f} s, peak "
                    f"+{got['peak_kib'] / 1024:.1f} MiB{extra}"
                )

    def med(kind: str, key: str) -> float:
        return statistics.median(row[key] for row in rows[kind])

    page_medians = [row["page_median_ms"] for row in rows["paged"]]
    page_p99s = [row["page_p99_ms"] for row in rows["paged"]]
    report.update(
        connections=args.connections,
        page=args.page,
        rounds=args.rounds,
        raw=rows,
    )
    print(
        f"\n{args.connections} connections, SQLite, {args.rounds} rounds "
        "(fresh process each):"
    )
    print(
        f"  bulk list():   median {med('bulk', 'total_s'):.2f} s, "
        f"peak +{med('bulk', 'peak_kib') / 1024:.1f} MiB"
    )
    print(
        f"  pages of {args.page}: page median {statistics.median(page_medians):.2f} ms "
        f"(per-round medians {min(page_medians):.2f}..{max(page_medians):.2f}), "
        f"p99 {statistics.median(page_p99s):.2f} ms; whole walk "
        f"{med('paged', 'total_s'):.2f} s, peak +{med('paged', 'peak_kib') / 1024:.1f} MiB"
    )
    write("list_connections", report)


if __name__ == "__main__":
    main()
