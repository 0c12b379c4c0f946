"""Property: whatever a model's response holds, only a TetherError escapes.

The agent glue reads tool calls out of responses an LLM provider sent (TOOL-6 – TOOL-8):
arguments that are broken, deep or not objects, ids and names of any type, containers
of the wrong kind. Whatever it gets, :func:`parse_tool_calls` returns calls (each with
object arguments or an error result) or raises a ``TetherError``, and the answers it
builds are JSON.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fuzz.strategies import deep_json, json_values, objects_with, scalars, texts
from tether.errors import TetherError
from tether.mcp.results import ToolResult
from tether.mcp.toolcalls import parse_tool_calls, tool_results

ARGUMENTS = st.one_of(
    texts,
    deep_json(min_depth=1, max_depth=5_000).map(lambda b: b.decode()),
    json_values().map(json.dumps),
    json_values(),
)
IDS = st.one_of(st.sampled_from(["call_1", "call_2", "toolu_1"]), scalars)
NAMES = st.one_of(st.sampled_from(["echo", "add", ""]), scalars)

CHAT_CALL = objects_with(
    {
        "id": IDS,
        "type": st.sampled_from(["function", "custom"]),
        "function": objects_with({"name": NAMES, "arguments": ARGUMENTS}),
    }
)
CHAT = st.one_of(
    objects_with(
        {
            "choices": st.lists(
                objects_with(
                    {
                        "message": objects_with(
                            {
                                "role": st.just("assistant"),
                                "tool_calls": st.lists(CHAT_CALL, max_size=3),
                            }
                        )
                    }
                ),
                max_size=2,
            )
        }
    ),
    objects_with({"role": st.just("assistant"), "tool_calls": st.lists(CHAT_CALL)}),
    json_values(),
)
RESPONSES = st.one_of(
    objects_with(
        {
            "output": st.lists(
                st.one_of(
                    objects_with(
                        {
                            "type": st.just("function_call"),
                            "call_id": IDS,
                            "name": NAMES,
                            "arguments": ARGUMENTS,
                        }
                    ),
                    json_values(),
                ),
                max_size=4,
            )
        }
    ),
    json_values(),
)
ANTHROPIC = st.one_of(
    objects_with(
        {
            "content": st.lists(
                st.one_of(
                    objects_with(
                        {
                            "type": st.just("tool_use"),
                            "id": IDS,
                            "name": NAMES,
                            "input": st.one_of(
                                json_values(),
                                deep_json(max_depth=500).map(json.loads),
                            ),
                        }
                    ),
                    json_values(),
                ),
                max_size=4,
            )
        }
    ),
    json_values(),
)


def check(response: Any, provider: str) -> None:
    try:
        calls = parse_tool_calls(response, provider)
    except TetherError:
        return
    for call in calls:
        assert isinstance(call.id, str)
        assert call.id
        assert (call.arguments is None) != (call.problem is None)
        assert call.arguments is None or isinstance(call.arguments, dict)
    answers = tool_results(provider, calls, [ToolResult(text="ok")] * len(calls))
    json.dumps(answers)


@given(CHAT)
def test_chat_completions(response: Any) -> None:
    check(response, "openai_chat")


@given(RESPONSES)
def test_responses(response: Any) -> None:
    check(response, "openai_responses")


@given(ANTHROPIC)
def test_anthropic(response: Any) -> None:
    check(response, "anthropic")


@given(
    st.one_of(CHAT, RESPONSES, ANTHROPIC),
    st.sampled_from(["openai_chat", "openai_responses", "anthropic"]),
)
def test_any_response_for_any_provider(response: Any, provider: str) -> None:
    check(response, provider)
