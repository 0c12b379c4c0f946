"""A small Prometheus text exposition (format 0.0.4) for the web service.

Counters and histograms live in this process; connection counts by status are read from
the store at scrape time, so every worker reports the same numbers for them. Tool calls
and token refreshes are observed on the :class:`~tether.hub.tether.Tether` the service
runs (:func:`instrument`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tether.errors import TetherError
from tether.hub.jobs import JobReport
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

    def render(
        self,
        connections: Mapping[str, int],
        jobs: Sequence[JobReport] = (),
        *,
        sessions: tuple[int, int] | None = None,
    ) -> str:
        """The exposition text.

        Args:
            connections: Connections by status (from the store).
            jobs: The background jobs' status in this process, with each lease's
                current holder (:meth:`tether.hub.jobs.Jobs.report`).
            sessions: This process's MCP sessions and how many of them hold a
                connection now (a session a fan-out listed keeps only its tool-list
                subscription; design-notes R6.4.7).
        """
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
        if sessions is not None:
            lines += [
                "# HELP tether_mcp_sessions MCP sessions held by this process.",
                "# TYPE tether_mcp_sessions gauge",
                f"tether_mcp_sessions {sessions[0]}",
                "# HELP tether_mcp_session_connections Of those, sessions holding an "
                "MCP connection now.",
                "# TYPE tether_mcp_session_connections gauge",
                f"tether_mcp_session_connections {sessions[1]}",
            ]
        lines += _job_lines(jobs)
        return "\n".join(lines) + "\n"


def _stamp(at: datetime | None) -> str:
    return "0" if at is None else f"{at.timestamp():.3f}"


_JOB_SERIES = (
    ("tether_job_runs_total", "counter", "Rounds of a job run in this process."),
    (
        "tether_job_lease_skips_total",
        "counter",
        "Rounds of a job skipped here because another worker held its lease.",
    ),
    (
        "tether_job_items_total",
        "counter",
        "Items (connections, servers) a job handled here, by outcome.",
    ),
    (
        "tether_job_last_run_items",
        "gauge",
        "Items the job's last round here handled, by outcome.",
    ),
    (
        "tether_job_last_run_started_timestamp_seconds",
        "gauge",
        "Start of the job's last round here (0: never).",
    ),
    (
        "tether_job_last_run_finished_timestamp_seconds",
        "gauge",
        "End of the job's last round here (0: never or running).",
    ),
    (
        "tether_job_last_run_success",
        "gauge",
        "1 if the job's last round here had no failure, else 0.",
    ),
    (
        "tether_job_next_run_timestamp_seconds",
        "gauge",
        "When this process next tries the job (0: not scheduled).",
    ),
    (
        "tether_job_lease_held",
        "gauge",
        "1 if this process holds the job's lease, else 0.",
    ),
    (
        "tether_job_lease_holder_info",
        "gauge",
        "The worker holding the job's lease now (1 per job; none when free).",
    ),
)


def _job_lines(jobs: Sequence[JobReport]) -> list[str]:
    series: dict[str, list[str]] = {name: [] for name, _, _ in _JOB_SERIES}
    for report in jobs:
        s = report.status
        job = s.name
        series["tether_job_runs_total"].append(f"{_labels(job=job)} {s.runs}")
        series["tether_job_lease_skips_total"].append(
            f"{_labels(job=job)} {s.lease_skips}"
        )
        for outcome, total, last in (
            ("ok", s.ok, s.last.ok),
            ("failed", s.failed, s.last.failed),
            ("skipped", s.skipped, s.last.skipped),
        ):
            label = _labels(job=job, outcome=outcome)
            series["tether_job_items_total"].append(f"{label} {total}")
            series["tether_job_last_run_items"].append(f"{label} {last}")
        series["tether_job_last_run_started_timestamp_seconds"].append(
            f"{_labels(job=job)} {_stamp(s.last_started)}"
        )
        series["tether_job_last_run_finished_timestamp_seconds"].append(
            f"{_labels(job=job)} {_stamp(s.last_finished)}"
        )
        if s.last_outcome is not None:
            ok = 1 if s.last_outcome == "ok" else 0
            series["tether_job_last_run_success"].append(f"{_labels(job=job)} {ok}")
        series["tether_job_next_run_timestamp_seconds"].append(
            f"{_labels(job=job)} {_stamp(s.next_run)}"
        )
        series["tether_job_lease_held"].append(
            f"{_labels(job=job)} {1 if report.held_here else 0}"
        )
        if report.holder is not None:
            label = _labels(job=job, holder=report.holder)
            series["tether_job_lease_holder_info"].append(f"{label} 1")
    lines: list[str] = []
    for name, kind, text in _JOB_SERIES:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        lines += [name + sample for sample in series[name]]
    return lines


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
