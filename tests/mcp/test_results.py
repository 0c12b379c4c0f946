"""Tests for tether.mcp.results: result normalisation and model-visible errors."""

from __future__ import annotations

import base64
import json
from typing import Any

import mcp.types as mt
import pytest

from tether import errors
from tether.mcp.results import (
    ToolErrorCode,
    ToolResult,
    error_result,
    normalize_result,
    result_from_error,
    scrub,
)

PNG = base64.b64encode(b"\x89PNG" + b"\0" * 996).decode()  # 1000 bytes


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        pytest.param({"content": [text("hello")]}, "hello", id="text"),
        pytest.param(
            {"content": [text("a"), text(""), text("b")]}, "a\nb", id="texts-joined"
        ),
        pytest.param(
            {"content": [{"type": "image", "data": PNG, "mimeType": "image/png"}]},
            '{"type": "image", "size": 1000, "mimeType": "image/png"}',
            id="image",
        ),
        pytest.param(
            {
                "content": [
                    {
                        "type": "audio",
                        "data": "AAE=",
                        "mimeType": "audio/wav",
                        "annotations": {"audience": ["user"]},
                        "_meta": {"x": 1},
                    }
                ]
            },
            '{"type": "audio", "size": 2, "mimeType": "audio/wav"}',
            id="audio",
        ),
        pytest.param(
            {
                "content": [
                    {
                        "type": "resource",
                        "resource": {
                            "uri": "file:///a.txt",
                            "mimeType": "text/plain",
                            "text": "inside",
                        },
                    }
                ]
            },
            '{"type": "resource", "resource": {"uri": "file:///a.txt",'
            ' "mimeType": "text/plain", "text": "inside"}}',
            id="text-resource",
        ),
        pytest.param(
            {
                "content": [
                    {
                        "type": "resource",
                        "resource": {"uri": "file:///a.bin", "blob": "AAECAw=="},
                    }
                ]
            },
            '{"type": "resource", "resource": {"uri": "file:///a.bin", "size": 4}}',
            id="blob-resource",
        ),
        pytest.param(
            {
                "content": [
                    {
                        "type": "resource_link",
                        "uri": "https://x.example/doc",
                        "name": "doc",
                        "description": None,
                    }
                ]
            },
            '{"type": "resource_link", "uri": "https://x.example/doc", "name": "doc"}',
            id="resource-link",
        ),
        pytest.param(
            {"content": [text("see"), {"type": "image", "data": "", "mimeType": "x"}]},
            'see\n{"type": "image", "size": 0, "mimeType": "x"}',
            id="mixed",
        ),
        pytest.param(
            {"content": [{"type": "future", "value": [1, "ü"]}]},
            '{"type": "future", "value": [1, "ü"]}',
            id="unknown-type",
        ),
        pytest.param(
            {
                "content": [
                    None,
                    5,
                    "raw",
                    {"type": "image"},
                    {"type": "text", "text": 3},
                ]
            },
            '5\n"raw"\n{"type": "text", "text": 3}',
            id="malformed-items",
        ),
        pytest.param(
            {"content": [], "structuredContent": {"temp": 21}},
            '{"temp": 21}',
            id="structured-when-no-content",
        ),
        pytest.param(
            {"content": [text("t")], "structuredContent": {"temp": 21}},
            "t",
            id="content-wins-over-structured",
        ),
        pytest.param(
            {"content": [], "structuredContent": []},
            "[]",
            id="structured-empty-list",
        ),
        pytest.param({"content": []}, '{"content": []}', id="whole-result"),
        pytest.param({}, "{}", id="empty-result"),
        pytest.param(
            {"content": "junk", "isError": False},
            '{"content": "junk", "isError": false}',
            id="junk-content",
        ),
    ],
)
def test_normalize_text(result: dict[str, Any], expected: str) -> None:
    normalized = normalize_result(result)
    assert normalized.text == expected
    assert normalized.raw == result
    assert normalized.is_error is False
    assert normalized.error_code is None


def test_binary_data_is_never_copied() -> None:
    big = base64.b64encode(b"x" * 3_000_000).decode()
    result = {"content": [{"type": "image", "data": big, "mimeType": "image/jpeg"}]}
    normalized = normalize_result(result)
    assert len(normalized.text) < 100
    assert json.loads(normalized.text)["size"] == 3_000_000


