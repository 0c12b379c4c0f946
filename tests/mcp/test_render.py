"""Tests for tether.mcp.render: tool definitions per LLM provider."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tether.errors import UsageError
from tether.mcp.render import (
    MAX_DESCRIPTION_LENGTH,
    Provider,
    ToolDefinition,
    describe,
    render_tools,
    to_anthropic,
    to_openai_chat,
    to_openai_responses,
)

RAW_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "q": {"$ref": "#/$defs/Q"},
        "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
    },
    "required": ["q"],
    "$defs": {"Q": {"type": "string", "description": "query"}},
}
FLAT = {
    "type": "object",
    "properties": {
        "q": {"type": "string", "description": "query"},
        "limit": {"type": "integer"},
    },
    "required": ["q"],
}
STRICT = {
    "type": "object",
    "properties": {
        "q": {"type": "string", "description": "query"},
        "limit": {"type": ["integer", "null"]},
    },
    "required": ["q", "limit"],
    "additionalProperties": False,
}


def tool(**changes: Any) -> ToolDefinition:
    fields: dict[str, Any] = {
        "name": "jira__search",
        "description": "Search issues.",
        "input_schema": RAW_SCHEMA,
        "server_id": "s1",
        "original_name": "search",
    }
    return ToolDefinition(**{**fields, **changes})


def test_openai_chat() -> None:
    assert to_openai_chat(tool()) == {
        "type": "function",
        "function": {
            "name": "jira__search",
            "description": "Search issues.",
            "parameters": FLAT,
        },
    }


def test_openai_chat_strict() -> None:
    assert to_openai_chat(tool(), strict=True) == {
        "type": "function",
        "function": {
            "name": "jira__search",
            "description": "Search issues.",
            "parameters": STRICT,
            "strict": True,
        },
    }


@pytest.mark.parametrize(("strict", "schema"), [(False, FLAT), (True, STRICT)])
def test_openai_responses(strict: bool, schema: dict[str, Any]) -> None:
    assert to_openai_responses(tool(), strict=strict) == {
        "type": "function",
        "name": "jira__search",
        "description": "Search issues.",
        "parameters": schema,
        "strict": strict,
    }


def test_anthropic() -> None:
    assert to_anthropic(tool()) == {
        "name": "jira__search",
        "description": "Search issues.",
        "input_schema": FLAT,
    }


@pytest.mark.parametrize(
    ("provider", "strict", "expected"),
    [
        ("openai_chat", False, [to_openai_chat(tool())]),
        ("openai_chat", True, [to_openai_chat(tool(), strict=True)]),
        ("openai_responses", False, [to_openai_responses(tool())]),
        ("openai_responses", True, [to_openai_responses(tool(), strict=True)]),
        ("anthropic", True, [to_anthropic(tool())]),
    ],
)
def test_render_tools(
    provider: Provider, strict: bool, expected: list[dict[str, Any]]
) -> None:
    assert render_tools([tool()], provider, strict=strict) == expected


def test_render_tools_keeps_order() -> None:
    tools = [tool(name=f"t{i}") for i in range(3)]
    rendered = render_tools(tools, "anthropic")
    assert [t["name"] for t in rendered] == ["t0", "t1", "t2"]


def test_render_tools_rejects_unknown_provider() -> None:
    with pytest.raises(UsageError, match="unknown LLM provider 'gemini'"):
        render_tools([tool()], "gemini")  # type: ignore[arg-type]


def test_empty_schema_becomes_empty_object() -> None:
    rendered = to_anthropic(tool(input_schema={}))
    assert rendered["input_schema"] == {"type": "object", "properties": {}}


def test_input_and_outputs_are_independent() -> None:
    raw = copy.deepcopy(RAW_SCHEMA)
    definition = tool(input_schema=raw)
    first = to_openai_chat(definition)
    first["function"]["parameters"]["properties"]["q"]["type"] = "integer"
    assert raw == RAW_SCHEMA
    assert to_openai_chat(definition)["function"]["parameters"] == FLAT


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"description": "  Own text. "}, "Own text."),
        ({"description": "", "title": "Search Jira"}, "Search Jira"),
        ({"description": " ", "title": " "}, "Search"),
        (
            {"description": "", "original_name": "get_open-issues.v2"},
            "Get open issues v2",
        ),
        ({"description": "", "original_name": "", "name": "jira__x"}, "Jira x"),
        ({"description": "", "original_name": "___"}, "Tool"),
    ],
)
def test_describe_fallbacks(changes: dict[str, Any], expected: str) -> None:
    assert describe(tool(**changes)) == expected


def test_long_description_is_cut_at_a_word() -> None:
    text = "word " * 400
    result = describe(tool(description=text))
    assert len(result) <= MAX_DESCRIPTION_LENGTH
    assert result.endswith("word…")


def test_long_description_without_spaces_is_cut_hard() -> None:
    result = describe(tool(description="x" * 5000), limit=100)
    assert result == "x" * 99 + "…"


def test_description_at_the_limit_is_kept() -> None:
    text = "y" * MAX_DESCRIPTION_LENGTH
    assert describe(tool(description=text)) == text


def test_definition_carries_routing_and_annotations() -> None:
    definition = tool(annotations={"readOnlyHint": True}, title="Search")
    assert definition.server_id == "s1"
    assert definition.original_name == "search"
    assert definition.annotations == {"readOnlyHint": True}
    assert tool().annotations == {}
