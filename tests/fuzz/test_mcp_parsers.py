"""Property: whatever an MCP server lists or answers, only a TetherError escapes.

Tool schemas (flattening, strict mode, rendering for every provider; circular and
dangling ``$ref``, depth 10,000), tool naming (unicode, control characters, 100k
tools), tool results, and Skills listings and ``SKILL.md`` frontmatter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.strategies import NASTY_TEXT, json_values, scalars, texts
from tether.errors import SkillVerificationFailed, TetherError
from tether.mcp.naming import NAME_PATTERN, ToolRef, assign_tool_names
from tether.mcp.render import PROVIDERS, ToolDefinition, render_toolset
from tether.mcp.results import normalize_result, result_from_error
from tether.mcp.schema import flatten_schema, strict_schema
from tether.mcp.skills import parse_entry, parse_listing, verify_manifest

# --------------------------------------------------------------------- schemas

REFS = st.sampled_from(
    [
        "#",
        "#/$defs/a",
        "#/$defs/b",
        "#/definitions/a",
        "#/properties/x",
        "#/$defs/a/properties/x",
        "#/$defs/missing",
        "#/items/0",
        "#/$defs/a%2Fb",
        "#/~0~1",
        "https://evil.example/s.json",
        "other.json#/a",
        "",
    ]
)
TYPES = st.one_of(
    st.sampled_from(
        ["object", "string", "integer", "number", "boolean", "array", "null"]
    ),
    st.lists(st.sampled_from(["object", "string", "null", "integer"]), max_size=3),
    scalars,
)
KEYWORDS = st.sampled_from(
    [
        "type",
        "properties",
        "required",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "items",
        "prefixItems",
        "additionalProperties",
        "$defs",
        "definitions",
        "enum",
        "const",
        "default",
        "not",
        "description",
        "patternProperties",
    ]
)


def object_node(inner: Any) -> Any:
    """An object schema whose structural keywords may have the wrong JSON type."""
    return st.fixed_dictionaries(
        {"type": st.sampled_from(["object", ["object", "null"]])},
        optional={
            "properties": st.one_of(
                st.dictionaries(st.sampled_from(["a", "b", "x"]), inner, max_size=3),
                scalars,
                st.lists(scalars, max_size=2),
            ),
            "required": st.one_of(
                st.lists(st.one_of(st.sampled_from(["a", "b"]), scalars), max_size=3),
                scalars,
                st.dictionaries(texts, scalars, max_size=2),
            ),
            "anyOf": st.lists(st.one_of(inner, st.none()), max_size=3),
            "oneOf": st.lists(st.one_of(inner, st.none()), max_size=3),
            "allOf": st.lists(inner, max_size=2),
            "additionalProperties": st.one_of(inner, scalars),
        },
    )


def schema_node(inner: Any) -> Any:
    return st.one_of(
        object_node(inner),
        st.dictionaries(
            KEYWORDS,
            st.one_of(
                inner,
                st.lists(inner, max_size=3),
                st.dictionaries(
                    st.sampled_from(["a", "b", "x", ""]), inner, max_size=3
                ),
                REFS,
                TYPES,
                st.lists(st.one_of(texts, scalars), max_size=3),
            ),
            max_size=5,
        ),
        st.builds(lambda ref: {"$ref": ref}, REFS),
    )


SCHEMAS = st.recursive(
    st.one_of(scalars, st.builds(lambda t: {"type": t}, TYPES)),
    schema_node,
    max_leaves=25,
)


@st.composite
def rooted_schemas(draw: st.DrawFn) -> Any:
    """A schema with ``$defs`` that refer to each other (and to the root) in cycles."""
    root = draw(SCHEMAS)
    if not isinstance(root, dict):
        return root
    defs = draw(
        st.dictionaries(st.sampled_from(["a", "b", "a/b", "~/"]), SCHEMAS, max_size=3)
    )
    return {**root, "$defs": defs, "definitions": {"a": draw(SCHEMAS)}}


def deep_schema(levels: int, key: str) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(levels):
        child: dict[str, Any] = {}
        node.update(
            {"type": "object", key: {"a": child} if key == "properties" else child}
        )
        node = child
    return root


@given(st.one_of(SCHEMAS, rooted_schemas()), st.booleans())
def test_schema_flattening(schema: Any, strict: bool) -> None:
    try:
        flat = flatten_schema(schema)
    except TetherError:
        return
    assert flat["type"] == "object"
    assert isinstance(flat["properties"], dict)
    rendered = strict_schema(flat) if strict else flat
    json.dumps(rendered)  # JSON-safe


@given(
    st.lists(st.one_of(SCHEMAS, rooted_schemas()), max_size=4),
    st.sampled_from(PROVIDERS),
    st.booleans(),
)
def test_rendering_never_fails_for_the_toolset(
    schemas: list[Any], provider: Any, strict: bool
) -> None:
    tools = [
        ToolDefinition(
            name=f"t{i}",
            description="",
            input_schema=s,
            server_id="s",
            original_name=f"t{i}",
        )
        for i, s in enumerate(schemas)
    ]
    rendered = render_toolset(tools, provider, strict=strict)
    assert len(rendered.tools) + len(rendered.excluded) == len(tools)


# Each example builds thousands of levels; depth is the only dimension, so a hundred
# examples cover it in every profile.
@settings(max_examples=100)
@given(
    st.integers(1_000, 10_000),
    st.sampled_from(["properties", "items", "additionalProperties", "not"]),
)
def test_deep_schemas(levels: int, key: str) -> None:
    schema = deep_schema(levels, key)
    strict_schema(flatten_schema(schema))
    with contextlib.suppress(TetherError):
        strict_schema(schema)  # not flattened first: may be refused, never a crash


# --------------------------------------------------------------------- naming

NAME_TEXT = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.text(max_size=80),
    st.text(
        st.characters(codec="utf-8", categories=["Cc", "Cf", "Mn", "Lo", "So"]),
        max_size=20,
    ),
)
REFS_IN = st.lists(
    st.tuples(st.sampled_from(["s1", "s2", "s3", "\x00", "é"]), NAME_TEXT, NAME_TEXT),
    max_size=40,
)


@given(REFS_IN, st.lists(NAME_TEXT, max_size=5), st.randoms(use_true_random=False))
def test_tool_naming(
    refs: list[tuple[str, str, str]], reserved: list[str], rng: random.Random
) -> None:
    names = assign_tool_names(refs, reserved)
    exposed = list(names.by_exposed)
    assert all(NAME_PATTERN.match(n) for n in exposed)
    lowered = {n.lower() for n in exposed}
    assert len(lowered) == len(exposed)
    assert not lowered & {r.lower() for r in reserved}
    shuffled = list(refs)
    rng.shuffle(shuffled)
    assert assign_tool_names(shuffled, reserved).by_exposed == names.by_exposed
    for key, name in names.by_tool.items():
        assert names.resolve(name) == key


def test_one_hundred_thousand_tools() -> None:
    # 100k tools: 7 servers, heavy collisions, unicode that folds to the same name.
    refs = [
        ToolRef(f"s{i % 7}", f"Server {i % 3}", f"t\u00e9st-{i % 5000}\u0301")
        for i in range(100_000)
    ]
    names = assign_tool_names(refs)
    assert len(names.by_exposed) == len({(r.server_id, r.tool_name) for r in refs})
    assert len({n.lower() for n in names.by_exposed}) == len(names.by_exposed)


# --------------------------------------------------------------------- results

CONTENT_ITEM = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(
                ["text", "image", "audio", "resource", "resource_link", "x"]
            ),
            "text": st.one_of(texts, scalars),
            "data": st.one_of(texts, st.just("A" * 10_000), scalars),
            "mimeType": texts,
            "resource": json_values(),
            "uri": texts,
            "_meta": json_values(),
        },
    ),
    json_values(),
)
RESULTS = st.fixed_dictionaries(
    {},
    optional={
        "content": st.one_of(st.lists(CONTENT_ITEM, max_size=4), scalars),
        "isError": scalars,
        "structuredContent": json_values(),
        "_meta": json_values(),
    },
)


@given(RESULTS)
def test_tool_results(result: dict[str, Any]) -> None:
    normalized = normalize_result(result)
    assert isinstance(normalized.text, str)
    normalized.to_model()


@given(texts, st.sampled_from([-32000, -32603, -32601, -32042, 0, 2**40]))
def test_jsonrpc_errors_as_results(message: str, code: int) -> None:
    from tether.errors import MCPProtocolError

    error = MCPProtocolError(message, details={"code": code, "message": message})
    assert result_from_error(error).is_error


# --------------------------------------------------------------------- skills

FRONTMATTER_TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(
            [
                "name: x\n",
                "description: d\n",
                "- ",
                "[",
                "]",
                "{",
                "}",
                "&a ",
                "*a ",
                "!!binary ",
                "!!python/object:os.system ",
                "? ",
                ": ",
                "2020-01-01: x\n",
                "\t",
                "'",
                '"',
                "---\n",
                "\x00",
                "\ud800",
                "é",
                "\n",
                "  ",
                "- [1, 2]\n",
                "a: ",
                "<<: *a\n",
            ]
        ),
        max_size=60,
    ).map("".join),
    st.integers(30, 3000).map(lambda n: "[" * n),
)


@given(FRONTMATTER_TEXT, st.text(max_size=50))
def test_skill_manifest(frontmatter: str, body: str) -> None:
    text = f"---\nname: x\ndescription: d\n{frontmatter}\n---\n{body}"
    content = text.encode("utf-8", "surrogatepass")
    uri = "skill://x/SKILL.md"
    entry = parse_entry(
        {
            "uri": uri,
            "frontmatter": {"name": "x", "description": "d"},
            "resources": [
                {
                    "uri": uri,
                    "size": len(content),
                    "digest": "sha256:" + hashlib.sha256(content).hexdigest(),
                }
            ],
        },
        server="peer",
    )
    with contextlib.suppress(SkillVerificationFailed):
        verify_manifest(entry, content, server="peer")


SKILL_ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "uri": st.one_of(
            texts,
            st.sampled_from(
                ["skill://x/SKILL.md", "skill://SKILL.md", "skill://a/../x/SKILL.md"]
            ),
        ),
        "frontmatter": st.one_of(
            json_values(), st.just({"name": "x", "description": "d"})
        ),
        "resources": st.one_of(
            json_values(),
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "uri": st.one_of(texts, st.just("skill://x/SKILL.md")),
                        "digest": st.one_of(texts, st.just("sha256:" + "0" * 64)),
                        "size": st.one_of(scalars, st.integers()),
                    },
                ),
                max_size=3,
            ),
        ),
    },
)


@given(
    st.one_of(
        st.lists(st.one_of(SKILL_ENTRY, json_values()), max_size=5), json_values()
    )
)
def test_skills_listing(raw: Any) -> None:
    with contextlib.suppress(TetherError):
        parse_listing(raw, server="peer")
