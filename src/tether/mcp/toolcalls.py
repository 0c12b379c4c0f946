"""The agent loop's glue, pure part: tool calls out of a model response, results back in.

An LLM answers with tool calls in its provider's format; the application runs them and
sends the results back in the same provider's format. This module does the two pure
halves (no I/O); :func:`tether.hub.agent.run_tool_calls` runs the calls in between.

Reading (:func:`parse_tool_calls`) accepts plain dicts and the official SDKs' response
objects (anything with ``model_dump()``, without importing the SDKs):

- OpenAI Chat Completions (TOOL-6): a ``ChatCompletion`` (its first choice) or an
  assistant message; each ``tool_calls`` entry of type ``function`` (``{"id",
  "function": {"name", "arguments": <JSON string>}}``);
- OpenAI Responses (TOOL-7): a ``Response`` or its ``output`` list; each item of type
  ``function_call`` (``{"call_id", "name", "arguments": <JSON string>}``), other items
  (messages, reasoning, built-in tool calls) are not ours and are skipped;
- Anthropic Messages (TOOL-8): a ``Message`` or its ``content`` list; each block of type
  ``tool_use`` (``{"id", "name", "input": {...}}``), text and thinking blocks skipped.

Calls of other types (a Chat Completions ``custom`` tool call, a Responses
``custom_tool_call``) are the host application's own: Tether offers function tools only,
so they are skipped. A call that cannot run (arguments that are not JSON, or not a JSON
object; no tool name) is kept with its error result, so it is
answered like any other (TOOL-9). Only a response that is not in the provider's format
at all, or a call without an id (which nothing could answer), raises.

Writing (:func:`tool_results`) gives the messages to append to the conversation:

- Chat Completions: one ``{"role": "tool", "tool_call_id", "content"}`` per call; the
  content is text only (the API's tool message takes no images);
- Responses: one ``{"type": "function_call_output", "call_id", "output"}`` item per call;
- Anthropic: one ``{"role": "user", "content": [{"type": "tool_result", "tool_use_id",
  "content", "is_error"}, ...]}`` message holding every result, in call order (none
  when there were no calls).

The text is what Tether always gives a model (:mod:`tether.mcp.results`). The OpenAI
APIs have no error flag, so they get design-notes R3.17 step 4's JSON
(``{"result": …}`` or ``{"status": "error", "error": …}``); Anthropic gets the text
and its own ``is_error`` flag. With ``images`` (the default), the images of a result
also go to the providers that accept them in a tool result: an ``input_image`` data URL
for Responses, an ``image`` block with a base64 source for Anthropic (TOOL-7, TOOL-8).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from tether.errors import InvalidResponse, UsageError, clean_text
from tether.mcp.render import PROVIDERS, Provider
from tether.mcp.results import ToolErrorCode, ToolResult, error_result

__all__ = [
    "IMAGE_TYPES",
    "ToolCall",
    "as_plain",
    "check_provider",
    "parse_tool_calls",
    "tool_results",
]

IMAGE_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""Image media types passed on to the model (what both providers accept)."""

_MAX_DEPTH: Final = 64
"""Nesting of tool arguments beyond which they are refused (bounds the work)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call the model asked for.

    Attributes:
        id: The provider's call id (``tool_call_id``, ``call_id`` or ``tool_use_id``
            in the answer).
        name: The tool's exposed name (may be empty when the model sent none).
        arguments: The arguments as an object, or ``None`` when ``problem`` is set.
        problem: The error result to answer with, for a call that cannot run.
    """

    id: str
    name: str
    arguments: dict[str, Any] | None
    problem: ToolResult | None = None


def check_provider(provider: str) -> Provider:
    """``provider`` if it is one Tether knows.

    Raises:
        UsageError: Another value.
    """
    for known in PROVIDERS:
        if provider == known:
            return known
    raise UsageError(
        f"unknown LLM provider {clean_text(repr(provider), limit=100)}",
        hint="use one of: " + ", ".join(PROVIDERS),
    )


def as_plain(value: Any) -> Any:
    """A response as plain data: SDK objects through ``model_dump()``, else as is."""
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, Mapping):
        return dump()
    return value


