"""Hypothesis strategies for what a hostile authorization server or MCP server sends.

Each strategy mixes arbitrary data with the values that broke Tether before (issue 11
item 6): deep nesting, numbers past every range, non-ASCII digits, escape sequences,
brackets in hosts, lone surrogates. Parsers must turn all of it into a value or a
:class:`~tether.errors.TetherError`.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

#: Strings that broke, or nearly broke, a parser.
NASTY_TEXT: tuple[str, ...] = (
    "",
    " ",
    "\x00",
    "\r\n",
    "\x1b[31mred\x1b[0m",
    "\x1b]0;title\x07",
    "\x9b2J",
    "\u202egnp.exe",
    "\ud800",
    "²",
    "١٢٣",
    "3600",
    "-1",
    "1e309",
    "99999999999999999999",
    "9" * 5000,
    "NaN",
    "http://x[abc]/mcp",
    "https://[::1/mcp",
    "https://user:pw@as.example/",
    "https://as.example/#frag",
    "https://as.example:99999/",
    "https://as.example/token",
    "https://mcp.example.com/mcp",
    "Bearer",
    "Thu, 01 Jan 2026 00:00:10 -0000",
    "Thu, 01 Jan 99999 00:00:10 GMT",
    "#/$defs/a",
    "#",
    "skill://x/SKILL.md",
    "%",
    '"',
    "\\",
    "é" * 200,
)

NASTY_NUMBERS: tuple[Any, ...] = (
    0,
    -1,
    1,
    2**63,
    -(2**63),
    10**30,
    1e17,
    1e308,
    -1e308,
    0.5,
    float("inf"),
    float("-inf"),
    float("nan"),
)

texts = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Nd", "No"])),
)
numbers = st.one_of(
    st.sampled_from(NASTY_NUMBERS),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)


def json_values(keys: st.SearchStrategy[str] = texts, leaves: int = 30) -> Any:
    """Any JSON-like value (object keys drawn from ``keys``)."""
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=5),
            st.dictionaries(keys, inner, max_size=6),
        ),
        max_leaves=leaves,
    )


def deep_json(min_depth: int = 60, max_depth: int = 3_000) -> Any:
    """A document of nested arrays or objects, as bytes, with a leaf at the bottom."""

    def build(args: tuple[int, bool, str]) -> bytes:
        depth, objects, leaf = args
        opener, closer = ('{"a":', "}") if objects else ("[", "]")
        return (opener * depth + json.dumps(leaf) + closer * depth).encode()

    return st.tuples(
        st.integers(min_depth, max_depth), st.booleans(), st.sampled_from(NASTY_TEXT)
    ).map(build)


def bodies(members: Any) -> Any:
    """Response bodies: JSON of ``members``, deep JSON, form-encoded, or raw bytes."""

    def dump(value: Any) -> bytes:
        return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")

    return st.one_of(
        members.map(dump),
        deep_json(),
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/x-www-form-urlencoded",
        "text/html",
        "text/plain",
        "",
    ]
)


def objects_with(fields: dict[str, Any]) -> Any:
    """Objects whose known members are drawn from ``fields`` (each maybe absent)."""
    optional = {
        name: st.one_of(value, scalars, json_values()) for name, value in fields.items()
    }
    return st.fixed_dictionaries({}, optional=optional)
