"""The probe's report as text for a person, or JSON for a machine."""

from __future__ import annotations

import json
from collections import Counter

from tether.probe.report import ProbeReport

__all__ = ["render_report"]

_MARK = {"ok": "ok", "failed": "FAILED", "skipped": "skipped"}


def render_report(report: ProbeReport, *, as_json: bool) -> str:
    """The report as text (default) or JSON."""
    if as_json:
        return json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str)
    lines = [f"tether probe {report.url}"]
    for step in report.steps:
        lines.append(f"[{_MARK[step.status]}] {step.name}: {step.summary}".rstrip())
        lines.extend(f"    {req.line()}" for req in step.requests)
        for key, value in step.details.items():
            if key == "fix" or value in (None, [], {}, ""):
                continue
            if isinstance(value, list | dict):
                value = json.dumps(value, default=str)
            lines.append(f"    {key}: {value}")
        if step.error is not None:
            lines.append(
                f"    error: {step.error.get('code')}: {step.error.get('message')}"
            )
            if step.error.get("hint"):
                lines.append(f"    fix: {step.error['hint']}")
            tried = step.error.get("details", {}).get("tried")
            if tried:
                lines.append(f"    tried: {', '.join(map(str, tried))}")
    lines.append(f"requests: {_count(report)}")
    failed = report.failed_step
    if failed is None:
        lines.append("result: ok")
    else:
        lines.append(f"result: failed at {failed.name} (exit {report.exit_code})")
    return "\n".join(lines)


def _count(report: ProbeReport) -> str:
    """``8 (5 MCP, 3 AS)``: how many requests, by party (issue 9)."""
    requests = report.requests
    parties = Counter(r.party for r in requests)
    split = ", ".join(f"{n} {party}" for party, n in sorted(parties.items()))
    return f"{len(requests)} ({split})" if split else "0"