def parse_tool_calls(response: Any, provider: str) -> tuple[ToolCall, ...]:
    """The tool calls in a model response, in the order the model gave them.

    Args:
        response: A response (or its message / output / content list) as a dict or an
            SDK object with ``model_dump()``.
        provider: ``"openai_chat"``, ``"openai_responses"`` or ``"anthropic"``.

    Returns:
        The calls; empty when the model called no tool.

    Raises:
        UsageError: Unknown provider, or ``response`` is not in its format.
        InvalidResponse: A tool call has no id.
    """
    kind = check_provider(provider)
    plain = as_plain(response)
    if kind == "openai_chat":
        calls = (_chat_call(c) for c in _chat_tool_calls(plain))
        return tuple(call for call in calls if call is not None)
    if kind == "openai_responses":
        items = _items(plain, "output", "an OpenAI Responses response")
        return tuple(
            _responses_call(item)
            for item in items
            if isinstance(item, Mapping) and item.get("type") == "function_call"
        )
    blocks = _items(plain, "content", "an Anthropic message")
    return tuple(
        _anthropic_call(block)
        for block in blocks
        if isinstance(block, Mapping) and block.get("type") == "tool_use"
    )


def _not_format(what: str) -> UsageError:
    return UsageError(
        f"the response is not {what}",
        hint="pass the model's response for the provider named by provider=",
    )


def _chat_tool_calls(plain: Any) -> list[Any]:
    """The ``tool_calls`` of a ``ChatCompletion``'s first choice or of a message."""
    what = "an OpenAI Chat Completions response or assistant message"
    if not isinstance(plain, Mapping):
        raise _not_format(what)
    message: Any = plain
    if "choices" in plain:
        choices = plain["choices"]
        if not isinstance(choices, list):
            raise _not_format(what)
        if not choices:
            return []
        first = as_plain(choices[0])
        message = first.get("message") if isinstance(first, Mapping) else None
    elif "role" not in plain and "tool_calls" not in plain:
        raise _not_format(what)
    elif "stop_reason" in plain or plain.get("type") == "message":
        raise _not_format(what)  # an Anthropic message (or a Responses item)
    message = as_plain(message)
    if not isinstance(message, Mapping):
        raise _not_format(what)
    calls = message.get("tool_calls")
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise _not_format(what)
    return calls


def _items(plain: Any, key: str, what: str) -> list[Any]:
    """A response's ``key`` list, or the list itself when given one."""
    if isinstance(plain, Mapping):
        plain = plain.get(key)
    if isinstance(plain, list):
        return [as_plain(item) for item in plain]
    raise _not_format(what)


def _call_id(value: Any, provider: str) -> str:
    if isinstance(value, str) and value:
        return value
    raise InvalidResponse(
        f"a tool call in the {provider} response has no id, so it cannot be answered",
        hint="pass the model's response unchanged",
    )


def _chat_call(raw: Any) -> ToolCall | None:
    """A function call, or ``None`` for another type (a custom tool is not ours)."""
    call = as_plain(raw)
    if not isinstance(call, Mapping):
        raise _not_format("an OpenAI Chat Completions response or assistant message")
    if call.get("type", "function") != "function":
        return None
    call_id = _call_id(call.get("id"), "openai_chat")
    function = call.get("function")
    if not isinstance(function, Mapping):
        return _refused(call_id, "", _no_name())
    return _decoded(call_id, function.get("name"), function.get("arguments"))


def _responses_call(item: Mapping[str, Any]) -> ToolCall:
    call_id = _call_id(item.get("call_id"), "openai_responses")
    return _decoded(call_id, item.get("name"), item.get("arguments"))


def _anthropic_call(block: Mapping[str, Any]) -> ToolCall:
    call_id = _call_id(block.get("id"), "anthropic")
    name = block.get("name")
    if not isinstance(name, str) or not name:
        return _refused(call_id, "", _no_name())
    arguments = block.get("input")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, Mapping):
        return _refused(call_id, name, _not_object(arguments))
    return _checked(call_id, name, dict(arguments))


def _decoded(call_id: str, name: Any, arguments: Any) -> ToolCall:
    """A call whose arguments are a JSON string (both OpenAI APIs)."""
    if not isinstance(name, str) or not name:
        return _refused(call_id, "", _no_name())
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return ToolCall(call_id, name, {})
    if isinstance(arguments, Mapping):  # some compatible servers send an object
        return _checked(call_id, name, dict(arguments))
    if not isinstance(arguments, str):
        return _refused(call_id, name, _not_object(arguments))
    try:
        value = json.loads(arguments)
    except RecursionError:
        return _refused(call_id, name, _too_deep())
    except ValueError as exc:
        return _refused(
            call_id,
            name,
            error_result(
                ToolErrorCode.INVALID_ARGUMENTS,
                f"The arguments are not valid JSON ({exc}). Send the arguments as "
                "one JSON object and try again.",
            ),
        )
    if not isinstance(value, dict):
        return _refused(call_id, name, _not_object(value))
    return _checked(call_id, name, value)


