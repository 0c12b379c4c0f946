"""Masked JSON logs and the Prometheus exposition."""

from __future__ import annotations

import json
import logging

import pytest

from tether.web.logs import JsonFormatter, mask_secrets
from tether.web.metrics import Metrics


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
            "eyJhbGciOiJIUzI1NiJ9",
        ),
        ("GET /oauth/callback?code=abc123xyz&state=st4te", "abc123xyz"),
        ("GET /oauth/callback?code=abc123xyz&state=st4te", "st4te"),
        ('{"refresh_token": "rt-123456"}', "rt-123456"),
        ('{"value": "sk-live-999"}', "sk-live-999"),
        ("key tk_0123456789ab_AbCdEfGhIjKlMnOp used", "AbCdEfGhIjKlMnOp"),
        ("client_secret=hunter2", "hunter2"),
        ("DPoP abcdefghijkl", "abcdefghijkl"),
    ],
)
def test_secrets_are_masked(text: str, secret: str) -> None:
    masked = mask_secrets(text)
    assert secret not in masked
    assert "********" in masked


def test_log_lines_are_json_and_masked() -> None:
    record = logging.LogRecord(
        "tether.web",
        logging.WARNING,
        __file__,
        1,
        "callback %s failed",
        ("?code=zzz999",),
        None,
    )
    record.server = "jira"
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning"
    assert line["logger"] == "tether.web"
    assert line["server"] == "jira"
    assert "zzz999" not in line["msg"]


def test_exposition() -> None:
    m = Metrics()
    m.tool_call("ok", 0.02)
    m.tool_call("ok", 3.0)
    m.tool_call("error", 0.5)
    m.refresh("ok")
    m.refresh("needs_reauth")
    text = m.render({"connected": 2, "needs_reauth": 1}, sessions=(90, 3))
    assert 'tether_tool_calls_total{outcome="ok"} 2' in text
    assert 'tether_tool_call_seconds_bucket{le="0.025",outcome="ok"} 1' in text
    assert 'tether_tool_call_seconds_bucket{le="5.0",outcome="ok"} 2' in text
    assert 'tether_tool_call_seconds_bucket{le="+Inf",outcome="error"} 1' in text
    assert 'tether_refreshes_total{outcome="needs_reauth"} 1' in text
    assert 'tether_connections{status="connected"} 2' in text
    assert "tether_mcp_sessions 90\n" in text
    assert "tether_mcp_session_connections 3\n" in text
    assert "# TYPE tether_tool_call_seconds histogram" in text
    assert text.endswith("\n")
