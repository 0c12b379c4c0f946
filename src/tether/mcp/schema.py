"""Flatten a tool's ``inputSchema`` into a schema every LLM provider accepts.

MCP tools describe their arguments with JSON Schema (MCP 2025-11-25 and 2026-07-28,
*Tools*, ``Tool.inputSchema``; the root is ``type: "object"``). LLM providers accept only
a subset: no ``$ref``, no ``allOf``, and patchy support for nullable unions. This module
resolves a schema the way design-notes R3.16 does, with the guards of G-24:

1. local ``$ref`` (``#/$defs/X``, ``#/definitions/X``, any JSON pointer, RFC 6901) is
   inlined, the referencing node's own keys laid over the target; a ref already being
   expanded ``max_recursion`` times becomes a permissive placeholder with a note, and
   nesting deeper than ``max_depth`` is cut the same way; an external or dangling ref,
   or a result larger than ``max_nodes``, raises :class:`~tether.errors.InvalidResponse`;
2. ``allOf`` is merged: properties united (a property in both is merged the same way),
   ``required`` united, ``type`` intersected (first wins if the intersection is empty),
   other keys first-wins;
3. ``anyOf``/``oneOf`` with one non-null variant collapse into the node; real unions stay
   as ``anyOf`` (without the ``null`` variants), and a ``type`` list loses ``"null"``;
4. ``$defs``, ``definitions``, ``$schema``, ``$id``, ``$anchor`` and ``$comment`` go.

The root is always ``{"type": "object", "properties": {...}}``: a missing or non-object
schema becomes the empty object schema, and a root union of objects becomes one object
with the variants' properties and only the properties they all require.

Every function here is pure and returns new objects; inputs are never mutated.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote

from tether.errors import InvalidResponse

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_NODES",
    "DEFAULT_MAX_RECURSION",
    "flatten_schema",
    "strict_schema",
]

DEFAULT_MAX_DEPTH: Final = 24
DEFAULT_MAX_NODES: Final = 5000
DEFAULT_MAX_RECURSION: Final = 1
_MAX_DATA_DEPTH: Final = 32  # nesting kept in enum/const/default/examples values

_DROPPED: Final = frozenset(
    {"$defs", "definitions", "$schema", "$id", "$anchor", "$comment"}
)
# Keywords whose value is a map of name -> subschema.
_SCHEMA_MAPS: Final = frozenset({"properties", "patternProperties", "dependentSchemas"})
# Keywords whose value is one subschema (``items`` may also be a list, draft 4-7).
_SCHEMA_VALUES: Final = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contains",
        "not",
        "if",
        "then",
        "else",
        "propertyNames",
    }
)
_SCHEMA_LISTS: Final = frozenset({"prefixItems"})


@dataclass
class _Context:
    root: Mapping[str, Any]
    max_depth: int
    max_recursion: int
    max_nodes: int
    nodes: int = 0
    stack: list[str] = field(default_factory=list)

    def count(self) -> None:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise InvalidResponse(
                f"the tool's input schema expands to more than {self.max_nodes} nodes",
                step="tool_schema",
                hint="ask the server's maintainer to simplify the schema",
            )


def flatten_schema(
    schema: Any,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_recursion: int = DEFAULT_MAX_RECURSION,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> dict[str, Any]:
    """Return a self-contained object schema for LLM function calling.

    Args:
        schema: A tool's ``inputSchema`` as received (any JSON value; ``None`` allowed).
        max_depth: Nesting depth after which subschemas become placeholders.
        max_recursion: How often one ``$ref`` may be expanded inside itself before it
            becomes a placeholder (``1``: a tree node shows its children once).
        max_nodes: Upper bound on the subschemas produced (guards exponential refs).

    Returns:
        A new ``{"type": "object", "properties": {...}, ...}`` dict with no ``$ref``,
        ``allOf`` or definitions left.

    Raises:
        InvalidResponse: The schema has an external or dangling ``$ref``, or expands
            beyond ``max_nodes`` (G-24: refused with an admin-visible error).
    """
    if not isinstance(schema, Mapping):
        return {"type": "object", "properties": {}}
    ctx = _Context(schema, max_depth, max_recursion, max_nodes, stack=["#"])
    try:
        return _to_object(_resolve(schema, ctx, 0))
    except RecursionError:  # only with a caller's huge max_depth; defaults stay shallow
        raise _too_deep() from None


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Adapt a flattened schema to OpenAI's strict mode (structured outputs).

    Every object gets ``additionalProperties: false`` and lists all its properties in
    ``required``; a property that was optional becomes nullable instead, so the model
    can still leave it out by sending ``null``. Apply it to the output of
    :func:`flatten_schema`.

    Args:
        schema: A flattened schema.

    Returns:
        A new, strict copy of ``schema``.
    """
    try:
        strict: dict[str, Any] = _strict(copy.deepcopy(dict(schema)))
    except RecursionError:  # a schema that did not come from flatten_schema
        raise _too_deep() from None
    return strict


