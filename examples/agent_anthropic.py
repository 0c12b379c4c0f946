"""An agent loop on the Anthropic Messages API, with its tools from an MCP server.

Run it against any MCP server without authentication that has an ``add`` tool (the
scripted model below asks for it):

    python examples/agent_anthropic.py http://127.0.0.1:8000/mcp --allow-network 127.0.0.0/8

``ScriptedModel`` stands in for ``anthropic.AsyncAnthropic().messages`` so the loop runs
offline: its ``create`` takes the same arguments and answers in the same format (first a
``tool_use`` block, then a final text answer that quotes the tool's result). With the
real SDK, pass ``client.messages`` instead; ``run_tool_calls`` accepts its ``Message``
objects as they are, and the loop reads them through ``model_dump``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from tether import KeyRing, Tether, render_tools, run_tool_calls


class ScriptedModel:
    """A fake ``messages`` resource: a tool call first, then an answer using its result."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def create(
        self, *, model: str, max_tokens: int, messages: list[Any], tools: list[Any]
    ) -> dict[str, Any]:
        """Answer like ``client.messages.create``."""
        self.requests.append({"messages": list(messages), "tools": tools})
        last = messages[-1]["content"]
        results = [
            b for b in last if isinstance(b, dict) and b.get("type") == "tool_result"
        ]
        if not results:  # the user's question: call a tool
            assert any(tool["name"] == "add" for tool in tools), "no add tool offered"
            return {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": model,
                "stop_reason": "tool_use",
                "content": [
                    {"type": "text", "text": "Let me add those."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "add",
                        "input": {"a": 2, "b": 40},
                    },
                ],
            }
        answer = results[0]["content"]
        return {
            "id": "msg_2",
            "type": "message",
            "role": "assistant",
            "model": model,
            "stop_reason": "end_turn",
            "content": [{"type": "text", "text": f"2 + 40 = {answer}"}],
        }


def plain(response: Any) -> dict[str, Any]:
    """A response as a dict (the SDK's objects have ``model_dump``)."""
    if isinstance(response, dict):
        return response
    dumped: dict[str, Any] = response.model_dump(exclude_none=True)
    return dumped


async def agent_loop(
    tether: Tether, toolset: str, model: Any, question: str, *, user: str | None = None
) -> str:
    """Ask ``question``; run the model's tool calls until it answers in text."""
    view = await tether.toolset(toolset, user=user)
    tools = render_tools(view.tools, "anthropic")
    messages: list[Any] = [{"role": "user", "content": question}]
    for _ in range(10):  # a bound on the turns, as any agent loop should have
        response = await model.create(
            model="claude-sonnet-4-5", max_tokens=1024, messages=messages, tools=tools
        )
        replies = await run_tool_calls(
            tether, toolset, response, provider="anthropic", user=user
        )
        content = plain(response)["content"]
        if not replies:  # no tool call: the answer is final
            return "".join(b["text"] for b in content if b["type"] == "text")
        messages.append({"role": "assistant", "content": content})
        messages.extend(replies)  # one user message of tool_result blocks
    raise RuntimeError("the model kept calling tools")


async def main(url: str, allow_networks: Sequence[str] = ()) -> str:
    """Register the server at ``url``, give its tools to the model, ask a question."""
    async with await Tether.open(
        database_url="memory://",
        key_ring=KeyRing.generate(),
        redirect_uri="http://127.0.0.1:8470/oauth/callback",
        allow_networks=allow_networks,
    ) as tether:
        await tether.servers.create({"name": "demo", "url": url}, actor="example")
        await tether.toolsets.create("agent", [{"server": "demo"}], actor="example")
        return await agent_loop(tether, "agent", ScriptedModel(), "What is 2 + 40?")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the MCP server's URL")
    parser.add_argument("--allow-network", action="append", default=[])
    args = parser.parse_args()
    print(asyncio.run(main(args.url, args.allow_network)))
