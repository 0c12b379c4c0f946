"""Tool definitions in the shapes LLM provider APIs expect.

A :class:`ToolDefinition` is one MCP tool under its exposed name (see
:mod:`tether.mcp.naming`). The renderers turn it into:

- OpenAI Chat Completions: ``{"type": "function", "function": {"name", "description",
  "parameters", "strict"?}}``;
- OpenAI Responses: ``{"type": "function", "name", "description", "parameters",
  "strict"}``. ``strict`` is always sent, because that API treats a missing value as
  strict;
- Anthropic Messages: ``{"name", "description", "input_schema"}``.

The schema goes through :func:`~tether.mcp.schema.flatten_schema` (and
:func:`~tether.mcp.schema.strict_schema` when ``strict``). The description is the tool's
own, else its title, else a humanised name (reference-behaviour §3.16), cut to
:data:`MAX_DESCRIPTION_LENGTH` characters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from tether.errors import UsageError
from tether.mcp.schema import flatten_schema, strict_schema

__all__ = [
    "MAX_DESCRIPTION_LENGTH",
    "Provider",
    "ToolDefinition",
    "describe",
    "render_tools",
    "to_anthropic",
    "to_openai_chat",
    "to_openai_responses",
]

MAX_DESCRIPTION_LENGTH: Final = 1024

Provider = Literal["openai_chat", "openai_responses", "anthropic"]


@dataclass(frozen=True)
class ToolDefinition:
    """One tool as an LLM will see it.

    Attributes:
        name: The exposed, provider-safe name.
        description: The tool's MCP ``description`` (may be empty).
        input_schema: The tool's ``inputSchema``, raw or already flattened.
        server_id: The server that offers the tool.
        original_name: The tool's MCP name, sent in ``tools/call``.
        title: The tool's ``title`` (or ``annotations.title``), if any.
        annotations: The tool's MCP annotations (hints such as ``readOnlyHint``).
    """

    name: str
    description: str
    input_schema: Mapping[str, Any]
    server_id: str
    original_name: str
    title: str | None = None
    annotations: Mapping[str, Any] = field(default_factory=dict)


def describe(tool: ToolDefinition, *, limit: int = MAX_DESCRIPTION_LENGTH) -> str:
    """Return the description the model sees.

    Args:
        tool: The tool.
        limit: Maximum length; longer text is cut at a word boundary and ends in ``…``.

    Returns:
        The description, title or humanised original name.
    """
    text = (tool.description or "").strip() or (tool.title or "").strip()
    if not text:
        text = _humanise(tool.original_name or tool.name)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def to_openai_chat(tool: ToolDefinition, *, strict: bool = False) -> dict[str, Any]:
    """Render for OpenAI Chat Completions ``tools``.

    Args:
        tool: The tool.
        strict: Ask for strict schema adherence (structured outputs).

    Returns:
        A ``{"type": "function", "function": {...}}`` dict.
    """
    function: dict[str, Any] = {
        "name": tool.name,
        "description": describe(tool),
        "parameters": _parameters(tool, strict),
    }
    if strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def to_openai_responses(
    tool: ToolDefinition, *, strict: bool = False
) -> dict[str, Any]:
    """Render for the OpenAI Responses API ``tools``.

    Args:
        tool: The tool.
        strict: Ask for strict schema adherence (structured outputs).

    Returns:
        A ``{"type": "function", "name", "description", "parameters", "strict"}`` dict.
    """
    return {
        "type": "function",
        "name": tool.name,
        "description": describe(tool),
        "parameters": _parameters(tool, strict),
        "strict": strict,
    }


def to_anthropic(tool: ToolDefinition) -> dict[str, Any]:
    """Render for the Anthropic Messages API ``tools``.

    Args:
        tool: The tool.

    Returns:
        A ``{"name", "description", "input_schema"}`` dict.
    """
    return {
        "name": tool.name,
        "description": describe(tool),
        "input_schema": _parameters(tool, strict=False),
    }


def render_tools(
    tools: Iterable[ToolDefinition], provider: Provider, *, strict: bool = False
) -> list[dict[str, Any]]:
    """Render several tools for one provider.

    Args:
        tools: The tools, in the order the model should see them.
        provider: ``"openai_chat"``, ``"openai_responses"`` or ``"anthropic"``.
        strict: Strict schemas for the OpenAI APIs (ignored for Anthropic).

    Returns:
        The provider's tool list.

    Raises:
        UsageError: ``provider`` is not one of the above.
        InvalidResponse: A tool's schema cannot be flattened (see
            :func:`~tether.mcp.schema.flatten_schema`).
    """
    renderers: dict[str, Callable[[ToolDefinition], dict[str, Any]]] = {
        "openai_chat": lambda t: to_openai_chat(t, strict=strict),
        "openai_responses": lambda t: to_openai_responses(t, strict=strict),
        "anthropic": to_anthropic,
    }
    renderer = renderers.get(provider)
    if renderer is None:
        raise UsageError(
            f"unknown LLM provider {provider!r}",
            hint="use one of: " + ", ".join(renderers),
        )
    return [renderer(tool) for tool in tools]


def _parameters(tool: ToolDefinition, strict: bool) -> dict[str, Any]:
    schema = flatten_schema(tool.input_schema)
    return strict_schema(schema) if strict else schema


def _humanise(name: str) -> str:
    words = name.replace("_", " ").replace("-", " ").replace(".", " ").split()
    text = " ".join(words)
    return text[:1].upper() + text[1:] if text else "Tool"
