"""run_tool_calls: a model response's tool calls run through a toolset (TOOL-6 – TOOL-9).

The main flows run against the SDK MCP server peer (and oidc-provider for the
not-connected case); a stub caller injects what a real server cannot produce on demand
(a bug in the caller, a call that never returns) and proves the calls overlap.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from hub.conftest import MakeTether, oauth_server
from peers.fixture import AuthServer, MCPServer, free_port
from peers.mcp_server import PNG
from peers.plugin import PeerFactory
from tether import NetworkError, ToolResult, run_tool_calls
from tether.errors import InvalidResponse, UsageError
from tether.hub.tether import Tether

PROVIDERS = ["openai_chat", "openai_responses", "anthropic"]
GUARD = 30  # seconds: a hang guard only, never a bound the tests rely on


def response_for(provider: str, calls: Sequence[tuple[str, str, Any]]) -> Any:
    """A model response in ``provider``'s format calling ``(id, name, arguments)``.

    String arguments are sent as they are (the OpenAI APIs carry JSON text), others
    are encoded for OpenAI and sent as objects to Anthropic.
    """
    if provider == "anthropic":
        blocks: list[dict[str, Any]] = [{"type": "text", "text": "Working on it."}]
        for call_id, name, args in calls:
            value = json.loads(args) if isinstance(args, str) and _json(args) else args
            blocks.append(
                {"type": "tool_use", "id": call_id, "name": name, "input": value}
            )
        return {"role": "assistant", "content": blocks, "stop_reason": "tool_use"}
    encoded = [(i, n, a if isinstance(a, str) else json.dumps(a)) for i, n, a in calls]
    if provider == "openai_responses":
        return {
            "output": [
                {"type": "reasoning", "id": "rs", "summary": []},
                *(
                    {"type": "function_call", "call_id": i, "name": n, "arguments": a}
                    for i, n, a in encoded
                ),
            ]
        }
    return {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": i,
                            "type": "function",
                            "function": {"name": n, "arguments": a},
                        }
                        for i, n, a in encoded
                    ],
                }
            }
        ]
    }


def _json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def answers(
    provider: str, replies: list[dict[str, Any]]
) -> dict[str, tuple[str, bool]]:
    """Call id → (text the model reads, whether it is an error), checking the shape."""
    out: dict[str, tuple[str, bool]] = {}
    if provider == "anthropic":
        (message,) = replies
        assert message["role"] == "user"
        for block in message["content"]:
            assert set(block) == {"type", "tool_use_id", "content", "is_error"}
            assert block["type"] == "tool_result"
            out[block["tool_use_id"]] = (block["content"], block["is_error"])
        return out
    for reply in replies:
        if provider == "openai_chat":
            assert set(reply) == {"role", "tool_call_id", "content"}
            assert reply["role"] == "tool"
            call_id, body = reply["tool_call_id"], json.loads(reply["content"])
        else:
            assert set(reply) == {"type", "call_id", "output"}
            assert reply["type"] == "function_call_output"
            call_id, body = reply["call_id"], json.loads(reply["output"])
        if "result" in body:
            out[call_id] = (body["result"], False)
        else:
            assert body["status"] == "error"
            out[call_id] = (body["error"], True)
    return out


async def open_toolset(tether: Tether, mcp: MCPServer) -> None:
    await tether.servers.create({"name": "open", "url": mcp.url}, actor="admin")
    await tether.toolsets.create("agent", [{"server": "open"}], actor="admin")


# ---------------------------------------------------------------- real peers


@pytest.mark.realservers
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_parallel_calls_each_answered_in_provider_format(
    provider: str, make_tether: MakeTether, open_mcp_server: MCPServer
) -> None:
    tether = await make_tether()
    await open_toolset(tether, open_mcp_server)
    before = len(open_mcp_server.calls())
    response = response_for(
        provider,
        [
            ("c1", "echo", {"text": "hello"}),
            ("c2", "add", {"a": 2, "b": 40}),
            ("c3", "fail", {"message": "the tool broke"}),
            ("c4", "no_such_tool", {}),
            ("c5", "add", '{"a": 2,'),
            ("c6", "add", "[2, 40]"),
        ],
    )
    with anyio.fail_after(GUARD):
        replies = await run_tool_calls(tether, "agent", response, provider=provider)
    got = answers(provider, replies)
    assert list(got) == ["c1", "c2", "c3", "c4", "c5", "c6"]  # the model's order
    assert got["c1"] == ("hello", False)
    assert got["c2"] == ("42", False)
    assert got["c3"] == ("the tool broke", True)
    assert got["c4"][1]
    assert "no tool with this name" in got["c4"][0]
    assert got["c5"][1]
    # Anthropic carries arguments as an object: the broken JSON arrives as a string
    bad = "not a string" if provider == "anthropic" else "not valid JSON"
    assert bad in got["c5"][0]
    assert got["c6"][1]
    assert "must be a JSON object, not an array" in got["c6"][0]
    reached = sorted(c["tool"] for c in open_mcp_server.calls()[before:])
    assert reached == ["add", "echo", "fail"]  # the refused calls never left Tether


@pytest.mark.realservers
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_no_tool_call_no_messages(
    provider: str, make_tether: MakeTether, open_mcp_server: MCPServer
) -> None:
    tether = await make_tether()
    await open_toolset(tether, open_mcp_server)
    final = {
        "openai_chat": {
            "choices": [{"message": {"role": "assistant", "content": "4"}}]
        },
        "openai_responses": {
            "output": [{"type": "message", "role": "assistant", "content": []}]
        },
        "anthropic": {"role": "assistant", "content": [{"type": "text", "text": "4"}]},
    }[provider]
    assert await run_tool_calls(tether, "agent", final, provider=provider) == []


@pytest.mark.realservers
async def test_deadline_answers_timeout_and_the_session_still_works(
    make_tether: MakeTether, open_mcp_server: MCPServer
) -> None:
    tether = await make_tether()
    await open_toolset(tether, open_mcp_server)
    warm = response_for("anthropic", [("w", "echo", {"text": "warm"})])
    assert answers(
        "anthropic", await run_tool_calls(tether, "agent", warm, provider="anthropic")
    )
    slow = response_for("anthropic", [("s", "slow", {"seconds": 120, "steps": 1})])
    with anyio.fail_after(GUARD):  # the tool sleeps far longer than the guard
        replies = await run_tool_calls(
            tether, "agent", slow, provider="anthropic", deadline=0.5
        )
    text, is_error = answers("anthropic", replies)["s"]
    assert is_error
    assert "did not finish within 0.5 seconds" in text
    again = response_for("anthropic", [("e", "echo", {"text": "still here"})])
    with anyio.fail_after(GUARD):
        replies = await run_tool_calls(tether, "agent", again, provider="anthropic")
    assert answers("anthropic", replies)["e"] == ("still here", False)


@pytest.mark.realservers
async def test_unreachable_server_is_model_visible(make_tether: MakeTether) -> None:
    tether = await make_tether()
    url = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there
    await tether.servers.create({"name": "gone", "url": url}, actor="admin")
    await tether.toolsets.create(
        "agent", [{"server": "gone", "tools": ["echo"]}], actor="admin"
    )
    response = response_for("openai_chat", [("c", "echo", {"text": "x"})])
    with anyio.fail_after(GUARD):
        replies = await run_tool_calls(
            tether, "agent", response, provider="openai_chat"
        )
    text, is_error = answers("openai_chat", replies)["c"]
    assert is_error
    assert "could not be reached" in text


@pytest.mark.realservers
async def test_not_connected_asks_the_user_to_connect(
    make_tether: MakeTether, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    tether = await make_tether()
    await tether.servers.create(
        oauth_server(mcp_server, name="prot", per_user=True), actor="admin"
    )
    await tether.toolsets.create("agent", [{"server": "prot"}], actor="admin")
    response = response_for("openai_responses", [("c", "whoami", {})])
    with anyio.fail_after(GUARD):
        replies = await run_tool_calls(
            tether, "agent", response, provider="openai_responses", user="alice"
        )
    text, is_error = answers("openai_responses", replies)["c"]
    assert is_error
    assert "not connected for this user" in text


@pytest.mark.realservers
async def test_images_reach_the_providers_that_take_them(
    tmp_peers: PeerFactory, make_tether: MakeTether
) -> None:
    media = tmp_peers.mcp_server(MCP_MEDIA_TOOLS=True)
    tether = await make_tether()
    await open_toolset(tether, media)
    calls: list[tuple[str, str, Any]] = [("c", "chart", {})]
    with anyio.fail_after(GUARD):
        (anthropic,) = await run_tool_calls(
            tether, "agent", response_for("anthropic", calls), provider="anthropic"
        )
        (responses,) = await run_tool_calls(
            tether,
            "agent",
            response_for("openai_responses", calls),
            provider="openai_responses",
        )
        (chat,) = await run_tool_calls(
            tether, "agent", response_for("openai_chat", calls), provider="openai_chat"
        )
    caption, image = anthropic["content"][0]["content"]
    assert caption["type"] == "text"
    assert caption["text"].startswith("a 1x1 chart\n")  # then the image's summary
    assert image == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    text, picture = responses["output"]
    assert json.loads(text["text"]) == {"result": caption["text"]}
    assert picture == {
        "type": "input_image",
        "image_url": f"data:image/png;base64,{PNG}",
    }
    body = json.loads(chat["content"])  # Chat Completions: text only
    assert body == {"result": caption["text"]}
    assert '"mimeType": "image/png"' in body["result"]


# ---------------------------------------------------------------- stub caller


class StubCaller:
    """A ``Tether.call`` stand-in; ``behave`` decides what each tool name does."""

    def __init__(self, behave: Mapping[str, Any] | None = None) -> None:
        self.behave = dict(behave or {})
        self.seen: list[tuple[str, str, Any, str | None, tuple[str, ...]]] = []

    async def call(
        self,
        toolset_ref: str,
        tool_name: str,
        arguments: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        reserved: Sequence[str] = (),
    ) -> ToolResult:
        self.seen.append((toolset_ref, tool_name, arguments, user, tuple(reserved)))
        action = self.behave.get(tool_name)
        if action is None:
            return ToolResult(text=f"ran {tool_name}")
        result = await action()
        assert isinstance(result, ToolResult)
        return result


async def test_calls_run_concurrently() -> None:
    """Each call waits for the other to start: only concurrent calls both finish."""
    started = {"a": anyio.Event(), "b": anyio.Event()}

    def waits_for(me: str, other: str) -> Any:
        async def run() -> ToolResult:
            started[me].set()
            await started[other].wait()
            return ToolResult(text=me)

        return run

    caller = StubCaller({"a": waits_for("a", "b"), "b": waits_for("b", "a")})
    response = response_for("openai_chat", [("1", "a", {}), ("2", "b", {})])
    with anyio.fail_after(GUARD):
        replies = await run_tool_calls(caller, "t", response, provider="openai_chat")
    assert answers("openai_chat", replies) == {"1": ("a", False), "2": ("b", False)}


@pytest.mark.parametrize(("limit", "peak"), [(1, 1), (2, 2), (8, 3)])
async def test_max_concurrency_bounds_the_calls_in_flight(
    limit: int, peak: int
) -> None:
    active, seen_peak = 0, 0

    async def busy() -> ToolResult:
        nonlocal active, seen_peak
        active += 1
        seen_peak = max(seen_peak, active)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        active -= 1
        return ToolResult(text="done")

    caller = StubCaller({"x": busy})
    response = response_for("anthropic", [(str(i), "x", {}) for i in range(3)])
    await run_tool_calls(
        caller, "t", response, provider="anthropic", max_concurrency=limit
    )
    assert seen_peak == peak


async def test_deadline_is_per_call() -> None:
    async def never() -> ToolResult:
        await anyio.Event().wait()
        raise AssertionError("unreachable")

    caller = StubCaller({"hang": never})
    response = response_for("openai_responses", [("1", "hang", {}), ("2", "quick", {})])
    with anyio.fail_after(GUARD):
        replies = await run_tool_calls(
            caller, "t", response, provider="openai_responses", deadline=0.05
        )
    got = answers("openai_responses", replies)
    assert got["1"][1]
    assert "did not finish within 0.05 seconds" in got["1"][0]
    assert got["2"] == ("ran quick", False)


async def test_errors_escaping_the_caller_become_results(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def network() -> ToolResult:
        raise NetworkError("connection refused by 10.0.0.1")

    async def bug() -> ToolResult:
        raise RuntimeError("a bug with token=abc")

    async def own_timeout() -> ToolResult:
        raise TimeoutError

    caller = StubCaller({"net": network, "bug": bug, "late": own_timeout})
    response = response_for(
        "anthropic", [("1", "net", {}), ("2", "bug", {}), ("3", "late", {})]
    )
    with caplog.at_level(logging.ERROR, logger="tether.hub.agent"):
        replies = await run_tool_calls(
            caller, "t", response, provider="anthropic", deadline=None
        )
    got = answers("anthropic", replies)
    assert got["1"] == ("The tool server could not be reached. Try again later.", True)
    assert got["2"][1]
    assert "internal error" in got["2"][0]
    assert "abc" not in got["2"][0]
    assert got["3"][1]
    assert "did not answer in time" in got["3"][0]
    assert "tool call 'bug' of toolset 't' failed" in caplog.text


async def test_refused_calls_never_reach_the_caller_and_options_pass_through() -> None:
    caller = StubCaller()
    response = response_for(
        "openai_chat",
        [("1", "ok", {"k": 1}), ("2", "bad", "{"), ("3", "", {}), ("4", "Mine", {})],
    )
    replies = await run_tool_calls(
        caller,
        "tools",
        response,
        provider="openai_chat",
        user="alice",
        reserved=["mine"],
    )
    assert caller.seen == [("tools", "ok", {"k": 1}, "alice", ("mine",))]
    got = answers("openai_chat", replies)
    assert list(got) == ["1", "2", "3"]  # the host's own tool is the host's to answer
    assert got["1"] == ("ran ok", False)
    assert got["2"][1]
    assert got["3"][1]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_only_the_hosts_own_tools_called_means_no_messages(provider: str) -> None:
    caller = StubCaller()
    response = response_for(provider, [("1", "search_web", {"q": "x"})])
    replies = await run_tool_calls(
        caller, "t", response, provider=provider, reserved=["search_web"]
    )
    assert replies == []
    assert caller.seen == []


@pytest.mark.parametrize(
    "options",
    [
        {"provider": "gemini"},
        {"provider": "anthropic", "deadline": 0},
        {"provider": "anthropic", "deadline": -1},
        {"provider": "anthropic", "deadline": math.nan},
        {"provider": "anthropic", "max_concurrency": 0},
    ],
)
async def test_bad_options_raise_before_any_call(options: dict[str, Any]) -> None:
    caller = StubCaller()
    response = response_for("anthropic", [("1", "x", {})])
    with pytest.raises(UsageError):
        await run_tool_calls(caller, "t", response, **options)
    assert caller.seen == []


async def test_a_response_in_another_format_or_without_ids_raises() -> None:
    caller = StubCaller()
    anthropic = response_for("anthropic", [("1", "x", {})])
    with pytest.raises(UsageError, match="not an OpenAI Chat Completions"):
        await run_tool_calls(caller, "t", anthropic, provider="openai_chat")
    no_id = response_for("openai_chat", [("", "x", {})])
    with pytest.raises(InvalidResponse):
        await run_tool_calls(caller, "t", no_id, provider="openai_chat")
    assert caller.seen == []
