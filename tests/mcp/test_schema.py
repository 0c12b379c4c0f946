"""Tests for tether.mcp.schema: flattening tool input schemas for LLM providers."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tether.errors import InvalidResponse
from tether.mcp.schema import flatten_schema, strict_schema

EMPTY = {"type": "object", "properties": {}}
STR = {"type": "string"}


def obj(props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, **extra}


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param(None, EMPTY, id="missing"),
        pytest.param({}, EMPTY, id="empty"),
        pytest.param("nonsense", EMPTY, id="not-a-dict"),
        pytest.param({"type": "string"}, EMPTY, id="non-object-root"),
        pytest.param({"type": 5}, EMPTY, id="junk-type"),
        pytest.param({"properties": {"a": STR}}, obj({"a": STR}), id="type-added"),
        pytest.param({"type": "object"}, EMPTY, id="properties-added"),
        pytest.param(
            {"type": "object", "properties": "junk"}, EMPTY, id="junk-properties"
        ),
        pytest.param(
            {"type": ["object", "null"], "properties": {}}, EMPTY, id="nullable-root"
        ),
        pytest.param(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": "urn:x",
                "$comment": "c",
                "$defs": {"X": STR},
                "definitions": {"Y": STR},
                "type": "object",
                "properties": {"a": STR},
            },
            obj({"a": STR}),
            id="meta-keys-dropped",
        ),
        pytest.param(
            obj({"e": {"enum": ["$ref", {"$ref": "#/nowhere"}]}}),
            obj({"e": {"enum": ["$ref", {"$ref": "#/nowhere"}]}}),
            id="data-keywords-untouched",
        ),
        pytest.param(
            obj({"t": True, "f": False}),
            obj({"t": {}, "f": {"not": {}}}),
            id="boolean-subschemas",
        ),
        pytest.param(
            obj({"a": {"$ref": 7, "type": "string"}}),
            obj({"a": STR}),
            id="non-string-ref-dropped",
        ),
        pytest.param(
            obj(
                {"a": {"type": "array", "items": [STR, {"$ref": "#/$defs/S"}]}},
                **{"$defs": {"S": {"type": "integer"}}},
            ),
            obj({"a": {"type": "array", "items": [STR, {"type": "integer"}]}}),
            id="tuple-items",
        ),
        pytest.param(
            obj(
                {
                    "m": {
                        "type": "object",
                        "additionalProperties": {"$ref": "#/$defs/S"},
                    }
                },
                **{"$defs": {"S": STR}},
            ),
            obj({"m": {"type": "object", "additionalProperties": STR}}),
            id="additional-properties",
        ),
        pytest.param(
            obj({"m": {"type": "object", "additionalProperties": False}}),
            obj({"m": {"type": "object", "additionalProperties": False}}),
            id="additional-properties-bool",
        ),
    ],
)
def test_basics(schema: Any, expected: dict[str, Any]) -> None:
    assert flatten_schema(schema) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param(
            obj({"a": {"$ref": "#/$defs/A"}}, **{"$defs": {"A": STR}}),
            obj({"a": STR}),
            id="defs",
        ),
        pytest.param(
            obj({"a": {"$ref": "#/definitions/A"}}, definitions={"A": STR}),
            obj({"a": STR}),
            id="definitions",
        ),
        pytest.param(
            obj(
                {"a": {"$ref": "#/$defs/A", "description": "own"}},
                **{"$defs": {"A": {"type": "string", "description": "target"}}},
            ),
            obj({"a": {"type": "string", "description": "own"}}),
            id="own-keys-laid-over-target",
        ),
        pytest.param(
            obj(
                {"a": {"$ref": "#/$defs/A"}},
                **{"$defs": {"A": {"$ref": "#/$defs/B"}, "B": STR}},
            ),
            obj({"a": STR}),
            id="ref-chain",
        ),
        pytest.param(
            obj({"a": {"$ref": "#/$defs/a~1b%20c~0"}}, **{"$defs": {"a/b c~": STR}}),
            obj({"a": STR}),
            id="pointer-escapes",
        ),
        pytest.param(
            obj({"a": {"$ref": "#/$defs/L/1"}}, **{"$defs": {"L": [{}, STR]}}),
            obj({"a": STR}),
            id="pointer-into-list",
        ),
        pytest.param(
            {"$ref": "#/$defs/Root", "$defs": {"Root": obj({"a": STR})}},
            obj({"a": STR}),
            id="root-is-ref",
        ),
    ],
)
def test_refs_inlined(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert flatten_schema(schema) == expected


TREE: dict[str, Any] = {
    "type": "object",
    "properties": {"root": {"$ref": "#/$defs/Node"}},
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {
                "name": STR,
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            },
        }
    },
}


def node(children_items: dict[str, Any]) -> dict[str, Any]:
    return obj({"name": STR, "children": {"type": "array", "items": children_items}})


def recursive(kind: str, name: str) -> dict[str, Any]:
    return {"type": kind, "description": f"(recursive {name}: any {kind} is accepted)"}


@pytest.mark.parametrize(
    ("max_recursion", "expected_root"),
    [
        (0, node(recursive("object", "'Node'"))),
        (1, node(node(recursive("object", "'Node'")))),
        (2, node(node(node(recursive("object", "'Node'"))))),
    ],
)
def test_recursive_ref_is_cut(
    max_recursion: int, expected_root: dict[str, Any]
) -> None:
    flat = flatten_schema(TREE, max_recursion=max_recursion)
    assert flat == obj({"root": expected_root})
    assert "$ref" not in json.dumps(flat)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param(
            obj({"self": {"$ref": "#"}}),
            obj({"self": obj({"self": recursive("object", "root schema")})}),
            id="root-recursion",
        ),
        pytest.param(
            obj(
                {"l": {"$ref": "#/$defs/List"}},
                **{
                    "$defs": {
                        "List": {
                            "type": "array",
                            "items": {"$ref": "#/$defs/List"},
                        }
                    }
                },
            ),
            obj(
                {
                    "l": {
                        "type": "array",
                        "items": {
                            "type": "array",
                            "items": recursive("array", "'List'"),
                        },
                    }
                }
            ),
            id="recursive-array-keeps-type",
        ),
        pytest.param(
            obj(
                {"a": {"$ref": "#/$defs/A"}},
                **{
                    "$defs": {
                        "A": {"$ref": "#/$defs/B"},
                        "B": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]},
                    }
                },
            ),
            obj({"a": recursive("object", "'A'")}),
            id="mutual-recursion-without-type",
        ),
    ],
)
def test_recursion_shapes(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert flatten_schema(schema) == expected


def test_mutual_recursion_terminates() -> None:
    schema = obj(
        {"a": {"$ref": "#/$defs/A"}},
        **{
            "$defs": {
                "A": obj({"b": {"$ref": "#/$defs/B"}}),
                "B": obj({"a": {"$ref": "#/$defs/A"}}),
            }
        },
    )
    flat = flatten_schema(schema, max_recursion=0)
    assert flat == obj({"a": obj({"b": obj({"a": recursive("object", "'A'")})})})


def test_depth_is_bounded() -> None:
    deep: dict[str, Any] = STR
    for _ in range(10):
        deep = obj({"x": deep})
    flat = flatten_schema(deep, max_depth=4)
    text = json.dumps(flat)
    assert "nested too deeply" in text
    assert text.count('"properties"') < 10


def test_exponential_refs_are_refused() -> None:
    defs = {
        f"L{i}": obj(
            {"a": {"$ref": f"#/$defs/L{i + 1}"}, "b": {"$ref": f"#/$defs/L{i + 1}"}}
        )
        for i in range(30)
    }
    defs["L30"] = STR
    schema = obj({"root": {"$ref": "#/$defs/L0"}}, **{"$defs": defs})
    with pytest.raises(InvalidResponse, match="more than 500 nodes"):
        flatten_schema(schema, max_nodes=500)


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("https://example.com/s.json", "external reference"),
        ("other.json#/X", "external reference"),
        ("#/$defs/Missing", "dangling reference"),
        ("#/$defs/Str/type", "dangling reference"),
        ("#/$defs/L/9", "dangling reference"),
    ],
)
def test_bad_refs_are_refused(ref: str, match: str) -> None:
    schema = obj({"a": {"$ref": ref}}, **{"$defs": {"Str": STR, "L": [STR]}})
    with pytest.raises(InvalidResponse, match=match) as info:
        flatten_schema(schema)
    assert info.value.step == "tool_schema"


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param(
            {
                "allOf": [
                    obj({"a": STR}, required=["a"]),
                    obj({"b": {"type": "integer"}}, required=["b", "a"]),
                ]
            },
            obj({"a": STR, "b": {"type": "integer"}}, required=["a", "b"]),
            id="properties-and-required-united",
        ),
        pytest.param(
            {
                "description": "own",
                "allOf": [
                    {"description": "first", "title": "T"},
                    {"description": "second"},
                ],
            },
            {"type": "object", "description": "own", "title": "T", "properties": {}},
            id="other-keys-first-wins",
        ),
        pytest.param(
            obj(
                {
                    "x": {
                        "allOf": [
                            {"type": ["string", "integer"]},
                            {"type": ["integer", "boolean"]},
                        ]
                    }
                }
            ),
            obj({"x": {"type": "integer"}}),
            id="types-intersected",
        ),
        pytest.param(
            obj({"x": {"allOf": [{"type": "number"}, {"type": "integer"}]}}),
            obj({"x": {"type": "integer"}}),
            id="integer-within-number",
        ),
        pytest.param(
            obj({"x": {"allOf": [{"type": "number"}, {"type": "number"}]}}),
            obj({"x": {"type": "number"}}),
            id="same-number",
        ),
        pytest.param(
            obj({"x": {"allOf": [{"type": ["string", "boolean"]}, {}]}}),
            obj({"x": {"type": ["string", "boolean"]}}),
            id="type-list-kept",
        ),
        pytest.param(
            obj(
                {
                    "x": {
                        "allOf": [
                            {"type": ["string", "boolean"]},
                            {"type": ["string", "boolean"]},
                        ]
                    }
                }
            ),
            obj({"x": {"type": ["string", "boolean"]}}),
            id="type-list-intersection",
        ),
        pytest.param(
            obj({"x": {"allOf": [STR, {"type": "integer"}]}}),
            obj({"x": STR}),
            id="conflict-first-wins",
        ),
        pytest.param(
            {
                "allOf": [
                    obj({"a": obj({"p": STR}, required=["p"])}),
                    obj({"a": obj({"q": STR}, required=["q"])}),
                ]
            },
            obj({"a": obj({"p": STR, "q": STR}, required=["p", "q"])}),
            id="shared-property-merged-deeply",
        ),
        pytest.param(
            {
                "allOf": [
                    {"$ref": "#/$defs/Base"},
                    obj({"extra": STR}),
                ],
                "$defs": {"Base": obj({"id": STR}, required=["id"])},
            },
            obj({"id": STR, "extra": STR}, required=["id"]),
            id="allof-with-ref",
        ),
        pytest.param(
            {
                "properties": "junk",
                "required": "junk",
                "allOf": [obj({"a": STR}, required=["a"])],
            },
            {"type": "object", "properties": {"a": STR}, "required": ["a"]},
            id="junk-own-keys-replaced",
        ),
    ],
)
def test_allof_merged(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert flatten_schema(schema) == expected


NULL = {"type": "null"}


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        pytest.param({"anyOf": [STR, NULL]}, STR, id="anyof-nullable"),
        pytest.param({"oneOf": [NULL, STR]}, STR, id="oneof-null-first"),
        pytest.param(
            {
                "description": "d",
                "anyOf": [{"type": "string", "description": "x"}, NULL],
            },
            {"description": "d", "type": "string"},
            id="own-keys-win",
        ),
        pytest.param({"type": ["string", "null"]}, STR, id="type-list"),
        pytest.param(
            {"type": ["string", "integer", "null"]},
            {"type": ["string", "integer"]},
            id="type-list-many",
        ),
        pytest.param({"type": ["null"]}, {"type": "null"}, id="only-null-list"),
        pytest.param({"type": ["string", 3]}, {"type": ["string", 3]}, id="junk-list"),
        pytest.param({"anyOf": [NULL]}, NULL, id="only-null"),
        pytest.param({"anyOf": []}, {}, id="empty-union"),
        pytest.param(
            {"anyOf": [STR, {"type": "integer"}, NULL]},
            {"anyOf": [STR, {"type": "integer"}]},
            id="real-union-kept",
        ),
        pytest.param(
            {"oneOf": [STR, {"type": "integer"}]},
            {"anyOf": [STR, {"type": "integer"}]},
            id="oneof-becomes-anyof",
        ),
        pytest.param(
            {"anyOf": [STR, {"type": "integer"}], "oneOf": [{"type": "boolean"}, NULL]},
            {"anyOf": [STR, {"type": "integer"}], "type": "boolean"},
            id="anyof-and-oneof",
        ),
        pytest.param(
            {"anyOf": [STR, {"type": "integer"}], "oneOf": [{"type": "boolean"}, {}]},
            {"anyOf": [STR, {"type": "integer"}]},
            id="two-real-unions-keep-first",
        ),
        pytest.param(
            {"anyOf": [{"$ref": "#/$defs/S"}, NULL]},
            {"type": "integer"},
            id="nullable-ref",
        ),
    ],
)
def test_nullable_unions(prop: dict[str, Any], expected: dict[str, Any]) -> None:
    schema = obj({"p": prop}, **{"$defs": {"S": {"type": "integer"}}})
    assert flatten_schema(schema) == obj({"p": expected})


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param(
            {
                "anyOf": [
                    obj({"a": STR, "b": STR}, required=["a", "b"]),
                    obj({"a": {"type": "integer"}, "c": STR}, required=["a", "c"]),
                    NULL,
                ]
            },
            obj({"a": STR, "b": STR, "c": STR}, required=["a"]),
            id="objects-united",
        ),
        pytest.param(
            {
                "type": "object",
                "required": ["z"],
                "properties": {"z": STR},
                "oneOf": [obj({"a": STR}), obj({"b": STR})],
            },
            obj({"z": STR, "a": STR, "b": STR}, required=["z"]),
            id="own-required-kept",
        ),
        pytest.param(
            {"anyOf": [obj({"a": STR}), obj({"b": STR})]},
            obj({"a": STR, "b": STR}),
            id="nothing-required",
        ),
        pytest.param({"anyOf": [STR, {"type": "integer"}]}, EMPTY, id="no-objects"),
    ],
)
def test_root_union(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert flatten_schema(schema) == expected


def test_other_subschema_keywords_are_resolved() -> None:
    ref = {"$ref": "#/$defs/S"}
    schema = obj(
        {
            "p": {
                "type": "object",
                "patternProperties": {"^x": ref},
                "propertyNames": ref,
                "not": ref,
                "if": ref,
                "then": ref,
                "else": ref,
            },
            "t": {"type": "array", "prefixItems": [ref], "contains": ref},
        },
        **{"$defs": {"S": STR}},
    )
    assert "$ref" not in json.dumps(flatten_schema(schema))


def test_input_is_not_mutated() -> None:
    schema = copy.deepcopy(TREE)
    schema["properties"]["u"] = {"allOf": [{"anyOf": [STR, NULL]}], "enum": ["a"]}
    before = copy.deepcopy(schema)
    flat = flatten_schema(schema)
    assert schema == before
    flat["properties"]["u"]["enum"].append("b")
    assert schema == before


@pytest.mark.parametrize(
    ("flat", "expected"),
    [
        pytest.param(
            EMPTY, {**EMPTY, "required": [], "additionalProperties": False}, id="empty"
        ),
        pytest.param(
            obj(
                {
                    "a": STR,
                    "b": {"type": ["integer", "boolean"]},
                    "c": {"anyOf": [STR, {"type": "integer"}]},
                    "d": {},
                    "e": {"type": ["string", "null"]},
                },
                required=["a"],
            ),
            obj(
                {
                    "a": STR,
                    "b": {"type": ["integer", "boolean", "null"]},
                    "c": {"anyOf": [STR, {"type": "integer"}, NULL]},
                    "d": {},
                    "e": {"type": ["string", "null"]},
                },
                required=["a", "b", "c", "d", "e"],
                additionalProperties=False,
            ),
            id="optional-becomes-nullable",
        ),
        pytest.param(
            obj(
                {
                    "list": {"type": "array", "items": obj({"x": STR})},
                    "map": {"type": "object", "additionalProperties": STR},
                },
                required=["list", "map"],
            ),
            obj(
                {
                    "list": {
                        "type": "array",
                        "items": obj(
                            {"x": {"type": ["string", "null"]}},
                            required=["x"],
                            additionalProperties=False,
                        ),
                    },
                    "map": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {},
                        "required": [],
                    },
                },
                required=["list", "map"],
                additionalProperties=False,
            ),
            id="nested",
        ),
        pytest.param(
            obj(
                {"u": {"anyOf": [obj({"x": STR}, required=["x"]), STR]}}, required=["u"]
            ),
            obj(
                {
                    "u": {
                        "anyOf": [
                            obj({"x": STR}, required=["x"], additionalProperties=False),
                            STR,
                        ]
                    }
                },
                required=["u"],
                additionalProperties=False,
            ),
            id="union-of-objects",
        ),
    ],
)
def test_strict_schema(flat: dict[str, Any], expected: dict[str, Any]) -> None:
    before = copy.deepcopy(flat)
    assert strict_schema(flat) == expected
    assert flat == before


def test_strict_after_flatten_has_no_optional_fields() -> None:
    strict = strict_schema(flatten_schema(TREE))
    assert strict["required"] == ["root"]
    assert strict["properties"]["root"]["type"] == ["object", "null"]
    assert strict["properties"]["root"]["additionalProperties"] is False


def test_strict_leaves_boolean_subschemas() -> None:
    flat = obj(
        {"b": True, "t": {"type": "array", "prefixItems": [True]}}, required=["t"]
    )
    assert strict_schema(flat) == obj(
        {"b": True, "t": {"type": "array", "prefixItems": [True]}},
        required=["b", "t"],
        additionalProperties=False,
    )
