"""Tool call results as text a model can read, and model-visible errors.

MCP has two error channels (MCP 2025-11-25 and 2026-07-28, *Tools*, "Error Handling"):
protocol errors are JSON-RPC ``error`` objects, tool execution errors are a normal
``CallToolResult`` with ``isError: true``. Tether turns both, and every local failure of a
call (timeout, network, authorization, …), into a :class:`ToolResult`, so the model sees
a short safe text and the reply goes on (design-notes R3.17, G-25; design-notes D3.7).

:func:`normalize_result` follows design-notes R3.17 step 3: the ``text`` of every
text item, and a compact JSON description of every other item (binary data summarised as
its size, never copied), joined with newlines; if that is empty, the JSON of
``structuredContent``; if still empty, the whole result as JSON. A missing ``isError``
means false (``CallToolResult`` schema).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from mcp.types import CallToolResult
from pydantic import BaseModel

from tether.errors import (
    AuthorizationRequired,
    BlockedDestination,
    ConfigurationError,
    DecryptionError,
    InvalidGrant,
    MCPProtocolError,
    NetworkError,
    NotFound,
    PermissionDenied,
    RemoteError,
    RequestTimeout,
    ResponseTooLarge,
    SessionExpired,
    StepUpRequired,
    StorageError,
    TetherError,
    ValidationFailed,
)

__all__ = [
    "ToolErrorCode",
    "ToolResult",
    "error_result",
    "normalize_result",
    "result_from_error",
    "scrub",
]


class ToolErrorCode(StrEnum):
    """Stable codes for a failed tool call; the hub, logs and metrics switch on them."""

    TOOL_ERROR = "tool_error"
    """The tool ran and reported a failure (``isError: true``)."""
    TIMEOUT = "timeout"
    NETWORK = "network"
    RESPONSE_TOO_LARGE = "response_too_large"
    JSONRPC_ERROR = "jsonrpc_error"
    SESSION_EXPIRED = "session_expired"
    AUTHORIZATION_REQUIRED = "authorization_required"
    STEP_UP_REQUIRED = "step_up_required"
    FORBIDDEN = "forbidden"
    """The server refused this one call (HTTP 403); nothing else changed."""
    UNAVAILABLE = "unavailable"
    """Tether's store was busy or failing; the call can be retried."""
    UNKNOWN_TOOL = "unknown_tool"
    INVALID_ARGUMENTS = "invalid_arguments"
    SERVER_DISABLED = "server_disabled"
    BLOCKED_DESTINATION = "blocked_destination"
    SERVER_ERROR = "server_error"
    CONFIGURATION = "configuration"
    INTERNAL = "internal"


@dataclass(frozen=True)
class ToolResult:
    """A tool call's outcome, ready for the model.

    Attributes:
        text: What the model reads.
        is_error: Whether the call failed (tool error or local failure).
        error_code: A :class:`ToolErrorCode` value when ``is_error``, else ``None``.
        raw: The ``CallToolResult`` as a wire dict, or ``None`` for local failures.
        structured: The result's ``structuredContent``, if any.
    """

    text: str
    is_error: bool = False
    error_code: str | None = None
    raw: Mapping[str, Any] | None = None
    structured: Any = None

    def to_model(self) -> dict[str, str]:
        """Return the payload the model sees (design-notes R3.17 step 4).

        Returns:
            ``{"status": "error", "error": text}`` on failure, else ``{"result": text}``.
        """
        if self.is_error:
            return {"status": "error", "error": self.text}
        return {"result": self.text}


# --------------------------------------------------------------------- results

_BINARY_KEYS: Final = ("data", "blob")
_NOISE_KEYS: Final = ("_meta", "annotations")


def normalize_result(result: Mapping[str, Any] | CallToolResult) -> ToolResult:
    """Turn a ``CallToolResult`` into text for the model.

    Args:
        result: The result as a wire dict (camelCase keys) or an SDK model.

    Returns:
        The normalised result; ``error_code`` is ``"tool_error"`` when ``isError``.
    """
    raw = _as_dict(result)
    is_error = bool(raw.get("isError"))
    structured = raw.get("structuredContent")
    content = raw.get("content")
    parts = [_item_text(item) for item in content] if isinstance(content, list) else []
    text = "\n".join(part for part in parts if part)
    if not text and structured is not None:
        text = _json(structured)
    if not text:
        text = _json(raw)
    return ToolResult(
        text=text,
        is_error=is_error,
        error_code=ToolErrorCode.TOOL_ERROR.value if is_error else None,
        raw=raw,
        structured=structured,
    )


