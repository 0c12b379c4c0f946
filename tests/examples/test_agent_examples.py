"""The agent loops of examples/, run end to end against the SDK MCP server peer.

Each example registers the peer, gives its tools to a scripted model in one provider's
format, runs the model's tool call through ``run_tool_calls`` and returns the model's
final answer, which quotes the tool's result (TOOL-6 – TOOL-8). One example also runs
as its own process, as its docstring tells a user to.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from peers.fixture import MCPServer
from tether import KeyRing, Tether

pytestmark = pytest.mark.realservers

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DOC = EXAMPLES.parent / "docs" / "agents.md"
NAMES = ["agent_openai_chat", "agent_openai_responses", "agent_anthropic"]
LOOPBACK = ["127.0.0.0/8", "::1/128"]
GUARD = 60  # seconds: a hang guard only


def example(name: str) -> ModuleType:
    """Load ``examples/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", NAMES)
def test_docs_show_the_examples_loops(name: str) -> None:
    found = re.search(
        rf"<!-- loop: {name} -->\n```python\n(.*?)```", DOC.read_text(), re.DOTALL
    )
    assert found, f"no {name} loop in {DOC}"
    assert "async def agent_loop(" in found.group(1)
    assert found.group(1) in (EXAMPLES / f"{name}.py").read_text()


@pytest.mark.parametrize("name", NAMES)
async def test_example_answers_with_the_tool_result(
    name: str, open_mcp_server: MCPServer
) -> None:
    before = len(open_mcp_server.calls())
    # (no cancel scope around main: it opens and closes the Tether's session pool)
    answer = await example(name).main(open_mcp_server.url, LOOPBACK)
    assert answer == "2 + 40 = 42"
    (call,) = open_mcp_server.calls()[before:]
    assert call["tool"] == "add"


async def test_each_loop_sends_back_what_its_provider_expects(
    open_mcp_server: MCPServer,
) -> None:
    """The second request of each loop carries the model's turn and the results."""
    async with await Tether.open(
        database_url="memory://",
        key_ring=KeyRing.generate(),
        redirect_uri="http://127.0.0.1:8470/oauth/callback",
        allow_networks=LOOPBACK,
    ) as tether:
        await tether.servers.create(
            {"name": "demo", "url": open_mcp_server.url}, actor="t"
        )
        await tether.toolsets.create("agent", [{"server": "demo"}], actor="t")
        sent: dict[str, Any] = {}
        for name in NAMES:
            module = example(name)
            model = module.ScriptedModel()
            with anyio.fail_after(GUARD):
                await module.agent_loop(tether, "agent", model, "What is 2 + 40?")
            assert len(model.requests) == 2
            sent[name] = model.requests[1]
    chat = sent["agent_openai_chat"]["messages"]
    assert [m["role"] for m in chat] == ["user", "assistant", "tool"]
    assert chat[1]["tool_calls"][0]["id"] == "call_1"
    assert chat[2] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": json.dumps({"result": "42"}),
    }
    responses = sent["agent_openai_responses"]["input"]
    assert [i.get("type", "message") for i in responses] == [
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
    ]
    assert responses[3] == {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": json.dumps({"result": "42"}),
    }
    anthropic = sent["agent_anthropic"]["messages"]
    assert [m["role"] for m in anthropic] == ["user", "assistant", "user"]
    assert [b["type"] for b in anthropic[1]["content"]] == ["text", "tool_use"]
    assert anthropic[2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": "42",
            "is_error": False,
        }
    ]


def test_example_runs_as_a_program(open_mcp_server: MCPServer) -> None:
    args = [str(EXAMPLES / "agent_anthropic.py"), open_mcp_server.url]
    for network in LOOPBACK:
        args += ["--allow-network", network]
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=GUARD
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2 + 40 = 42"
