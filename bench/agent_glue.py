"""The agent glue's cost: ``run_tool_calls`` vs calling ``tether.call`` yourself.

Not a test. Run from the repository root::

    .venv/bin/python bench/agent_glue.py [--calls 100] [--rounds 5] [--warmup 20]

Starts the SDK MCP server (``tests/peers``, no authentication, JSON answers) and an
in-memory Tether with a one-server toolset. Per round, interleaved:

* ``tether.call x1``: one ``tether.call("agent", "echo", ...)``;
* ``run_tool_calls x1``: an Anthropic response with that one call, parsed, run and
  answered (the glue's overhead is the difference);
* ``tether.call x8 sequential``: eight calls, one after another;
* ``run_tool_calls x8``: a response with the same eight calls (run concurrently).

Then the point of running calls concurrently: a response with eight ``slow`` calls of
0.2 s each, with ``max_concurrency`` 8 and 1 (wall time per response, median over
rounds). Printed: median and p99, client CPU, the ratios (min / median / max over the
rounds) and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import common  # noqa: F401  (puts src/ and tests/ on sys.path)
from common import LOOPBACK, REDIRECT_URI, header, interleaved, print_table, summarize
from common import write as write_report

from peers.fixture import MCPServer
from tether import KeyRing, Tether, run_tool_calls


def response(calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """An Anthropic message calling ``(name, input)`` in order."""
    return {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": args}
            for i, (name, args) in enumerate(calls)
        ],
    }


async def run(calls: int, rounds: int, warmup: int) -> dict[str, Any]:
    report = header()
    with MCPServer(MCP_JSON_RESPONSE=1) as mcp:
        tether = await Tether.open(
            database_url="memory://",
            key_ring=KeyRing.generate(),
            redirect_uri=REDIRECT_URI,
            allow_networks=LOOPBACK,
        )
        await tether.servers.create({"name": "bench", "url": mcp.url}, actor="bench")
        await tether.toolsets.create("agent", [{"server": "bench"}], actor="bench")
        echo = ("echo", {"text": "x"})
        one, eight = response([echo]), response([echo] * 8)

        async def call_once() -> None:
            if (await tether.call("agent", "echo", {"text": "x"})).is_error:
                raise RuntimeError("echo failed")

        async def glue_once() -> None:
            (reply,) = await run_tool_calls(tether, "agent", one, provider="anthropic")
            if reply["content"][0]["is_error"]:
                raise RuntimeError("echo failed")

        async def call_eight() -> None:
            for _ in range(8):
                await call_once()

        async def glue_eight() -> None:
            (reply,) = await run_tool_calls(
                tether, "agent", eight, provider="anthropic"
            )
            if any(block["is_error"] for block in reply["content"]):
                raise RuntimeError("echo failed")

        series = await interleaved(
            {
                "tether.call x1": call_once,
                "run_tool_calls x1": glue_once,
                "tether.call x8 seq": call_eight,
                "run_tool_calls x8": glue_eight,
            },
            calls=calls,
            rounds=rounds,
            warmup=warmup,
        )
        slow = response([("slow", {"seconds": 0.2, "steps": 1})] * 8)
        walls: dict[str, list[float]] = {
            "max_concurrency=8": [],
            "max_concurrency=1": [],
        }
        for _ in range(rounds):
            for name, limit in (("max_concurrency=8", 8), ("max_concurrency=1", 1)):
                start = time.perf_counter()
                await run_tool_calls(
                    tether, "agent", slow, provider="anthropic", max_concurrency=limit
                )
                walls[name].append(time.perf_counter() - start)
        await tether.aclose()
    report.update(
        calls_per_round=calls,
        rounds=rounds,
        one=summarize(
            {k: series[k] for k in ("tether.call x1", "run_tool_calls x1")},
            "tether.call x1",
        ),
        eight=summarize(
            {k: series[k] for k in ("tether.call x8 seq", "run_tool_calls x8")},
            "tether.call x8 seq",
        ),
        slow_wall_s={k: round(statistics.median(v), 3) for k, v in walls.items()},
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    report = asyncio.run(run(args.calls, args.rounds, args.warmup))
    title = f"echo, {args.calls} per round x {args.rounds} rounds, JSON answers"
    print_table(f"one call: {title}", report["one"], "tether.call x1")
    print_table(f"eight calls: {title}", report["eight"], "tether.call x8 seq")
    print(
        "8 slow calls of 0.2 s (median wall per response): "
        + ", ".join(f"{k} {v:.3f} s" for k, v in report["slow_wall_s"].items())
    )
    write_report("agent_glue", report)


if __name__ == "__main__":
    main()
