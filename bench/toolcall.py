"""Benchmark: ``tools/call`` through Tether vs the bare ``mcp`` SDK vs raw httpx2.

Not a test. Run from the repository root::

    .venv/bin/python bench/toolcall.py [--calls 400] [--concurrency 8]

One loopback MCP server (``tests/peers/mcp_server.py``, no auth, pinned to the stateful
2025-11-25 revision so all three clients speak the same protocol) serves three clients in
the same run:

* ``tether``: ``Tether.call_tool`` (server lookup in SQLite, pooled ``MCPSession``,
  guarded transport, result normalisation);
* ``sdk``: ``mcp.client.Client`` over ``streamable_http_client`` with a plain
  ``httpx2.AsyncClient``;
* ``raw``: one JSON-RPC POST per call with ``httpx2`` (the floor);
* ``guarded``: the same POSTs through Tether's :func:`guarded_client` (the guarded
  transport's own cost, next to ``raw``).

Each runs the ``echo`` tool sequentially and with ``--concurrency`` workers sharing one
client (one MCP session). Latencies are reported as median and p99 per call, with the
client's CPU time per call and the TCP connections it opened; ratios are against the
bare SDK (target: Tether <= 1.05x). Finally five concurrent 1-second ``slow`` calls on
one Tether MCP session should finish in about one second. Results go to stdout and to
``bench/results/toolcall-<date>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

import httpcore2  # noqa: E402
import httpx2  # noqa: E402
from mcp.client.client import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from peers.fixture import MCPServer  # noqa: E402
from tether.hub.tether import Tether  # noqa: E402
from tether.net import NetworkPolicy, guarded_client  # noqa: E402
from tether.store.crypto import KeyRing  # noqa: E402

VERSION = "2025-11-25"
CONNECTS = [0]  # TCP connections opened, by every client (see count_connects)
ACCEPT = "application/json, text/event-stream"
Call = Callable[[str], Awaitable[str]]


def count_connects() -> None:
    """Count TCP connects: httpx2's default backend and Tether's guarded one share it."""
    original = httpcore2.AnyIOBackend.connect_tcp

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        CONNECTS[0] += 1
        return await original(self, *args, **kwargs)

    httpcore2.AnyIOBackend.connect_tcp = counted  # type: ignore[method-assign]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (``q`` in 0..100)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def sequential(call: Call, n: int) -> list[float]:
    """Per-call latencies in ms of ``n`` calls one after another."""
    out: list[float] = []
    for i in range(n):
        start = time.perf_counter()
        text = await call(f"s{i}")
        out.append((time.perf_counter() - start) * 1000)
        if text != f"s{i}":
            raise RuntimeError(f"unexpected echo {text!r}")
    return out


async def concurrent(call: Call, n: int, workers: int) -> tuple[list[float], float]:
    """Per-call latencies (ms) and wall time (s) of ``n`` calls over ``workers``."""
    out: list[float] = []

    async def worker(w: int) -> None:
        for i in range(n // workers):
            start = time.perf_counter()
            text = await call(f"c{w}-{i}")
            out.append((time.perf_counter() - start) * 1000)
            if text != f"c{w}-{i}":
                raise RuntimeError(f"unexpected echo {text!r}")

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    return out, time.perf_counter() - start


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values), 3),
        "p99_ms": round(percentile(values, 99), 3),
        "mean_ms": round(statistics.fmean(values), 3),
    }


class Raw:
    """A minimal Streamable HTTP JSON-RPC client (one POST per call)."""

    def __init__(self, url: str, client: httpx2.AsyncClient | None = None) -> None:
        self.url = url
        self.client = client or httpx2.AsyncClient(timeout=30.0, trust_env=False)
        self.headers = {"accept": ACCEPT, "content-type": "application/json"}
        self.next_id = 0

    async def post(self, method: str, params: dict[str, Any] | None) -> Any:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        if not method.startswith("notifications/"):
            self.next_id += 1
            msg["id"] = self.next_id
        resp = await self.client.post(self.url, json=msg, headers=self.headers)
        resp.raise_for_status()
        if "id" not in msg:
            return None
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()["result"]
        for line in resp.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                data = json.loads(line[5:])
                if data.get("id") == msg["id"]:
                    return data["result"]
        raise RuntimeError(f"no result in {resp.text!r}")

    async def start(self) -> None:
        info = {"name": "bench-raw", "version": "0"}
        params = {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": info}
        msg = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}
        resp = await self.client.post(self.url, json=msg, headers=self.headers)
        resp.raise_for_status()
        self.headers["mcp-session-id"] = resp.headers["mcp-session-id"]
        self.headers["mcp-protocol-version"] = VERSION
        await self.post("notifications/initialized", None)

    async def echo(self, text: str) -> str:
        result = await self.post(
            "tools/call", {"name": "echo", "arguments": {"text": text}}
        )
        return str(result["content"][0]["text"])


async def measure(
    name: str, call: Call, calls: int, workers: int, warmup: int
) -> dict[str, Any]:
    await sequential(call, warmup)
    cpu, connects = time.process_time(), CONNECTS[0]
    seq = await sequential(call, calls)
    seq_cpu, seq_connects = time.process_time() - cpu, CONNECTS[0] - connects
    cpu, connects = time.process_time(), CONNECTS[0]
    conc, wall = await concurrent(call, calls, workers)
    conc_cpu, conc_connects = time.process_time() - cpu, CONNECTS[0] - connects
    return {
        "client": name,
        "sequential": {
            **summary(seq),
            "cpu_ms_per_call": round(seq_cpu / len(seq) * 1000, 3),
            "connects": seq_connects,
        },
        "concurrent": {
            **summary(conc),
            "workers": workers,
            "calls_per_s": round(len(conc) / wall, 1),
            "cpu_ms_per_call": round(conc_cpu / len(conc) * 1000, 3),
            "connects": conc_connects,
        },
    }


async def run(calls: int, workers: int, warmup: int, rounds: int) -> dict[str, Any]:
    with (
        MCPServer(None, env={"MCP_PROTOCOL_VERSIONS": VERSION}) as mcp,
        tempfile.TemporaryDirectory() as tmp,
    ):
        tether = await Tether.open(
            database_url=f"sqlite+aiosqlite:///{tmp}/bench.db",
            key_ring=KeyRing.generate(),
            redirect_uri="http://127.0.0.1:8470/oauth/callback",
            allow_networks=["127.0.0.0/8"],
        )
        await tether.servers.create(
            {"name": "bench", "url": mcp.url, "allow_networks": ["127.0.0.0/8"]},
            actor="bench",
        )

        async def via_tether(text: str) -> str:
            result = await tether.call_tool("bench", "echo", {"text": text})
            if result.is_error:
                raise RuntimeError(result.text)
            return result.text

        raw = Raw(mcp.url)
        await raw.start()
        policy = NetworkPolicy.from_allowlist(["127.0.0.0/8"])
        guarded = Raw(
            mcp.url, guarded_client(policy, timeout=30.0, follow_redirects=False)
        )
        await guarded.start()
        sdk_http = httpx2.AsyncClient(timeout=30.0, trust_env=False)
        results: dict[str, list[dict[str, Any]]] = {
            "tether": [],
            "sdk": [],
            "raw": [],
            "guarded": [],
        }
        async with Client(
            streamable_http_client(mcp.url, http_client=sdk_http), cache=None
        ) as sdk:

            async def via_sdk(text: str) -> str:
                result = await sdk.call_tool("echo", {"text": text})
                block = result.content[0]
                return str(getattr(block, "text", ""))

            clients: dict[str, Call] = {
                "tether": via_tether,
                "sdk": via_sdk,
                "raw": raw.echo,
                "guarded": guarded.echo,
            }
            # interleave rounds so drift (CPU frequency, GC) hits every client alike
            for _ in range(rounds):
                for name, call in clients.items():
                    results[name].append(
                        await measure(name, call, calls, workers, warmup)
                    )

            start, connects = time.perf_counter(), CONNECTS[0]
            slow = await asyncio.gather(
                *(
                    tether.call_tool("bench", "slow", {"seconds": 1, "steps": 2})
                    for _ in range(5)
                )
            )
            slow_wall = time.perf_counter() - start
            slow_connects = CONNECTS[0] - connects
            if any(r.is_error for r in slow):
                raise RuntimeError([r.text for r in slow])
            sessions = {c["session_id"] for c in mcp.calls() if c["tool"] == "slow"}
        await sdk_http.aclose()
        await raw.client.aclose()
        await guarded.client.aclose()
        await tether.aclose()

    merged = {name: merge(rows) for name, rows in results.items()}
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "protocol_version": VERSION,
        "calls_per_round": calls,
        "rounds": rounds,
        "workers": workers,
        "clients": merged,
        "ratios_vs_sdk": {
            name: {
                mode: round(
                    merged[name][mode]["median_ms"] / merged["sdk"][mode]["median_ms"],
                    3,
                )
                for mode in ("sequential", "concurrent")
            }
            for name in merged
        },
        "ratios_per_round": {
            name: {
                mode: [
                    round(r[mode]["median_ms"] / s[mode]["median_ms"], 3)
                    for r, s in zip(rows, results["sdk"], strict=True)
                ]
                for mode in ("sequential", "concurrent")
            }
            for name, rows in results.items()
        },
        "slow_5x1s": {
            "wall_s": round(slow_wall, 3),
            "sessions": len(sessions),
            "connects": slow_connects,
        },
    }


def merge(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of the per-round statistics."""
    out: dict[str, Any] = {}
    for mode in ("sequential", "concurrent"):
        keys = rows[0][mode].keys()
        out[mode] = {
            key: round(statistics.median(r[mode][key] for r in rows), 3) for key in keys
        }
    return out


