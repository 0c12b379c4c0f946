"""An agent loop on the OpenAI Responses API, with its tools from an MCP server.

Run it against any MCP server without authentication that has an ``add`` tool (the
scripted model below asks for it):

    python examples/agent_openai_responses.py http://127.0.0.1:8000/mcp --allow-network 127.0.0.0/8

``ScriptedModel`` stands in for ``openai.AsyncOpenAI().responses`` so the loop runs
offline: its ``create`` takes the same arguments and answers in the same format (first
a reasoning item and a ``function_call`` item, then a message that quotes the tool's
result). With the real SDK, pass ``client.responses`` instead; ``run_tool_calls``
accepts its ``Response`` objects as they are, and the loop reads them through
``model_dump``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from typing import Any

from tether import KeyRing, Tether, render_tools, run_tool_calls


class ScriptedModel:
    """A fake ``responses``: a tool call first, then an answer using its result."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def create(
        self, *, model: str, input: list[Any], tools: list[Any]
    ) -> dict[str, Any]:
        """Answer like ``client.responses.create``."""
        self.requests.append({"input": list(input), "tools": tools})
        outputs = [i for i in input if i.get("type") == "function_call_output"]
        if not outputs:  # the user's question: call a tool
            assert any(tool["name"] == "add" for tool in tools), "no add tool offered"
            output: list[dict[str, Any]] = [
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_1",
                    "name": "add",
                    "arguments": '{"a": 2, "b": 40}',
                    "status": "completed",
                },
            ]
        else:
            answer = json.loads(outputs[-1]["output"])["result"]
            output = [
                {
                    "type": "message",
                    "id": "msg_1",
                    "role": "assistant",
                    "status": "completed",
                    "content": [
                        {
                            "type": "output_text",
                            "text": f"2 + 40 = {answer}",
                            "annotations": [],
                        }
                    ],
                }
            ]
        return {
            "id": f"resp_{len(self.requests)}",
            "object": "response",
            "model": model,
            "output": output,
        }


def plain(response: Any) -> dict[str, Any]:
    """A response as a dict (the SDK's objects have ``model_dump``)."""
    if isinstance(response, dict):
        return response
    dumped: dict[str, Any] = response.model_dump(exclude_none=True)
    return dumped


def output_text(output: list[dict[str, Any]]) -> str:
    """The text of the response's messages (the SDK's ``response.output_text``)."""
    return "".join(
        part["text"]
        for item in output
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


async def agent_loop(
    tether: Tether, toolset: str, model: Any, question: str, *, user: str | None = None
) -> str:
    """Ask ``question``; run the model's tool calls until it answers in text."""
    view = await tether.toolset(toolset, user=user)
    tools = render_tools(view.tools, "openai_responses")
    items: list[Any] = [{"role": "user", "content": question}]
    for _ in range(10):  # a bound on the turns, as any agent loop should have
        response = await model.create(model="gpt-5", input=items, tools=tools)
        replies = await run_tool_calls(
            tether, toolset, response, provider="openai_responses", user=user
        )
        output = plain(response)["output"]
        if not replies:  # no tool call: the answer is final
            return output_text(output)
        items.extend(output)  # reasoning and function_call items go back too
        items.extend(replies)  # one function_call_output per call
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
