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
own, else its title, else a humanised name (design-notes R3.16), cut to
:data:`MAX_DESCRIPTION_LENGTH` characters.

One bad tool never breaks a toolset: :func:`render_toolset` leaves out a tool whose
schema cannot be rendered (an external or dangling ``$ref``, a schema past the expansion
cap) and a second tool under a name already rendered (providers require unique names;
names compare case-insensitively, as in :mod:`tether.mcp.naming`), and says why in
``excluded``. :func:`render_tools` returns the same list and logs the exclusions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from tether.errors import TetherError, UsageError, clean_text
from tether.mcp.schema import flatten_schema, strict_schema

__all__ = [
    "MAX_DESCRIPTION_LENGTH",
    "PROVIDERS",
    "ExcludedTool",
    "Provider",
    "RenderedTools",
    "ToolDefinition",
    "describe",
    "render_tools",
    "render_toolset",
    "to_anthropic",
    "to_openai_chat",
    "to_openai_responses",
    "unique_definitions",
]

logger = logging.getLogger(__name__)

MAX_DESCRIPTION_LENGTH: Final = 1024

Provider = Literal["openai_chat", "openai_responses", "anthropic"]
PROVIDERS: Final[tuple[Provider, ...]] = (
    "openai_chat",
    "openai_responses",
    "anthropic",
)


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


@dataclass(frozen=True)
class ExcludedTool:
    """A tool left out of a rendering, and why.

    Attributes:
        name: Its exposed name.
        server_id: The server that offers it.
        original_name: Its MCP name.
        reason: Why it was left out, safe to show (no control characters, bounded).
        code: The error code (``invalid_response``, ``duplicate_name``, …).
    """

    name: str
    server_id: str
    original_name: str
    reason: str
    code: str

    def to_dict(self) -> dict[str, str]:
        """A JSON-safe description."""
        return {
            "name": self.name,
            "server_id": self.server_id,
            "original_name": self.original_name,
            "reason": self.reason,
            "code": self.code,
        }


@dataclass(frozen=True)
class RenderedTools:
    """What :func:`render_toolset` produced.

    Attributes:
        tools: The provider's tool list, in input order.
        excluded: The tools left out, in input order.
    """

    tools: list[dict[str, Any]]
    excluded: tuple[ExcludedTool, ...] = ()


def unique_definitions(tools: Iterable[ToolDefinition]) -> tuple[ToolDefinition, ...]:
    """Keep the first definition of each exposed name (compared case-insensitively).

    A server that lists one tool name several times yields several definitions under
    the same exposed name; they all route to the same ``tools/call`` name, so the first
    (in the server's order, hence deterministic) stands for them.

    Args:
        tools: Definitions, in order.

    Returns:
        The definitions with later duplicates removed.
    """
    seen: set[str] = set()
    out: list[ToolDefinition] = []
    for tool in tools:
        if tool.name.lower() not in seen:
            seen.add(tool.name.lower())
            out.append(tool)
    return tuple(out)


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
    """Render several tools for one provider, leaving out the ones that cannot be.

    The same as ``render_toolset(...).tools``; each tool left out is logged as a
    warning with its reason. Use :func:`render_toolset` to show the reasons.

    Args:
        tools: The tools, in the order the model should see them.
        provider: ``"openai_chat"``, ``"openai_responses"`` or ``"anthropic"``.
        strict: Strict schemas for the OpenAI APIs (ignored for Anthropic).

    Returns:
        The provider's tool list.

    Raises:
        UsageError: ``provider`` is not one of the above.
    """
    rendered = render_toolset(tools, provider, strict=strict)
    for item in rendered.excluded:
        logger.warning(
            "tool %s (server %s) left out: %s", item.name, item.server_id, item.reason
        )
    return rendered.tools


def render_toolset(
    tools: Iterable[ToolDefinition], provider: Provider, *, strict: bool = False
) -> RenderedTools:
    """Render several tools for one provider; a tool that cannot be is left out.

    Args:
        tools: The tools, in the order the model should see them.
        provider: ``"openai_chat"``, ``"openai_responses"`` or ``"anthropic"``.
        strict: Strict schemas for the OpenAI APIs (ignored for Anthropic).

    Returns:
        The rendered tools, and those left out with the reason: a schema that cannot
        be flattened (:func:`~tether.mcp.schema.flatten_schema`), or a name already
        rendered.

    Raises:
        UsageError: ``provider`` is not one of the above.
    """
    renderers: dict[str, Callable[[ToolDefinition], dict[str, Any]]] = {
        "openai_chat": lambda t: to_openai_chat(t, strict=strict),
        "openai_responses": lambda t: to_openai_responses(t, strict=strict),
        "anthropic": to_anthropic,
    }
    renderer = renderers.get(provider)
    if renderer is None:
        raise UsageError(
            f"unknown LLM provider {clean_text(repr(provider), limit=100)}",
            hint="use one of: " + ", ".join(renderers),
        )
    out: list[dict[str, Any]] = []
    excluded: list[ExcludedTool] = []
    names: set[str] = set()
    for tool in tools:
        if tool.name.lower() in names:
            excluded.append(
                _excluded(tool, "another tool already has this name", "duplicate_name")
            )
            continue
        try:
            out.append(renderer(tool))
        except TetherError as exc:
            excluded.append(_excluded(tool, exc.message, exc.code))
            continue
        names.add(tool.name.lower())
    return RenderedTools(out, tuple(excluded))


def _excluded(tool: ToolDefinition, reason: str, code: str) -> ExcludedTool:
    return ExcludedTool(
        name=tool.name,
        server_id=tool.server_id,
        original_name=clean_text(tool.original_name, limit=200),
        reason=clean_text(reason),
        code=code,
    )


def _parameters(tool: ToolDefinition, strict: bool) -> dict[str, Any]:
    schema = flatten_schema(tool.input_schema)
    return strict_schema(schema) if strict else schema


def _humanise(name: str) -> str:
    words = name.replace("_", " ").replace("-", " ").replace(".", " ").split()
    text = " ".join(words)
    return text[:1].upper() + text[1:] if text else "Tool"