@pytest.mark.parametrize(
    ("is_error", "expected"),
    [(True, True), (False, False), (None, False), ("missing", False), (1, True)],
)
def test_is_error(is_error: object, expected: bool) -> None:
    result: dict[str, Any] = {"content": [text("boom")]}
    if is_error != "missing":
        result["isError"] = is_error
    normalized = normalize_result(result)
    assert normalized.is_error is expected
    assert normalized.error_code == ("tool_error" if expected else None)
    payload = {"status": "error", "error": "boom"} if expected else {"result": "boom"}
    assert normalized.to_model() == payload


def test_structured_content_is_kept() -> None:
    normalized = normalize_result(
        {"content": [text("21 degrees")], "structuredContent": {"temp": 21}}
    )
    assert normalized.structured == {"temp": 21}


def test_sdk_model_is_accepted() -> None:
    result = mt.CallToolResult(
        content=[
            mt.TextContent(text="hi"),
            mt.ImageContent(data="aGVsbG8=", mime_type="image/png"),
            mt.EmbeddedResource(
                resource=mt.BlobResourceContents(uri="file:///b", blob="AAAA")
            ),
        ],
        structured_content={"k": "v"},
        is_error=True,
    )
    normalized = normalize_result(result)
    assert normalized.text.splitlines() == [
        "hi",
        '{"type": "image", "size": 5, "mimeType": "image/png"}',
        '{"type": "resource", "resource": {"uri": "file:///b", "size": 3}}',
    ]
    assert normalized.is_error is True
    assert normalized.structured == {"k": "v"}
    assert normalized.raw is not None
    assert normalized.raw["isError"] is True


def test_input_is_not_mutated() -> None:
    item = {"type": "image", "data": PNG, "mimeType": "image/png"}
    result = {"content": [item]}
    normalize_result(result)
    assert result == {
        "content": [{"type": "image", "data": PNG, "mimeType": "image/png"}]
    }


SECRET = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"

E = errors


ERROR_CODES: list[tuple[errors.TetherError, str]] = [
    (E.TetherError("x"), "internal"),
    (E.UsageError("x"), "internal"),
    (E.NotFound("x"), "unknown_tool"),
    (E.Unauthenticated("x"), "internal"),  # web API access, never from a tool call
    (E.Forbidden("x"), "internal"),
    (E.ValidationFailed("x"), "invalid_arguments"),
    (E.ConfigurationError("x"), "configuration"),
    (E.AuthorizationRequired("x"), "authorization_required"),
    (E.StepUpRequired("x"), "step_up_required"),
    (E.CallbackRejected("x"), "internal"),
    (E.BlockedDestination("x"), "blocked_destination"),
    (E.RemoteError("x"), "server_error"),
    (E.DiscoveryError("x"), "server_error"),
    (E.InvalidResponse("x"), "server_error"),
    (E.SkillVerificationFailed("x"), "server_error"),
    (E.OAuthError("x"), "server_error"),
    (E.InvalidRequest("x"), "server_error"),
    (E.InvalidClient("x"), "server_error"),
    (E.InvalidGrant("x"), "authorization_required"),
    (E.UnauthorizedClient("x"), "server_error"),
    (E.UnsupportedGrantType("x"), "server_error"),
    (E.InvalidScope("x"), "server_error"),
    (E.AccessDenied("x"), "server_error"),
    (E.InvalidTarget("x"), "server_error"),
    (E.ServerError("x"), "server_error"),
    (E.TemporarilyUnavailable("x"), "server_error"),
    (E.MCPProtocolError("x"), "jsonrpc_error"),
    (E.SessionExpired("x"), "session_expired"),
    (E.NetworkError("x"), "network"),
    (E.RequestTimeout("x"), "timeout"),
    (E.ResponseTooLarge("x"), "response_too_large"),
    (E.StorageError("x"), "internal"),
    (E.VersionConflict("x"), "internal"),
    (E.DecryptionError("x"), "internal"),
]