def table(report: dict[str, Any]) -> str:
    lines = [
        f"tools/call echo, {report['calls_per_round']} calls x {report['rounds']} "
        f"rounds, {report['workers']} workers, MCP {report['protocol_version']}",
        f"{'':8} {'--------- sequential ---------':>30}   "
        f"{'-------------- concurrent ---------------':>41}",
        f"{'client':8} {'med':>7} {'p99':>7} {'cpu':>6} {'conn':>5}   "
        f"{'med':>7} {'p99':>7} {'cpu':>6} {'conn':>5} {'calls/s':>8}"
        f"   {'seq x':>6} {'conc x':>6}  {'conc x per round':>16}",
    ]
    for name, row in report["clients"].items():
        ratio = report["ratios_vs_sdk"][name]
        rounds = report["ratios_per_round"][name]["concurrent"]
        seq, conc = row["sequential"], row["concurrent"]
        lines.append(
            f"{name:8} {seq['median_ms']:>7.2f} {seq['p99_ms']:>7.2f} "
            f"{seq['cpu_ms_per_call']:>6.2f} {seq['connects']:>5.0f}   "
            f"{conc['median_ms']:>7.2f} {conc['p99_ms']:>7.2f} "
            f"{conc['cpu_ms_per_call']:>6.2f} {conc['connects']:>5.0f} "
            f"{conc['calls_per_s']:>8.1f}   {ratio['sequential']:>6.3f} "
            f"{ratio['concurrent']:>6.3f}  {min(rounds):.2f}..{max(rounds):.2f}"
        )
    slow = report["slow_5x1s"]
    lines.append(
        f"5 concurrent 1 s slow calls via Tether: {slow['wall_s']:.3f} s wall "
        f"on {slow['sessions']} MCP session(s), {slow['connects']} new connection(s)"
    )
    lines.append(
        "(ms per call; cpu = client CPU ms per call; conn = TCP connects per round; "
        "x = median / bare SDK median, same run; target tether <= 1.05)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    count_connects()
    report = asyncio.run(run(args.calls, args.concurrency, args.warmup, args.rounds))
    print(table(report))
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"toolcall-{datetime.now(UTC):%Y-%m-%d}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