def _too_deep() -> InvalidResponse:
    return InvalidResponse(
        "the tool's input schema is nested too deeply to render",
        step="tool_schema",
        hint="ask the server's maintainer to simplify the schema",
    )


# --------------------------------------------------------------------- resolution


def _resolve(node: Any, ctx: _Context, depth: int) -> dict[str, Any]:
    ctx.count()
    if node is False:  # JSON Schema 2020-12 §4.3.2: false accepts nothing
        return {"not": {}}
    if not isinstance(node, Mapping):  # true, or junk: accept anything
        return {}
    if depth > ctx.max_depth:
        return _placeholder(node, "nested too deeply; details omitted")
    own = dict(node)
    pushed = 0
    try:
        while isinstance(own.get("$ref"), str):
            ref = own.pop("$ref")
            target = _lookup(ctx.root, ref)
            if ctx.stack.count(ref) > ctx.max_recursion:
                own = {**_placeholder(target, f"recursive {_ref_name(ref)}"), **own}
                break
            ctx.stack.append(ref)
            pushed += 1
            own = {**target, **own}
        return _resolve_keywords(own, ctx, depth)
    finally:
        del ctx.stack[len(ctx.stack) - pushed :]


def _resolve_keywords(
    node: dict[str, Any], ctx: _Context, depth: int
) -> dict[str, Any]:
    all_of = node.pop("allOf", None)
    unions = [node.pop(key, None) for key in ("anyOf", "oneOf")]
    node.pop("$ref", None)  # a non-string $ref is meaningless; drop it
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        out[key] = _resolve_keyword(key, value, ctx, depth + 1)
    _drop_malformed(out)
    if "type" in out:
        out["type"] = _drop_null_type(out["type"])
    if isinstance(all_of, list):
        for part in all_of:
            out = _merge(out, _resolve(part, ctx, depth + 1))
    for union in unions:
        if isinstance(union, list):
            out = _apply_union(out, [_resolve(v, ctx, depth + 1) for v in union])
    return out


def _drop_malformed(node: dict[str, Any]) -> None:
    """Drop structural keywords of the wrong JSON type; keep only string ``required``.

    A ``properties`` that is not an object, or a ``required`` that is not an array,
    means nothing to a validator (JSON Schema 2020-12 validation §6.5.3, core §10.3.2.1);
    left in, it would break merging and strict rendering.
    """
    for key in _SCHEMA_MAPS:
        if key in node and not isinstance(node[key], dict):
            del node[key]
    if "required" in node:
        required = node["required"]
        names = (
            [n for n in required if isinstance(n, str)]
            if isinstance(required, list)
            else []
        )
        if names:
            node["required"] = list(dict.fromkeys(names))
        else:
            del node["required"]


def _resolve_keyword(key: str, value: Any, ctx: _Context, depth: int) -> Any:
    if key in _SCHEMA_MAPS and isinstance(value, Mapping):
        return {name: _resolve(sub, ctx, depth) for name, sub in value.items()}
    if key in _SCHEMA_VALUES and isinstance(value, Mapping | bool):
        return value if isinstance(value, bool) else _resolve(value, ctx, depth)
    if (key in _SCHEMA_LISTS or key == "items") and isinstance(value, list):
        return [_resolve(sub, ctx, depth) for sub in value]
    # Data keywords (enum, const, default, examples, ...): copied, nesting bounded.
    return _copy_data(value, _MAX_DATA_DEPTH)


def _copy_data(value: Any, budget: int) -> Any:
    """A copy of a JSON value; anything nested deeper than ``budget`` becomes ``None``."""
    if isinstance(value, Mapping):
        if budget <= 0:
            return None
        return {k: _copy_data(v, budget - 1) for k, v in value.items()}
    if isinstance(value, list):
        if budget <= 0:
            return None
        return [_copy_data(v, budget - 1) for v in value]
    return value


