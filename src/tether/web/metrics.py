"""A small Prometheus text exposition (format 0.0.4) for the web service.

Counters and histograms live in this process; connection counts by status are read from
the store at scrape time, so every worker reports the same numbers for them. Tool calls
and token refreshes are observed on the :class:`~tether.hub.tether.Tether` the service
runs (:func:`instrument`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tether.errors import TetherError
from tether.hub.tether import Tether
from tether.mcp.results import ToolResult

__all__ = ["CONTENT_TYPE", "Metrics", "instrument"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _labels(**labels: str) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in sorted(labels.items())) + "}"


@dataclass
class Histogram:
    """Cumulative buckets, sum and count for one label set."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        """Add one observation."""
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
        self.total += seconds
        self.count += 1


class Metrics:
    """The service's counters; :meth:`render` writes the exposition text."""

    def __init__(self) -> None:
        self.tool_calls: Counter[str] = Counter()
        self.tool_latency: dict[str, Histogram] = {}
        self.refreshes: Counter[str] = Counter()
        self.lease_waits = Histogram()

    def tool_call(self, outcome: str, seconds: float) -> None:
        """Count one tool call and its latency."""
        self.tool_calls[outcome] += 1
        self.tool_latency.setdefault(outcome, Histogram()).observe(seconds)

    def refresh(self, outcome: str) -> None:
        """Count one token refresh attempt at an authorization server."""
        self.refreshes[outcome] += 1

    def lease_wait(self, seconds: float) -> None:
        """Observe how long a refresh waited for its connection's lease."""
        self.lease_waits.observe(seconds)

    def render(self, connections: Mapping[str, int]) -> str:
        """The exposition text; ``connections`` counts connections by status."""
        lines = [
            "# HELP tether_tool_calls_total Tool calls by outcome.",
            "# TYPE tether_tool_calls_total counter",
        ]
        for outcome, n in sorted(self.tool_calls.items()):
            lines.append(f"tether_tool_calls_total{_labels(outcome=outcome)} {n}")
        lines += [
            "# HELP tether_tool_call_seconds Tool call latency by outcome.",
            "# TYPE tether_tool_call_seconds histogram",
        ]
        for outcome, h in sorted(self.tool_latency.items()):
            for bound, n in zip(BUCKETS, h.buckets, strict=True):
                label = _labels(outcome=outcome, le=repr(bound))
                lines.append(f"tether_tool_call_seconds_bucket{label} {n}")
            inf = _labels(outcome=outcome, le="+Inf")
            lines.append(f"tether_tool_call_seconds_bucket{inf} {h.count}")
            lines.append(
                f"tether_tool_call_seconds_sum{_labels(outcome=outcome)} {h.total}"
            )
            lines.append(
                f"tether_tool_call_seconds_count{_labels(outcome=outcome)} {h.count}"
            )
        lines += [
            "# HELP tether_refreshes_total Token refreshes by outcome.",
            "# TYPE tether_refreshes_total counter",
        ]
        for outcome, n in sorted(self.refreshes.items()):
            lines.append(f"tether_refreshes_total{_labels(outcome=outcome)} {n}")
        h = self.lease_waits
        lines += [
            "# HELP tether_lease_wait_seconds Time a refresh waited for its lease.",
            "# TYPE tether_lease_wait_seconds histogram",
        ]
        for bound, n in zip(BUCKETS, h.buckets, strict=True):
            lines.append(
                f"tether_lease_wait_seconds_bucket{_labels(le=repr(bound))} {n}"
            )
        lines.append(f'tether_lease_wait_seconds_bucket{{le="+Inf"}} {h.count}')
        lines.append(f"tether_lease_wait_seconds_sum {h.total}")
        lines.append(f"tether_lease_wait_seconds_count {h.count}")
        lines += [
            "# HELP tether_connections Connections by status (from the store).",
            "# TYPE tether_connections gauge",
        ]
        for status, n in sorted(connections.items()):
            lines.append(f"tether_connections{_labels(status=status)} {n}")
        return "\n".join(lines) + "\n"


def _outcome(result: ToolResult) -> str:
    return "error" if result.is_error else "ok"


def instrument(tether: Tether, metrics: Metrics) -> None:
    """Observe ``tether``'s tool calls and refreshes into ``metrics``.

    Wraps the two hub entry points every call and refresh goes through: the tool
    registry's ``call`` and the connections' network refresh step.
    """
    call = tether.tools.call

    async def timed_call(*args: Any, **kwargs: Any) -> ToolResult:
        started = time.perf_counter()
        try:
            result = await call(*args, **kwargs)
        except TetherError:
            metrics.tool_call("error", time.perf_counter() - started)
            raise
        metrics.tool_call(_outcome(result), time.perf_counter() - started)
        return result

    def observe(event: str, value: float) -> None:
        if event == "lease_wait":
            metrics.lease_wait(value)
        elif event.startswith("refresh."):
            metrics.refresh(event.removeprefix("refresh."))

    tether.connections.observer = observe
    setattr(tether.tools, "call", timed_call)  # noqa: B010
