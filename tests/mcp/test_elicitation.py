"""Tests for tether.mcp.elicitation (SEP-1034 defaults; the decline default)."""

from __future__ import annotations

from typing import Any

import pytest

from tether.mcp.elicitation import Elicited, accept_defaults, decline

# The schema of the conformance scenario elicitation-sep1034-client-defaults.
SEP1034 = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "default": "John Doe"},
        "age": {"type": "integer", "default": 30},
        "score": {"type": "number", "default": 95.5},
        "status": {
            "type": "string",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "default": True},
    },
}


async def test_accept_defaults_fills_every_default() -> None:
    answer = await accept_defaults("fill", SEP1034)
    assert answer == Elicited(
        "accept",
        {
            "name": "John Doe",
            "age": 30,
            "score": 95.5,
            "status": "active",
            "verified": True,
        },
    )


@pytest.mark.parametrize(
    "schema",
    [
        None,  # URL mode: nobody can visit the URL
        {"type": "object"},  # no properties
        {  # a required field nobody can fill
            "type": "object",
            "properties": {"email": {"type": "string"}, "n": {"type": "integer"}},
            "required": ["email"],
        },
    ],
)
async def test_accept_defaults_declines_what_it_cannot_fill(
    schema: dict[str, Any] | None,
) -> None:
    assert (await accept_defaults("fill", schema)).action == "decline"


async def test_accept_defaults_leaves_optional_fields_without_default_out() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "default": "x"},
            "b": {"type": "string"},
        },
        "required": ["a"],
    }
    assert await accept_defaults("fill", schema) == Elicited("accept", {"a": "x"})


async def test_decline_is_the_production_default() -> None:
    assert await decline("fill", SEP1034) == Elicited("decline")