@pytest.mark.parametrize(
    ("error", "code"),
    ERROR_CODES,
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_result_from_error(error: errors.TetherError, code: str) -> None:
    result = result_from_error(error)
    assert result.is_error is True
    assert result.error_code == code
    assert result.raw is None
    assert result.text
    assert result.to_model()["status"] == "error"


def test_every_error_class_is_in_the_table() -> None:
    exported = [getattr(errors, name) for name in errors.__all__]
    classes = {c for c in exported if isinstance(c, type)}
    assert {type(error) for error, _ in ERROR_CODES} == classes


@pytest.mark.parametrize(
    "error",
    [
        E.AuthorizationRequired(f"token {SECRET} rejected", server="https://a.example"),
        E.InvalidGrant(f"refresh_token=abc{SECRET}", error_description=SECRET),
        E.NetworkError(f"Authorization: Bearer {SECRET}", hint=SECRET),
        E.TetherError(SECRET, details={"token": SECRET}),
        E.StepUpRequired(SECRET, details={"required_scopes": ["a"]}),
    ],
)
def test_error_text_never_contains_exception_details(error: errors.TetherError) -> None:
    result = result_from_error(error)
    assert SECRET not in result.text
    assert "abc" not in result.text
    assert "https://a.example" not in result.text


def test_jsonrpc_message_is_passed_on_scrubbed() -> None:
    error = E.MCPProtocolError(
        f"JSON-RPC error -32602: Unknown tool: frob (Authorization: Bearer {SECRET})"
    )
    result = result_from_error(error)
    assert "-32602: Unknown tool: frob" in result.text
    assert SECRET not in result.text
    assert "Bearer [redacted]" in result.text


def test_validation_fields_are_listed() -> None:
    error = E.ValidationFailed("bad", fields={"query": "missing", "limit": "too big"})
    assert result_from_error(error).text.endswith("Problem fields: limit, query.")
    assert "Problem fields" not in result_from_error(E.ValidationFailed("bad")).text


def test_code_override() -> None:
    result = result_from_error(
        E.UsageError("disabled"), code=ToolErrorCode.SERVER_DISABLED
    )
    assert result.error_code == "server_disabled"
    assert result.text == "This tool's server is disabled."


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (
            ToolErrorCode.TIMEOUT,
            None,
            "The tool server did not answer in time. Try again later.",
        ),
        (
            "unknown_tool",
            None,
            "There is no tool with this name. Use one of the tools offered.",
        ),
        ("made_up", None, "The tool call failed."),
        ("made_up", "Custom text.", "Custom text."),
        (ToolErrorCode.TOOL_ERROR, f"key={SECRET}", "key=[redacted]"),
    ],
)
def test_error_result(code: str, message: str | None, expected: str) -> None:
    result = error_result(code, message)
    assert result == ToolResult(text=expected, is_error=True, error_code=str(code))


def test_every_code_has_a_message() -> None:
    for code in ToolErrorCode:
        assert error_result(code).text != "The tool call failed."


@pytest.mark.parametrize(
    ("text_in", "expected"),
    [
        ("plain words stay", "plain words stay"),
        ("Authorization: Bearer abc.DEF-123", "Authorization: Bearer [redacted]"),
        ("basic dXNlcjpwYXNz", "basic [redacted]"),
        ("?access_token=abc&x=1", "?access_token=[redacted]&x=1"),
        ('{"client_secret": "s3cr3t"}', '{"client_secret": "[redacted]"}'),
        ("password: hunter2", "password: [redacted]"),
        ("api-key=k1", "api-key=[redacted]"),
        ("code_verifier=v", "code_verifier=[redacted]"),
        (f"jwt {SECRET}", "jwt [redacted]"),
        ("key sk_LiveAbCdEfGh1234567890abcdefGHIJ", "key [redacted]"),
        ("hex 0123456789abcdef0123456789abcdef", "hex [redacted]"),
        ("error code: -32602", "error code: -32602"),
        (
            "very_long_identifier_name_that_is_fine_2",
            "very_long_identifier_name_that_is_fine_2",
        ),
    ],
)
def test_scrub(text_in: str, expected: str) -> None:
    assert scrub(text_in) == expected


def test_scrub_caps_length() -> None:
    result = scrub("word " * 500)
    assert len(result) == 300
    assert result.endswith("…")