def _lookup(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    """Follow a local JSON pointer (RFC 6901 §6: a URI fragment, percent-encoded)."""
    if not ref.startswith("#"):
        raise InvalidResponse(
            f"the tool's input schema uses an external reference {ref[:200]!r}",
            step="tool_schema",
            hint="only local '#/...' references are supported",
        )
    node: Any = root
    pointer = unquote(ref[1:])
    for part in pointer.split("/")[1:] if pointer else []:
        key = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            node = None
            break
    if not isinstance(node, Mapping):
        raise InvalidResponse(
            f"the tool's input schema has a dangling reference {ref[:200]!r}",
            step="tool_schema",
        )
    return node


def _ref_name(ref: str) -> str:
    return "root schema" if ref == "#" else f"'{ref.rsplit('/', 1)[-1]}'"


def _placeholder(target: Mapping[str, Any], why: str) -> dict[str, Any]:
    kind = target.get("type")
    kind = kind if isinstance(kind, str) and kind != "null" else "object"
    return {"type": kind, "description": f"({why}: any {kind} is accepted)"}


# --------------------------------------------------------------------- merging


def _merge(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Merge two resolved schemas (``allOf``): first wins, except as documented."""
    out = dict(first)
    for key, value in second.items():
        if key not in out:
            out[key] = value
        elif key == "properties" and isinstance(value, dict):
            mine = dict(out[key]) if isinstance(out[key], dict) else {}
            for name, sub in value.items():
                mine[name] = _merge(mine[name], sub) if name in mine else sub
            out[key] = mine
        elif key == "required" and isinstance(value, list):
            have = out[key] if isinstance(out[key], list) else []
            out[key] = have + [n for n in value if n not in have]
        elif key == "type":
            out[key] = _intersect_types(out[key], value)
    return out


def _types(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _widen(types: list[str]) -> list[str]:
    # JSON Schema 2020-12 validation §6.1.1: "number" also matches integers.
    return [*types, "integer"] if "number" in types else types


def _intersect_types(first: Any, second: Any) -> Any:
    theirs = _widen(_types(second))
    common = [t for t in _widen(_types(first)) if t in theirs]
    if "number" in common:
        common = [t for t in common if t != "integer"]
    if not common:
        return first  # unsatisfiable: keep the first, the tool will report the error
    return common[0] if len(common) == 1 else common


def _drop_null_type(value: Any) -> Any:
    types = _types(value)
    if not isinstance(value, list) or len(types) != len(value):
        return value
    rest = [t for t in types if t != "null"] or ["null"]
    return rest[0] if len(rest) == 1 else rest


def _is_null(variant: Mapping[str, Any]) -> bool:
    return variant.get("type") == "null"


def _apply_union(
    node: dict[str, Any], variants: list[dict[str, Any]]
) -> dict[str, Any]:
    non_null = [v for v in variants if not _is_null(v)]
    if len(non_null) == 1:
        return _merge(node, non_null[0])
    if not non_null:
        return _merge(node, variants[0]) if variants else node
    if "anyOf" in node:  # both anyOf and oneOf: keep the first, it is a hint anyway
        return node
    return {**node, "anyOf": non_null}


def _to_object(schema: dict[str, Any]) -> dict[str, Any]:
    if "anyOf" in schema:
        schema = _merge_root_union(schema)
    if "object" not in _types(schema.get("type", "object")):
        return {"type": "object", "properties": {}}
    out = {"type": "object", **{k: v for k, v in schema.items() if k != "type"}}
    if not isinstance(out.get("properties"), dict):
        out["properties"] = {}
    return out


def _merge_root_union(schema: dict[str, Any]) -> dict[str, Any]:
    """A root ``anyOf`` of objects: union of properties, intersection of required."""
    variants = [v for v in schema.pop("anyOf") if "object" in _types(v.get("type"))]
    if not variants:
        return schema
    props: dict[str, Any] = dict(schema.get("properties") or {})
    for variant in variants:
        for name, sub in (variant.get("properties") or {}).items():
            props.setdefault(name, sub)
    required = [
        name
        for name in variants[0].get("required") or []
        if all(name in (v.get("required") or []) for v in variants[1:])
    ]
    own_required = list(schema.get("required") or [])
    merged = {**schema, "type": "object", "properties": props}
    merged["required"] = own_required + [n for n in required if n not in own_required]
    if not merged["required"]:
        del merged["required"]
    return merged


# --------------------------------------------------------------------- strict mode


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    for key in ("items", "anyOf", "prefixItems"):
        if key in node:
            node[key] = _strict(node[key])
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = False
    if "object" in _types(node.get("type")):
        props = node.get("properties")
        if not isinstance(props, dict):
            props = {}
        required = set(_types(node.get("required")))
        node["properties"] = {
            name: _strict(sub if name in required else _nullable(sub))
            for name, sub in props.items()
        }
        node["required"] = list(props)
        node["additionalProperties"] = False
    return node


def _nullable(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return schema
    types = _types(schema.get("type"))
    if "type" in schema and types:
        return {**schema, "type": [*types, "null"] if "null" not in types else types}
    if isinstance(schema.get("anyOf"), list):
        return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
    return schema
