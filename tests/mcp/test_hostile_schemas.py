"""Regression tests: hostile tool schemas and names (issue 11 items 6 and 7).

Malformed ``properties``/``required`` and ``null`` union members raised
``AttributeError``/``TypeError`` in flattening and strict rendering; a dangling or
external ``$ref`` made ``render_tools`` raise for the whole toolset; thousands of
colliding names took quadratic time.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tether.errors import InvalidResponse, UsageError
from tether.mcp.naming import NAME_PATTERN, assign_tool_names, safe_name
from tether.mcp.render import (
    PROVIDERS,
    Provider,
    ToolDefinition,
    render_tools,
    render_toolset,
    unique_definitions,
)
from tether.mcp.schema import flatten_schema, strict_schema
from tether.mcp.skills import parse_frontmatter


def nested(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {"type": "object"}
    node = root
    for _ in range(levels):
        child: dict[str, Any] = {"type": "object"}
        node["properties"] = {"a": child}
        node = child
    return root


def nested_list(levels: int) -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(levels):
        child: list[Any] = []
        node.append(child)
        node = child
    return root


MALFORMED: list[Any] = [
    {"anyOf": [None, {"type": "object"}, {"type": "object"}]},
    {"anyOf": [{"type": "object", "properties": [1]}, {"type": "object"}]},
    {"anyOf": [{"type": "object", "required": 5}, {"type": "object", "required": [1]}]},
    {"type": "object", "properties": {"a": {"type": "object", "properties": [1, 2]}}},
    {"type": "object", "properties": {"a": {"type": "object", "required": "a"}}},
    {"type": "object", "properties": "nope", "required": {"a": 1}},
    {"type": "object", "properties": {"a": None, "b": True, "c": False}},
    {"oneOf": [None, None]},
    {"allOf": [None, {"properties": 3}, {"required": [None, "x", "x"]}]},
    {"type": "object", "patternProperties": [1], "dependentSchemas": "x"},
]


@pytest.mark.parametrize("schema", MALFORMED)
def test_malformed_schemas_flatten_and_render_strictly(schema: Any) -> None:
    flat = flatten_schema(schema)
    assert flat["type"] == "object"
    assert isinstance(flat["properties"], dict)
    strict = strict_schema(flat)
    assert strict["additionalProperties"] is False
    assert isinstance(strict["required"], list)


def test_required_keeps_only_distinct_strings() -> None:
    flat = flatten_schema(
        {"type": "object", "properties": {"x": {}}, "required": [None, "x", 3, "x"]}
    )
    assert flat["required"] == ["x"]


def test_strict_schema_tolerates_a_non_object_properties() -> None:
    assert strict_schema({"type": "object", "properties": [1]})["properties"] == {}


def test_depth_10000_is_cut_not_a_recursion_error() -> None:
    flat = flatten_schema(nested(10_000))
    depth = 0
    node = flat
    while node.get("properties"):
        node = node["properties"]["a"]
        depth += 1
    assert depth <= 25
    assert "nested too deeply" in node["description"]
    strict_schema(flat)


def test_deep_data_keywords_are_bounded() -> None:
    deep = nested_list(10_000)
    flat = flatten_schema(
        {"type": "object", "properties": {"x": {"enum": [deep], "default": deep}}}
    )
    strict_schema(flat)
    value = flat["properties"]["x"]["default"]
    depth = 0
    while isinstance(value, list) and value:
        value = value[0]
        depth += 1
    assert depth <= 33


def test_raw_deep_schema_in_strict_mode_is_invalid_response() -> None:
    with pytest.raises(InvalidResponse, match="nested too deeply"):
        strict_schema(nested(10_000))


def test_a_huge_max_depth_still_ends_in_invalid_response() -> None:
    with pytest.raises(InvalidResponse, match="nested too deeply"):
        flatten_schema(nested(10_000), max_depth=100_000)


def tool(name: str, schema: Any, original: str | None = None) -> ToolDefinition:
    return ToolDefinition(
        name=name,
        description=f"{name} tool",
        input_schema=schema,
        server_id="s1",
        original_name=original or name,
    )


POISONED = {
    "dangling": {"type": "object", "properties": {"x": {"$ref": "#/$defs/gone"}}},
    "external": {"$ref": "https://evil.example/\x1b[31mschema.json"},
    "huge": {
        "type": "object",
        "$defs": {
            **{
                f"L{i}": {
                    "properties": {
                        "a": {"$ref": f"#/$defs/L{i + 1}"},
                        "b": {"$ref": f"#/$defs/L{i + 1}"},
                    }
                }
                for i in range(16)
            },
            "L16": {"type": "string"},
        },
        "$ref": "#/$defs/L0",
    },
}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("strict", [False, True])
def test_one_poisoned_tool_never_breaks_the_rest(
    provider: Provider, strict: bool
) -> None:
    tools = [tool("good", {"type": "object"})]
    tools += [tool(name, schema) for name, schema in POISONED.items()]
    tools.append(tool("last", {"type": "object", "properties": {"q": {}}}))
    rendered = render_toolset(tools, provider, strict=strict)
    assert len(rendered.tools) == 2
    assert [e.name for e in rendered.excluded] == ["dangling", "external", "huge"]
    reasons = {e.name: e.reason for e in rendered.excluded}
    assert "dangling reference" in reasons["dangling"]
    assert "external reference" in reasons["external"]
    assert "\x1b" not in reasons["external"]
    assert "more than 5000 nodes" in reasons["huge"]
    assert rendered.excluded[0].to_dict()["code"] == "invalid_response"


def test_render_tools_logs_what_it_leaves_out(caplog: pytest.LogCaptureFixture) -> None:
    tools = [tool("good", {}), tool("dangling", POISONED["dangling"])]
    with caplog.at_level(logging.WARNING, logger="tether.mcp.render"):
        out = render_tools(tools, "anthropic")
    assert [t["name"] for t in out] == ["good"]
    assert "dangling" in caplog.text
    assert "dangling reference" in caplog.text


def test_render_toolset_rejects_an_unknown_provider() -> None:
    with pytest.raises(UsageError, match="unknown LLM provider"):
        render_toolset([], "gemini\x1b[2J")  # type: ignore[arg-type]


def test_duplicate_names_render_once_first_wins() -> None:
    tools = [tool("same", {}, original="same") for _ in range(5)]
    tools.insert(2, tool("SAME", {}, original="other"))
    rendered = render_toolset(tools, "openai_chat")
    assert [t["function"]["name"] for t in rendered.tools] == ["same"]
    assert [e.code for e in rendered.excluded] == ["duplicate_name"] * 5
    assert unique_definitions(tools) == (tools[0],)


def test_same_tool_listed_five_times_gets_one_unique_name() -> None:
    names = assign_tool_names([("s1", "srv", "same")] * 5 + [("s2", "other", "same")])
    assert sorted(names.by_exposed) == ["other__same", "srv__same"]


def test_many_colliding_names_stay_unique_and_deterministic() -> None:
    # Every name folds to "a_" on one server: 20,000 collisions took 525 s before.
    refs = [("s", "srv", "a" + chr(0x2000 + i)) for i in range(20_000)]
    names = assign_tool_names(refs)
    assert len(names.by_exposed) == 20_000
    assert len({n.lower() for n in names.by_exposed}) == 20_000
    assert all(NAME_PATTERN.match(n) for n in names.by_exposed)
    assert assign_tool_names(reversed(refs)).by_exposed == names.by_exposed


@pytest.mark.parametrize(
    "name",
    ["\ud800", "\x00\x1b[31m", "é" * 100_000, "x" * 1_000_000, "١٢٣", "🙂", ""],
)
def test_safe_name_of_hostile_names(name: str) -> None:
    assert NAME_PATTERN.match(safe_name(name))
    assert NAME_PATTERN.match(safe_name(name, suffix="_99"))


@pytest.mark.parametrize(
    ("frontmatter", "problem"),
    [
        ("[" * 5_000, "nests deeper than 32"),
        ("- " * 5_000 + "x", "nests deeper than 32"),
        ("a: &a [x, x, x, x, x, x, x, x, x]\nb: [*a, *a, *a, *a, *a]", "alias"),
    ],
)
def test_hostile_skill_frontmatter_is_a_value_error(
    frontmatter: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_frontmatter(f"---\n{frontmatter}\n---\nbody")


def test_frontmatter_keys_json_cannot_hold_become_strings() -> None:
    data, body = parse_frontmatter("---\n2020-01-01: x\n!!binary aGk=: y\n---\nbody")
    assert data == {"2020-01-01": "x", "b'hi'": "y"}
    assert body == "body"
