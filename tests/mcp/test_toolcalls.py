"""The agent loop's pure half: tool calls out of model responses, results back in.

Shapes are the providers' (TOOL-6 – TOOL-8); every call that cannot run is kept with
a model-visible error (TOOL-9). SDK objects are stood in for by pydantic models, which
is what the official SDKs' response types are.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from tether.errors import InvalidResponse, UsageError
from tether.mcp.results import ToolResult, error_result, normalize_result
from tether.mcp.toolcalls import ToolCall, parse_tool_calls, tool_results

PNG = "iVBORw0KGgo="


def chat(*calls: dict[str, Any], content: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = list(calls)
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
    }


def chat_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def fn_call(call_id: Any, name: str, arguments: Any) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def tool_use(call_id: Any, name: str, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def code_of(call: ToolCall) -> str | None:
    assert call.problem is not None
    assert call.arguments is None
    return call.problem.error_code


# ------------------------------------------------------------ Chat Completions


def test_chat_parallel_calls_in_order() -> None:
    calls = parse_tool_calls(
        chat(
            chat_call("call_1", "echo", '{"text": "hi"}'),
            chat_call("call_2", "add", '{"a": 1, "b": 2}'),
        ),
        "openai_chat",
    )
    assert calls == (
        ToolCall("call_1", "echo", {"text": "hi"}),
        ToolCall("call_2", "add", {"a": 1, "b": 2}),
    )


def test_chat_message_alone_and_no_calls() -> None:
    message = chat(chat_call("c", "echo", "{}"))["choices"][0]["message"]
    assert parse_tool_calls(message, "openai_chat") == (ToolCall("c", "echo", {}),)
    assert parse_tool_calls(chat(content="final"), "openai_chat") == ()
    no_calls = {"role": "assistant", "content": "x", "tool_calls": None}
    assert parse_tool_calls(no_calls, "openai_chat") == ()
    assert parse_tool_calls({"choices": []}, "openai_chat") == ()


def test_chat_empty_or_object_arguments_are_accepted() -> None:
    calls = parse_tool_calls(
        chat(
            chat_call("a", "whoami", ""),
            chat_call("b", "whoami", None),
            chat_call("c", "add", {"a": 1}),  # some compatible servers send an object
        ),
        "openai_chat",
    )
    assert [c.arguments for c in calls] == [{}, {}, {"a": 1}]


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ('{"a": 1', "not valid JSON"),
        ("nonsense", "not valid JSON"),
        ("[1, 2]", "not an array"),
        ('"text"', "not a string"),
        ("42", "not a number"),
        ("true", "not a boolean"),
        ("null", "not null"),
        (17, "not a number"),
        ("[" * 100_000 + "]" * 100_000, "nested more than"),  # RecursionError
        ('{"a": ' * 70 + "1" + "}" * 70, "nested more than"),
    ],
)
def test_chat_bad_arguments_become_invalid_arguments(arguments: Any, says: str) -> None:
    (call,) = parse_tool_calls(chat(chat_call("c", "add", arguments)), "openai_chat")
    assert code_of(call) == "invalid_arguments"
    assert call.problem is not None
    assert says in call.problem.text
    assert call.id == "c"
    assert call.name == "add"


def test_chat_no_name_is_unknown_tool_and_custom_calls_are_not_ours() -> None:
    custom = {"id": "c1", "type": "custom", "custom": {"name": "x", "input": "y"}}
    calls = parse_tool_calls(
        chat(
            custom,
            {"id": "c2", "type": "function"},
            chat_call("c3", "", "{}"),
            chat_call("c4", None, "{}"),
            {"type": "custom"},  # not ours: not even its id is needed
        ),
        "openai_chat",
    )
    assert [c.id for c in calls] == ["c2", "c3", "c4"]
    assert [code_of(c) for c in calls] == ["unknown_tool"] * 3


@pytest.mark.parametrize(
    "response",
    [
        "text",
        ["list"],
        {"object": "chat.completion"},
        {"choices": "x"},
        {"choices": ["x"]},
        {"choices": [{"message": "x"}]},
        {"role": "assistant", "tool_calls": "x"},
        {"role": "assistant", "tool_calls": ["x"]},
    ],
)
def test_chat_not_in_format_raises(response: Any) -> None:
    with pytest.raises(UsageError, match="not an OpenAI Chat Completions"):
        parse_tool_calls(response, "openai_chat")


@pytest.mark.parametrize("call_id", [None, "", 7])
def test_a_call_without_id_raises(call_id: Any) -> None:
    with pytest.raises(InvalidResponse, match="no id"):
        parse_tool_calls(chat(chat_call(call_id, "echo", "{}")), "openai_chat")
    with pytest.raises(InvalidResponse, match="no id"):
        parse_tool_calls([fn_call(call_id, "echo", "{}")], "openai_responses")
    with pytest.raises(InvalidResponse, match="no id"):
        parse_tool_calls([tool_use(call_id, "echo", {})], "anthropic")


# ------------------------------------------------------------ Responses


def test_responses_calls_among_reasoning_and_messages() -> None:
    response = {
        "id": "resp_1",
        "object": "response",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "calling"}],
            },
            fn_call("call_1", "echo", '{"text": "x"}'),
            {"type": "web_search_call", "id": "ws_1", "status": "completed"},
            fn_call("call_2", "add", "[]"),
        ],
    }
    calls = parse_tool_calls(response, "openai_responses")
    assert calls[0] == ToolCall("call_1", "echo", {"text": "x"})
    assert calls[1].id == "call_2"
    assert code_of(calls[1]) == "invalid_arguments"
    assert parse_tool_calls(response["output"][:2], "openai_responses") == ()
    assert parse_tool_calls({"output": []}, "openai_responses") == ()


@pytest.mark.parametrize("response", ["x", {"output": None}, {"id": "resp"}, 3])
def test_responses_not_in_format_raises(response: Any) -> None:
    with pytest.raises(UsageError, match="not an OpenAI Responses response"):
        parse_tool_calls(response, "openai_responses")


# ------------------------------------------------------------ Anthropic


def test_anthropic_tool_use_mixed_with_text() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "stop_reason": "tool_use",
        "content": [
            {"type": "thinking", "thinking": "hm", "signature": "s"},
            {"type": "text", "text": "Let me look."},
            tool_use("toolu_1", "echo", {"text": "a"}),
            {"type": "server_tool_use", "id": "srv_1", "name": "web_search"},
            tool_use("toolu_2", "whoami", None),
        ],
    }
    assert parse_tool_calls(message, "anthropic") == (
        ToolCall("toolu_1", "echo", {"text": "a"}),
        ToolCall("toolu_2", "whoami", {}),
    )
    text_only = {"role": "assistant", "content": [{"type": "text", "text": "done"}]}
    assert parse_tool_calls(text_only, "anthropic") == ()


def test_anthropic_bad_input_and_no_name() -> None:
    calls = parse_tool_calls(
        [
            tool_use("a", "echo", "text"),
            tool_use("b", "echo", [1]),
            tool_use("c", "", {}),
            tool_use("d", "echo", json.loads('{"a": ' * 70 + "1" + "}" * 70)),
        ],
        "anthropic",
    )
    assert [code_of(c) for c in calls] == [
        "invalid_arguments",
        "invalid_arguments",
        "unknown_tool",
        "invalid_arguments",
    ]


@pytest.mark.parametrize("response", ["x", {"content": "text"}, {"role": "user"}])
def test_anthropic_not_in_format_raises(response: Any) -> None:
    with pytest.raises(UsageError, match="not an Anthropic message"):
        parse_tool_calls(response, "anthropic")


def test_unknown_provider_raises() -> None:
    with pytest.raises(UsageError, match="unknown LLM provider"):
        parse_tool_calls({}, "gemini")
    with pytest.raises(UsageError, match="unknown LLM provider"):
        tool_results("gemini", [], [])


# ------------------------------------------------------------ SDK objects


class Block(BaseModel):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None


class Message(BaseModel):
    id: str
    role: str
    content: list[Block]


class Function(BaseModel):
    name: str
    arguments: str


class ChatToolCall(BaseModel):
    id: str
    type: str = "function"
    function: Function


class ChatMessage(BaseModel):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[ChatToolCall] | None = None


class Choice(BaseModel):
    index: int = 0
    message: ChatMessage


class ChatCompletion(BaseModel):
    id: str
    choices: list[Choice]


class Item(BaseModel):
    type: str
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


class Response(BaseModel):
    id: str
    output: list[Item]


def test_sdk_objects_are_read_through_model_dump() -> None:
    anthropic = Message(
        id="msg",
        role="assistant",
        content=[
            Block(type="text", text="hi"),
            Block(type="tool_use", id="toolu_1", name="add", input={"a": 1}),
        ],
    )
    assert parse_tool_calls(anthropic, "anthropic") == (
        ToolCall("toolu_1", "add", {"a": 1}),
    )
    assert parse_tool_calls(anthropic.content, "anthropic") == (
        ToolCall("toolu_1", "add", {"a": 1}),
    )
    completion = ChatCompletion(
        id="c",
        choices=[
            Choice(
                message=ChatMessage(
                    tool_calls=[
                        ChatToolCall(
                            id="call_1", function=Function(name="e", arguments="{}")
                        )
                    ]
                )
            )
        ],
    )
    assert parse_tool_calls(completion, "openai_chat") == (ToolCall("call_1", "e", {}),)
    assert parse_tool_calls(completion.choices[0].message, "openai_chat") == (
        ToolCall("call_1", "e", {}),
    )
    response = Response(
        id="r",
        output=[
            Item(type="reasoning"),
            Item(type="function_call", call_id="call_1", name="e", arguments="{}"),
        ],
    )
    assert parse_tool_calls(response, "openai_responses") == (
        ToolCall("call_1", "e", {}),
    )
    assert parse_tool_calls(response.output, "openai_responses") == (
        ToolCall("call_1", "e", {}),
    )


# ------------------------------------------------------------ answers

OK = ToolResult(text="42")
FAILED = error_result("timeout")
CALLS = (ToolCall("id_1", "add", {}), ToolCall("id_2", "slow", {}))


def test_chat_answers_one_tool_message_per_call() -> None:
    assert tool_results("openai_chat", CALLS, [OK, FAILED]) == [
        {"role": "tool", "tool_call_id": "id_1", "content": '{"result": "42"}'},
        {
            "role": "tool",
            "tool_call_id": "id_2",
            "content": json.dumps({"status": "error", "error": FAILED.text}),
        },
    ]


def test_responses_answers_one_output_item_per_call() -> None:
    assert tool_results("openai_responses", CALLS, [OK, FAILED]) == [
        {
            "type": "function_call_output",
            "call_id": "id_1",
            "output": '{"result": "42"}',
        },
        {
            "type": "function_call_output",
            "call_id": "id_2",
            "output": json.dumps({"status": "error", "error": FAILED.text}),
        },
    ]


def test_anthropic_answers_one_user_message_of_results() -> None:
    assert tool_results("anthropic", CALLS, [OK, FAILED]) == [
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "id_1",
                    "content": "42",
                    "is_error": False,
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "id_2",
                    "content": FAILED.text,
                    "is_error": True,
                },
            ],
        }
    ]


@pytest.mark.parametrize("provider", ["openai_chat", "openai_responses", "anthropic"])
def test_no_calls_no_messages(provider: str) -> None:
    assert tool_results(provider, [], []) == []


def test_one_result_per_call_is_required() -> None:
    with pytest.raises(UsageError, match="2 tool calls but 1 results"):
        tool_results("openai_chat", CALLS, [OK])


def with_image(mime: str = "image/png", *, error: bool = False) -> ToolResult:
    return normalize_result(
        {
            "content": [
                {"type": "text", "text": "a chart"},
                {"type": "image", "mimeType": mime, "data": PNG},
            ],
            "isError": error,
        }
    )


def test_images_go_to_the_providers_that_take_them() -> None:
    result = with_image()
    call = [ToolCall("i", "chart", {})]
    (anthropic,) = tool_results("anthropic", call, [result])
    assert anthropic["content"][0]["content"] == [
        {"type": "text", "text": result.text},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
        },
    ]
    (responses,) = tool_results("openai_responses", call, [result])
    assert responses["output"] == [
        {"type": "input_text", "text": json.dumps({"result": result.text})},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
    ]
    (chat_message,) = tool_results("openai_chat", call, [result])
    assert chat_message["content"] == json.dumps({"result": result.text})
    assert '"size": 8' in result.text  # the text still summarises the image


def test_images_off_or_unsupported_or_failed_stay_text() -> None:
    call = [ToolCall("i", "chart", {})]
    for provider in ("anthropic", "openai_responses"):
        for result, images in [
            (with_image(), False),
            (with_image("image/svg+xml"), True),
            (with_image(error=True), True),
        ]:
            (message,) = tool_results(provider, call, [result], images=images)
            body = message.get("output") or message["content"][0]["content"]
            assert isinstance(body, str)
