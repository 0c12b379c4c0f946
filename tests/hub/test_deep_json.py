"""JSON nested 1,000+ deep in answers the hub reads itself is "not JSON", not a crash.

``json.loads`` raises ``RecursionError`` near 1,000 levels; the hub's two direct
parsers (the DPoP nonce error body and the -32022 ``supported`` list of a stateless
MCP server) go through :func:`tether.oauth._wire.load_json` instead (issue 11 item 6).
"""

from __future__ import annotations

import pytest

from tether.hub import dpop
from tether.mcp import tokenless
from tether.net.fetch import HttpResponse


def answer(body: bytes, status: int = 400) -> HttpResponse:
    return HttpResponse(
        status=status,
        headers={"content-type": ["application/json"]},
        body=body,
        url="https://mcp.example/mcp",
    )


@pytest.mark.parametrize("levels", [1_000, 100_000])
def test_deep_dpop_error_body_reads_as_no_body(levels: int) -> None:
    body = b'{"error":' * levels + b'"use_dpop_nonce"' + b"}" * levels
    assert dpop._members(answer(body)) is None


@pytest.mark.parametrize("levels", [1_000, 100_000])
def test_deep_unsupported_version_error_reads_as_no_list(levels: int) -> None:
    body = (
        b'{"error":{"code":-32022,"data":{"supported":'
        + b"[" * levels
        + b"]" * levels
        + b"}}}"
    )
    assert tokenless.supported_versions(answer(body).body) is None


def test_shallow_answers_still_parse() -> None:
    body = b'{"error":{"code":-32022,"data":{"supported":["2025-11-25"]}}}'
    assert tokenless.supported_versions(answer(body).body) == ["2025-11-25"]
    assert dpop._members(answer(b'{"error":"use_dpop_nonce"}')) == {
        "error": "use_dpop_nonce"
    }