def _as_dict(result: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dict(result)


def _item_text(item: Any) -> str:
    if not isinstance(item, Mapping):
        return "" if item is None else _json(item)
    if item.get("type") == "text" and isinstance(item.get("text"), str):
        return str(item["text"])
    summary = _summarise(item)
    return _json(summary) if any(k != "type" for k in summary) else ""


def _summarise(item: Mapping[str, Any]) -> dict[str, Any]:
    """Copy an item without ``_meta``/annotations and with binary data as a size."""
    out: dict[str, Any] = {}
    for key, value in item.items():
        if key in _NOISE_KEYS or value is None:
            continue
        if key in _BINARY_KEYS and isinstance(value, str):
            out["size"] = _decoded_size(value)
        elif isinstance(value, Mapping):
            out[key] = _summarise(value)
        else:
            out[key] = value
    return out


def _decoded_size(data: str) -> int:
    """Bytes in a base64 string, without decoding it (RFC 4648 §4)."""
    text = data.strip()
    return max(0, len(text) * 3 // 4 - (len(text) - len(text.rstrip("="))))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


# --------------------------------------------------------------------- errors

_MESSAGES: Final[Mapping[ToolErrorCode, str]] = {
    ToolErrorCode.TOOL_ERROR: "The tool reported an error.",
    ToolErrorCode.TIMEOUT: "The tool server did not answer in time. Try again later.",
    ToolErrorCode.NETWORK: "The tool server could not be reached. Try again later.",
    ToolErrorCode.RESPONSE_TOO_LARGE: "The tool's answer was too large to accept.",
    ToolErrorCode.JSONRPC_ERROR: "The tool server rejected the call.",
    ToolErrorCode.SESSION_EXPIRED: "The session with the tool server was lost. "
    "Try again.",
    ToolErrorCode.AUTHORIZATION_REQUIRED: "This tool's server is not connected for "
    "this user. Ask the user to connect it, then try again.",
    ToolErrorCode.STEP_UP_REQUIRED: "This tool needs permissions the user has not "
    "granted. Ask the user to reconnect the server and approve them.",
    ToolErrorCode.UNKNOWN_TOOL: "There is no tool with this name. Use one of the "
    "tools offered.",
    ToolErrorCode.INVALID_ARGUMENTS: "The arguments do not match the tool's input "
    "schema. Fix them and try again.",
    ToolErrorCode.SERVER_DISABLED: "This tool's server is disabled.",
    ToolErrorCode.BLOCKED_DESTINATION: "This tool's server address is not allowed.",
    ToolErrorCode.SERVER_ERROR: "The tool server answered with an error.",
    ToolErrorCode.FORBIDDEN: "The tool server refused this call for the connected "
    "account (HTTP 403). Other tools may still work.",
    ToolErrorCode.UNAVAILABLE: "The tool could not be called right now. Try again "
    "shortly.",
    ToolErrorCode.CONFIGURATION: "This tool's server is not configured correctly. "
    "An administrator must fix it.",
    ToolErrorCode.INTERNAL: "The tool could not be called because of an internal "
    "error.",
}

# Most specific first; a class matches its subclasses.
_ERROR_CODES: Final[tuple[tuple[type[TetherError], ToolErrorCode], ...]] = (
    (StepUpRequired, ToolErrorCode.STEP_UP_REQUIRED),
    (AuthorizationRequired, ToolErrorCode.AUTHORIZATION_REQUIRED),
    (InvalidGrant, ToolErrorCode.AUTHORIZATION_REQUIRED),  # refresh token is dead
    (RequestTimeout, ToolErrorCode.TIMEOUT),
    (ResponseTooLarge, ToolErrorCode.RESPONSE_TOO_LARGE),
    (NetworkError, ToolErrorCode.NETWORK),
    (SessionExpired, ToolErrorCode.SESSION_EXPIRED),
    (PermissionDenied, ToolErrorCode.FORBIDDEN),
    (MCPProtocolError, ToolErrorCode.JSONRPC_ERROR),
    (RemoteError, ToolErrorCode.SERVER_ERROR),
    (ValidationFailed, ToolErrorCode.INVALID_ARGUMENTS),
    (NotFound, ToolErrorCode.UNKNOWN_TOOL),
    (BlockedDestination, ToolErrorCode.BLOCKED_DESTINATION),
    (ConfigurationError, ToolErrorCode.CONFIGURATION),
    (DecryptionError, ToolErrorCode.CONFIGURATION),  # a wrong or missing key
    (StorageError, ToolErrorCode.UNAVAILABLE),  # a lost compare-and-set included
)

_MAX_DETAIL: Final = 300
_OPAQUE: Final = r"[A-Za-z0-9+/_=-]"
_SECRETS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    (
        re.compile(
            r"(?i)\b([a-z_]*(?:token|secret|password|api[_-]?key|code_verifier)"
            r"[\"']?\s*[=:]\s*[\"']?)[^\s&\"',;]+"
        ),
        r"\1[redacted]",
    ),
    # A JWT, then long opaque strings that mix case and digits, then long hex.
    (re.compile(r"[\w-]{10,}\.[\w-]{10,}\.[\w-]{10,}"), "[redacted]"),
    (
        re.compile(
            rf"(?={_OPAQUE}*\d)(?={_OPAQUE}*[a-z])(?={_OPAQUE}*[A-Z]){_OPAQUE}{{32,}}"
        ),
        "[redacted]",
    ),
    (re.compile(r"\b[0-9a-fA-F]{32,}\b"), "[redacted]"),
)
_CODES: Final = frozenset(code.value for code in ToolErrorCode)


def error_result(code: ToolErrorCode | str, message: str | None = None) -> ToolResult:
    """Build a model-visible error result.

    Args:
        code: A :class:`ToolErrorCode` (or another stable code).
        message: Text for the model; defaults to the code's standard message. It is
            scrubbed of anything that looks like a token and cut to 300 characters.

    Returns:
        A failed :class:`ToolResult` with no ``raw`` result.
    """
    if message is None:
        known = code in _CODES
        message = _MESSAGES[ToolErrorCode(code)] if known else "The tool call failed."
    return ToolResult(text=scrub(message), is_error=True, error_code=str(code))


def result_from_error(
    error: TetherError, *, code: ToolErrorCode | None = None
) -> ToolResult:
    """Turn an error raised while calling a tool into a model-visible result (G-25).

    The text is the code's standard message. For invalid arguments the field names are
    added, and for a JSON-RPC error the server's message (scrubbed) so the model can
    correct itself (MCP *Tools*: clients MAY pass protocol errors to the model). Nothing
    else from the exception reaches the model; log the exception itself.

    Args:
        error: The failure.
        code: Overrides the code derived from the error's class (for example
            ``SERVER_DISABLED`` for a usage error the hub raised).

    Returns:
        A failed :class:`ToolResult`.
    """
    if code is None:
        code = next(
            (c for klass, c in _ERROR_CODES if isinstance(error, klass)),
            ToolErrorCode.INTERNAL,
        )
    message = _MESSAGES[code]
    if code is ToolErrorCode.INVALID_ARGUMENTS and isinstance(error, ValidationFailed):
        fields = error.details.get("fields")
        if isinstance(fields, Mapping) and fields:
            message += " Problem fields: " + ", ".join(sorted(map(str, fields))) + "."
    elif code is ToolErrorCode.JSONRPC_ERROR:
        message += f" Server said: {error.message}"
    return error_result(code, message)


def scrub(text: str) -> str:
    """Mask anything in ``text`` that looks like a credential, then cap its length.

    Args:
        text: Text that may quote a remote party.

    Returns:
        The text with bearer tokens, ``token=…``-style values, JWTs and long opaque
        strings replaced by ``[redacted]``, at most 300 characters.
    """
    text = text[: 4 * _MAX_DETAIL]  # bounds the regex work
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    if len(text) > _MAX_DETAIL:
        text = text[: _MAX_DETAIL - 1] + "…"
    return text
