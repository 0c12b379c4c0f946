"""Shared helpers of the issue-9 benchmarks (not a test; see bench/README.md).

Every script starts its own real servers (``tests/peers``: oidc-provider and the SDK
MCP server), measures Tether and the bare ``mcp`` SDK interleaved in the same run for
``--rounds`` rounds, and prints the median and p99, the ratio's min/median/max over the
rounds, the negotiated protocol mode and the load average before and after.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
# TETHER_SRC: another checkout's src/ (e.g. the commit before a change, for a
# before/after comparison on the same machine in the same hour)
SRC = os.environ.get("TETHER_SRC", str(ROOT / "src"))
sys.path.insert(0, SRC)

REDIRECT_URI = "http://127.0.0.1:8470/oauth/callback"
LOOPBACK = ["127.0.0.0/8"]

Call = Callable[[], Awaitable[None]]


def loadavg() -> tuple[float, float, float]:
    """The 1/5/15-minute load average (the machine is shared: record it)."""
    return os.getloadavg()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (``q`` in 0..100)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def rss_kib() -> int:
    """This process's resident set size in KiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


async def timed(call: Call, n: int) -> list[float]:
    """Latencies in ms of ``n`` sequential calls."""
    out: list[float] = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        out.append((time.perf_counter() - start) * 1000)
    return out


@dataclass
class Series:
    """One client's latencies, per round."""

    rounds: list[list[float]] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)

    def all(self) -> list[float]:
        return [v for r in self.rounds for v in r]

    def medians(self) -> list[float]:
        return [statistics.median(r) for r in self.rounds]


async def interleaved(
    clients: dict[str, Call], *, calls: int, rounds: int, warmup: int
) -> dict[str, Series]:
    """Run every client ``calls`` times per round, rounds interleaved across clients.

    Drift (CPU frequency, GC, the other engineers' load) then hits every client alike.
    The client order rotates each round so no client always goes first.
    """
    series = {name: Series() for name in clients}
    names = list(clients)
    for name in names:
        await timed(clients[name], warmup)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            cpu = time.process_time()
            series[name].rounds.append(await timed(clients[name], calls))
            series[name].cpu_ms.append((time.process_time() - cpu) / calls * 1000)
    return series


def ratio_stats(series: Series, base: Series) -> dict[str, float]:
    """min/median/max over the rounds of (client median / base median)."""
    ratios = [a / b for a, b in zip(series.medians(), base.medians(), strict=True)]
    return {
        "min": round(min(ratios), 3),
        "median": round(statistics.median(ratios), 3),
        "max": round(max(ratios), 3),
    }


def summarize(series: dict[str, Series], base: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, s in series.items():
        values = s.all()
        out[name] = {
            "n": len(values),
            "median_ms": round(statistics.median(values), 3),
            "p99_ms": round(percentile(values, 99), 3),
            "cpu_ms_per_call": round(statistics.median(s.cpu_ms), 3),
            f"ratio_vs_{base}": ratio_stats(s, series[base]),
        }
    return out


def print_table(title: str, rows: dict[str, Any], base: str) -> None:
    print(title)
    print(
        f"{'client':22} {'median ms':>10} {'p99 ms':>9} {'cpu ms':>7}   "
        f"ratio vs {base} (min / median / max over rounds)"
    )
    for name, row in rows.items():
        ratio = row[f"ratio_vs_{base}"]
        print(
            f"{name:22} {row['median_ms']:>10.3f} {row['p99_ms']:>9.3f} "
            f"{row['cpu_ms_per_call']:>7.3f}   "
            f"{ratio['min']:.3f} / {ratio['median']:.3f} / {ratio['max']:.3f}"
        )


def header() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "tether_src": os.environ.get("TETHER_SRC", "src"),
        "loadavg_before": loadavg(),
    }


async def add_open_servers(tether: Any, urls: list[str]) -> list[str]:
    """Register unauthenticated servers ``s0000``... straight in the store (set-up only:
    ``ServerService.create`` vets each URL and audits, ~0.1 s a server here)."""
    import uuid

    from tether.store.base import ServerRecord

    ids = []
    for n, url in enumerate(urls):
        record = ServerRecord(
            id=uuid.uuid4().hex,
            name=f"s{n:04d}",
            url=url,
            allow_networks=tuple(LOOPBACK),
        )
        ids.append((await tether.stores.servers.add(record)).id)
    return ids


def write(name: str, report: dict[str, Any]) -> None:
    report["loadavg_after"] = loadavg()
    before, after = report["loadavg_before"], report["loadavg_after"]
    print(
        f"load average (1/5/15 min) before {before[0]:.2f}/{before[1]:.2f}/"
        f"{before[2]:.2f}, after {after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f} "
        f"on {report['cpus']} CPUs (shared machine)"
    )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    label = "-before" if os.environ.get("TETHER_SRC") else ""
    path = out_dir / f"{name}{label}-{datetime.now(UTC):%Y-%m-%dT%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
