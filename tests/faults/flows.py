"""SIGKILL of connect completion, disconnect and configuration changes in real processes.

Reuses the grant-integrity harness (``tests/grants/harness.py``): one ``grants.worker``
process runs the flow with timestamped marks (``flow`` mode) and is killed at a seeded
random delay; the parent then opens a fresh Tether (which replays the token journal,
DUR-2) and judges what the kill left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grants.harness import WAIT_READY, Grant, Worker, release_together

OPTIONS: dict[str, Any] = {"lease_ttl_seconds": 2.0}


def options(workdir: Path) -> dict[str, Any]:
    """Open options for every process of a trial: short leases, one journal per host."""
    return {**OPTIONS, "journal_path": str(workdir / "token-journal")}


def last_mark(path: Path) -> str:
    """The last whole mark the killed child wrote (``before start`` if none)."""
    last = "before start"
    for line in path.read_text().splitlines() if path.exists() else []:
        name, _, stamp = line.rpartition(" ")
        if name and stamp.isdigit():
            last = name
    return last


def stamped(path: Path) -> list[tuple[str, int]]:
    """Every whole mark with its ``time.monotonic_ns`` stamp, in order."""
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        name, _, stamp = line.rpartition(" ")
        if name and stamp.isdigit():
            out.append((name, int(stamp)))
    return out


def marks(path: Path) -> list[str]:
    """Every whole mark, in order."""
    return [name for name, _ in stamped(path)]


async def marked_flow(
    grant: Grant, index: int, delay: float | None, **config: Any
) -> tuple[list[str], float]:
    """Run one marked flow; SIGKILL it ``delay`` s after the barrier if given.

    Returns the marks written and the kill time (ms after the barrier); unkilled, the
    time from the barrier to the flow's ``end`` mark.
    """
    path = grant.workdir / f"flow-{index}-{time.monotonic_ns()}"
    worker = await Worker.spawn(grant, "flow", index, marks=str(path), **config)
    await release_together([worker])
    released = time.monotonic_ns()
    kill_ms = 0.0
    if delay is None:
        event = await worker.done()
        if event["outcome"] != "ok":
            raise AssertionError(f"an unkilled flow failed: {event}")
        # the flow's own duration (CLOCK_MONOTONIC is one clock for both processes),
        # not the child's shutdown after it
        end = dict(stamped(path))["end"]
        kill_ms = (end - released) / 1e6
    else:
        await asyncio.sleep(delay)  # the fault's timing, not synchronisation
        kill_ms = (time.monotonic_ns() - released) / 1e6
        worker.kill()
        await asyncio.wait_for(worker.proc.wait(), WAIT_READY)
    return marks(path), kill_ms


@dataclass(frozen=True)
class FlowTrial:
    """One kill: the last mark the child wrote and what the parent found."""

    index: int
    delay_ms: float
    phase: str
    outcome: str
    lost: bool = False


@dataclass
class FlowReport:
    """Every trial of one flow, with the unkilled duration the delays were drawn from."""

    flow: str
    trials: list[FlowTrial] = field(default_factory=list)
    high_ms: float = 0.0

    def table(self) -> str:
        """Trials per (last mark, outcome)."""
        counts = Counter((t.phase, t.outcome) for t in self.trials)
        rows = [
            f"| {self.flow}: last mark before the kill | outcome | trials |",
            "|---|---|---|",
        ]
        rows += [
            f"| {phase} | {outcome} | {n} |"
            for (phase, outcome), n in sorted(counts.items())
        ]
        lost = sum(t.lost for t in self.trials)
        rows.append(f"| **total** | {lost} grants lost | {len(self.trials)} |")
        return "\n".join(rows) + (
            f"\nkill delays drawn uniformly from 0-{self.high_ms:.1f} ms after the barrier"
        )


Judge = Callable[[int, list[str], float], Awaitable[FlowTrial]]
Prepare = Callable[[int], Awaitable[dict[str, Any]]]


async def kill_flow(
    grant: Grant,
    name: str,
    *,
    trials: int,
    seed: int,
    prepare: Prepare,
    judge: Judge,
    calibration: int = 2,
) -> FlowReport:
    """Calibrate on unkilled runs, then kill ``trials`` runs at seeded random delays.

    ``prepare(index)`` sets the stage and returns the worker's flow config;
    ``judge(index, marks, kill_ms)`` inspects and resets for the next trial.
    """
    rng = random.Random(seed)
    durations = []
    for index in range(calibration):
        config = await prepare(-1 - index)
        _, ms = await marked_flow(grant, -1 - index, None, **config)
        durations.append(ms)
        await judge(-1 - index, [], ms)
    report = FlowReport(name, high_ms=1.2 * max(durations))
    for index in range(trials):
        config = await prepare(index)
        delay_ms = rng.uniform(0.0, report.high_ms)
        seen, kill_ms = await marked_flow(grant, index, delay_ms / 1e3, **config)
        report.trials.append(await judge(index, seen, kill_ms))
    return report


@dataclass
class Listener:
    """A loopback HTTP endpoint standing in for a *new* server URL.

    Records every request head and answers 401 without a challenge, so nothing there
    could ever hand out a grant; the test asserts no ``Authorization`` header arrived.
    """

    heads: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def authorizations(self) -> list[str]:
        return [
            head
            for head in self.heads
            if any(
                line.lower().startswith("authorization:") for line in head.splitlines()
            )
        ]

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head.decode("latin-1"))
            writer.write(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
                b"Connection: close\r\n\r\n"
            )
            await writer.drain()
        writer.close()

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls) -> AsyncIterator[Listener]:
        listener = cls()
        server = await asyncio.start_server(listener._serve, "127.0.0.1", 0)
        listener.port = server.sockets[0].getsockname()[1]
        try:
            yield listener
        finally:
            server.close()
            await server.wait_closed()
