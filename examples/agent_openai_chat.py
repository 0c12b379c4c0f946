"""An agent loop on the OpenAI Chat Completions API, with its tools from an MCP server.

Run it against any MCP server without authentication that has an ``add`` tool (the
scripted model below asks for it):

    python examples/agent_openai_chat.py http://127.0.0.1:8000/mcp --allow-network 127.0.0.0/8

``ScriptedModel`` stands in for ``openai.AsyncOpenAI().chat.completions`` so the loop
runs offline: its ``create`` takes the same arguments and answers in the same format
(first an assistant message with ``tool_calls``, then a final answer that quotes the
tool's result). With the real SDK, pass ``client.chat.completions`` instead;
``run_tool_calls`` accepts its ``ChatCompletion`` objects as they are, and the loop
reads them through ``model_dump``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from typing import Any

from tether import KeyRing, Tether, render_tools, run_tool_calls


class ScriptedModel:
    """A fake ``chat.completions``: a tool call first, then an answer using its result."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def create(
        self, *, model: str, messages: list[Any], tools: list[Any]
    ) -> dict[str, Any]:
        """Answer like ``client.chat.completions.create``."""
        self.requests.append({"messages": list(messages), "tools": tools})
        last = messages[-1]
        if last["role"] != "tool":  # the user's question: call a tool
            names = [tool["function"]["name"] for tool in tools]
            assert "add" in names, "no add tool offered"
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "add", "arguments": '{"a": 2, "b": 40}'},
                    }
                ],
            }
            finish = "tool_calls"
        else:
            answer = json.loads(last["content"])["result"]
            message = {"role": "assistant", "content": f"2 + 40 = {answer}"}
            finish = "stop"
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
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
    tools = render_tools(view.tools, "openai_chat")
    messages: list[Any] = [{"role": "user", "content": question}]
    for _ in range(10):  # a bound on the turns, as any agent loop should have
        response = await model.create(model="gpt-5", messages=messages, tools=tools)
        replies = await run_tool_calls(
            tether, toolset, response, provider="openai_chat", user=user
        )
        message = plain(response)["choices"][0]["message"]
        if not replies:  # no tool call: the answer is final
            return str(message.get("content") or "")
        messages.append(  # the assistant's turn as the API takes it back
            {
                "role": "assistant",
                "content": message.get("content"),
                "tool_calls": message["tool_calls"],
            }
        )
        messages.extend(replies)  # one "tool" message per call
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
