"""The era evidence in a 4xx body (Streamable HTTP 07 "Backward Compatibility")."""

from __future__ import annotations

import json

import pytest

from tether.mcp.tokenless import is_modern_error, retry_version


def error(code: object) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "error": {"code": code}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "modern"),
    [
        (400, error(-32020), True),  # HeaderMismatch
        (400, error(-32021), True),  # MissingRequiredClientCapability
        (400, error(-32022), True),  # UnsupportedProtocolVersion
        (404, error(-32601), True),  # a modern server that lacks the method
        (400, error(-32601), False),
        (400, error(-32600), False),  # an older server's "Bad Request"
        (400, error(True), False),
        (400, error("-32022"), False),
        (400, b"", False),
        (405, b"Method Not Allowed", False),
        (400, b'{"error": "no"}', False),
        (400, b"[" * 100 + b"]" * 100, False),  # deeper than any error body
    ],
)
def test_is_modern_error(status: int, body: bytes, modern: bool) -> None:
    assert is_modern_error(status, body) is modern


def test_retry_version_prefers_the_stateless_revisions() -> None:
    assert retry_version(["2025-06-18", "2026-07-28"]) == "2026-07-28"
    assert retry_version(["2025-03-26", "2025-06-18"]) == "2025-06-18"
    assert retry_version(["1999-01-01"]) is None