def _checked(call_id: str, name: str, arguments: dict[str, Any]) -> ToolCall:
    if _depth(arguments) > _MAX_DEPTH:
        return _refused(call_id, name, _too_deep())
    return ToolCall(call_id, name, arguments)


def _depth(value: Any) -> int:
    """Nesting depth of JSON-like data, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Sequence[Any] = list(item.values())
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if level > _MAX_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def _refused(call_id: str, name: str, problem: ToolResult) -> ToolCall:
    return ToolCall(call_id, name, None, problem)


def _no_name() -> ToolResult:
    return error_result(
        ToolErrorCode.UNKNOWN_TOOL,
        "The tool call names no tool. Use one of the tools offered.",
    )


def _not_object(value: Any) -> ToolResult:
    if value is None:
        kind = "null"
    elif isinstance(value, list | tuple):
        kind = "an array"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int | float):
        kind = "a number"
    else:
        kind = "a " + clean_text(type(value).__name__, limit=40)
    return error_result(
        ToolErrorCode.INVALID_ARGUMENTS,
        f"The arguments must be a JSON object, not {kind}. Send them as an object "
        "whose keys are the tool's parameters.",
    )


def _too_deep() -> ToolResult:
    return error_result(
        ToolErrorCode.INVALID_ARGUMENTS,
        f"The arguments are nested more than {_MAX_DEPTH} levels deep.",
    )


# --------------------------------------------------------------------- answers


def tool_results(
    provider: str,
    calls: Sequence[ToolCall],
    results: Sequence[ToolResult],
    *,
    images: bool = True,
) -> list[dict[str, Any]]:
    """The messages that answer ``calls``, to append to the conversation.

    Args:
        provider: As for :func:`parse_tool_calls`.
        calls: The calls, as parsed.
        results: One result per call, in the same order.
        images: Pass a result's images to the providers that take them.

    Returns:
        Chat Completions: one ``tool`` message per call; Responses: one
        ``function_call_output`` item per call; Anthropic: one ``user`` message with
        a ``tool_result`` block per call, or nothing when there are no calls.

    Raises:
        UsageError: Unknown provider, or not one result per call.
    """
    kind = check_provider(provider)
    if len(calls) != len(results):
        raise UsageError(f"{len(calls)} tool calls but {len(results)} results")
    pairs = list(zip(calls, results, strict=True))
    if kind == "openai_chat":
        return [
            {"role": "tool", "tool_call_id": call.id, "content": _as_json(result)}
            for call, result in pairs
        ]
    if kind == "openai_responses":
        return [
            {
                "type": "function_call_output",
                "call_id": call.id,
                "output": _responses_output(result, images),
            }
            for call, result in pairs
        ]
    if not pairs:
        return []
    return [
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call.id,
                    "content": _anthropic_content(result, images),
                    "is_error": result.is_error,
                }
                for call, result in pairs
            ],
        }
    ]


def _as_json(result: ToolResult) -> str:
    """design-notes R3.17 step 4, as the JSON string the OpenAI APIs carry."""
    return json.dumps(result.to_model(), ensure_ascii=False)


def _responses_output(result: ToolResult, images: bool) -> str | list[dict[str, Any]]:
    found = _images(result) if images else []
    if not found:
        return _as_json(result)
    return [
        {"type": "input_text", "text": _as_json(result)},
        *(
            {"type": "input_image", "image_url": f"data:{mime};base64,{data}"}
            for mime, data in found
        ),
    ]


def _anthropic_content(result: ToolResult, images: bool) -> str | list[dict[str, Any]]:
    found = _images(result) if images else []
    if not found:
        return result.text
    return [
        {"type": "text", "text": result.text},
        *(
            {
                "type": "image",
                "source": {"type": "base64", "media_type": mime, "data": data},
            }
            for mime, data in found
        ),
    ]


def _images(result: ToolResult) -> list[tuple[str, str]]:
    """``(media type, base64 data)`` of each image item of a successful result.

    MCP ``ImageContent`` is ``{"type": "image", "data", "mimeType"}`` (MCP *Tools*);
    other media types, and the images of a failed call, stay summarised in the text.
    """
    if result.is_error or result.raw is None:
        return []
    content = result.raw.get("content")
    if not isinstance(content, list):
        return []
    found = []
    for item in content:
        if not isinstance(item, Mapping) or item.get("type") != "image":
            continue
        mime, data = item.get("mimeType"), item.get("data")
        if mime in IMAGE_TYPES and isinstance(data, str) and data:
            found.append((str(mime), "".join(data.split())))
    return found
