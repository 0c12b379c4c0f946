"""Tools through the facade across the server matrix of issue #3 (real loopback peers).

Protocol revisions (stateful 2025-11-25, stateless 2026-07-28, 2025-03-26), paginated tool
lists, ``list_changed``, SSE progress, tool errors on HTTP 200 and 4xx, name collisions,
odd names and recursive schemas, and MCP session expiry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest

from hub.conftest import LOOPBACK, MakeTether, connect, oauth_server
from peers.fixture import MCPServer
from peers.plugin import PeerFactory
from tether.hub.tether import Tether
from tether.mcp.naming import NAME_PATTERN
from tether.mcp.render import render_tools
from tether.store.base import SHARED

pytestmark = pytest.mark.realservers

STATEFUL = "2025-11-25"  # sessions exist only in the handshake revisions
LONG_NAME = "long_" + "x" * 90 + "_name"


@pytest.fixture(scope="module")
def odd_server(peer_factory: PeerFactory) -> MCPServer:
    """Open server with the 100-character tool name and the recursive-$ref schema."""
    return peer_factory.mcp_server(MCP_ODD_TOOLS=1)


@pytest.fixture(scope="module")
def big_server(peer_factory: PeerFactory) -> MCPServer:
    """Open server with 128 tools served 50 per ``tools/list`` page."""
    return peer_factory.mcp_server(MCP_BIG_TOOLS=1)


async def open_server(tether: Tether, name: str, mcp: MCPServer) -> str:
    """Register an unauthenticated server; its id."""
    record = await tether.servers.create(
        {"name": name, "url": mcp.url, "allow_networks": LOOPBACK}, actor="admin"
    )
    return record.id


def calls_of(mcp: MCPServer, tool: str) -> list[dict[str, Any]]:
    """The MCP server's record of ``tools/call`` requests for one tool."""
    return [c for c in mcp.calls() if c["tool"] == tool]


# ------------------------------------------------------------ protocol revisions


@pytest.mark.parametrize(
    ("fixture", "version", "stateful"),
    [
        ("mcp_server_2025_11_25", "2025-11-25", True),
        ("mcp_server_2026_07_28", "2026-07-28", False),
        ("mcp_server_2025_03_26", "2025-03-26", True),
    ],
)
async def test_revision_list_call_and_health(
    make_tether: MakeTether,
    request: pytest.FixtureRequest,
    fixture: str,
    version: str,
    stateful: bool,
) -> None:
    """Each revision lists and calls through Tether; health records the version."""
    mcp: MCPServer = request.getfixturevalue(fixture)
    tether = await make_tether()
    server = await tether.servers.create(oauth_server(mcp, name="rev"), actor="admin")
    await connect(tether, "rev")

    tools = await tether.list_tools("rev")
    assert {"echo", "add", "fail", "slow", "whoami"} <= {t["name"] for t in tools}
    health = await tether.stores.tools.get_health(server.id, SHARED)
    assert health is not None
    assert health.status == "ok"
    assert health.protocol_version == version
    assert "tools" in health.capabilities
    assert health.tools_synced_at is not None

    marker = f"rev-{version}"
    result = await tether.call_tool("rev", "echo", {"text": marker})
    assert not result.is_error, result.text
    assert result.text == marker
    added = await tether.call_tool("rev", "add", {"a": 20, "b": 22})
    assert added.structured == {"result": 42}

    seen = calls_of(mcp, "echo")[-1]
    assert seen["protocol_version"] == version
    assert bool(seen["session_id"]) is stateful


# ------------------------------------------------------------ tool lists


async def test_tool_list_spans_pages(
    make_tether: MakeTether, big_server: MCPServer
) -> None:
    """128 tools at 50 per page: every page is followed and cached once."""
    tether = await make_tether()
    server_id = await open_server(tether, "big", big_server)
    tools = await tether.list_tools("big")
    names = [t["name"] for t in tools]
    assert len(names) == 8 + 120
    assert len(set(names)) == len(names)
    assert {"bulk_000", "bulk_049", "bulk_050", "bulk_119", "echo"} <= set(names)
    entry = await tether.stores.tools.get(server_id, SHARED)
    assert entry is not None
    assert len(entry.tools) == 128
    result = await tether.call_tool("big", "bulk_119", {"text": "x"})
    assert result.text == "bulk_119: x"


@pytest.mark.parametrize("version", [STATEFUL, "2026-07-28"])
async def test_list_changed_invalidates_cache(
    make_tether: MakeTether, tmp_peers: PeerFactory, version: str
) -> None:
    """``change_tools`` sends list_changed; the next list has the new tool at once.

    Stateful: the notification rides the call's SSE stream. Stateless (2026-07-28):
    it reaches only ``subscriptions/listen`` streams, which the session keeps open.
    """
    mcp = tmp_peers.mcp_server(MCP_PROTOCOL_VERSIONS=version)
    tether = await make_tether()
    server_id = await open_server(tether, "changing", mcp)
    before = {t["name"] for t in await tether.list_tools("changing")}
    assert "added_1" not in before
    assert await tether.stores.tools.get(server_id, SHARED) is not None
    health = await tether.stores.tools.get_health(server_id, SHARED)
    assert health is not None
    assert health.protocol_version == version
    if version != STATEFUL:  # the subscription opens in the background; wait for it
        for _ in range(1500):  # polls a real condition; 30 s hang guard
            if await anyio.to_thread.run_sync(mcp.listeners):
                break
            await anyio.sleep(0.02)
        assert await anyio.to_thread.run_sync(mcp.listeners) == 1

    result = await tether.call_tool("changing", "change_tools", {})
    assert result.structured == {"added": "added_1"}
    # the callback runs in a task of its own
    for _ in range(1500):  # polls a real condition; 30 s hang guard
        if await tether.stores.tools.get(server_id, SHARED) is None:
            break
        await anyio.sleep(0.02)
    assert await tether.stores.tools.get(server_id, SHARED) is None
    after = {t["name"] for t in await tether.list_tools("changing")}  # no refresh=
    assert after == before | {"added_1"}


async def test_progress_arrives_before_result(
    make_tether: MakeTether, open_mcp_server: MCPServer
) -> None:
    """``slow`` streams progress notifications over SSE before its result.

    The facade's ``call_tool`` takes no progress callback, so this goes through the
    registry's pooled session (the same one ``call_tool`` uses).
    """
    tether = await make_tether()
    await open_server(tether, "open", open_mcp_server)
    server = await tether.servers.get("open")
    session = await tether.tools.session(server, SHARED)
    events: list[tuple[str, float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        events.append(("progress", done, total, message))

    raw = await session.call_tool(
        "slow", {"seconds": 0.4, "steps": 4}, progress_callback=progress
    )
    events.append(("result", 0, None, None))
    assert [e[0] for e in events] == ["progress"] * 4 + ["result"]
    assert [e[1] for e in events[:4]] == [1, 2, 3, 4]
    assert events[3][2:] == (4, "step 4/4")
    assert raw["content"][0]["text"] == "slept 0.4s in 4 steps"
    via_facade = await tether.call_tool("open", "slow", {"seconds": 0.1, "steps": 2})
    assert via_facade.text == "slept 0.1s in 2 steps"


@pytest.mark.parametrize("status", [400, 422])
async def test_tool_errors_are_model_visible(
    make_tether: MakeTether, tmp_peers: PeerFactory, status: int
) -> None:
    """isError on HTTP 200 (``fail``) and on a 4xx (``http_error``) are error results."""
    mcp = tmp_peers.mcp_server(MCP_ERROR_HTTP_STATUS=status)
    tether = await make_tether()
    await open_server(tether, "errs", mcp)

    failed = await tether.call_tool("errs", "fail", {"message": "it broke"})
    assert failed.is_error
    assert failed.error_code == "tool_error"
    assert failed.text == "it broke"
    assert failed.to_model()

    refused = await tether.call_tool("errs", "http_error", {})
    assert refused.is_error
    # the SDK turns the 4xx into a JSON-RPC error: the body's own isError text is lost,
    # the model still reads a scrubbed error naming the status
    assert refused.error_code == "jsonrpc_error"
    assert f"HTTP {status}" in refused.text
    assert calls_of(mcp, "http_error"), "the request reached the server"
    # the session survives both
    ok = await tether.call_tool("errs", "echo", {"text": "still here"})
    assert ok.text == "still here"


# ------------------------------------------------------------ names and schemas


async def test_collisions_across_three_servers_and_reserved(
    make_tether: MakeTether,
    open_mcp_server: MCPServer,
    odd_server: MCPServer,
    big_server: MCPServer,
) -> None:
    """Shared names are prefixed per server, reserved names avoided, calls routed."""
    tether = await make_tether()
    ids = {
        name: await open_server(tether, name, mcp)
        for name, mcp in (
            ("alpha", open_mcp_server),
            ("beta", odd_server),
            ("gamma", big_server),
        )
    }
    await tether.toolsets.create(
        "three",
        [
            {"server": "alpha", "tools": ["echo", "add"]},
            {"server": "beta", "tools": ["echo", "tree"]},
            {"server": "gamma", "tools": ["echo", "bulk_007"]},
        ],
        actor="admin",
    )
    reserved = ["tree", "ADD"]
    view = await tether.toolset("three", reserved=reserved)
    exposed = {(t.server_id, t.original_name): t.name for t in view.tools}
    assert len(exposed) == 6
    names = list(exposed.values())
    assert len({n.lower() for n in names}) == 6
    assert all(NAME_PATTERN.match(n) for n in names)
    assert exposed[(ids["alpha"], "echo")] == "alpha__echo"
    assert exposed[(ids["beta"], "echo")] == "beta__echo"
    assert exposed[(ids["gamma"], "echo")] == "gamma__echo"
    assert exposed[(ids["gamma"], "bulk_007")] == "bulk_007"  # unique: unprefixed
    assert exposed[(ids["beta"], "tree")] not in ("tree", "Tree")  # reserved
    assert exposed[(ids["alpha"], "add")].lower() != "add"  # reserved, case-folded

    for server_name, server_id in ids.items():
        result = await tether.call(
            "three",
            exposed[(server_id, "echo")],
            {"text": server_name},
            reserved=reserved,
        )
        assert result.text == server_name
    added = await tether.call(
        "three", exposed[(ids["alpha"], "add")], {"a": 1, "b": 2}, reserved=reserved
    )
    assert added.text == "3"
    # without reserved names the unique tool keeps its own name
    unreserved = await tether.toolset("three")
    assert "tree" in {t.name for t in unreserved.tools}


def _walk_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _walk_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_keys(item)


async def test_long_name_and_recursive_schema(
    make_tether: MakeTether, odd_server: MCPServer
) -> None:
    """The 100-character name fits 64 characters and is callable; $ref is flattened."""
    tether = await make_tether()
    await open_server(tether, "odd", odd_server)
    await tether.toolsets.create(
        "odd", [{"server": "odd", "tools": [LONG_NAME, "tree"]}], actor="admin"
    )
    view = await tether.toolset("odd")
    by_original = {t.original_name: t for t in view.tools}
    assert set(by_original) == {LONG_NAME, "tree"}
    long_tool = by_original[LONG_NAME]
    assert len(LONG_NAME) == 100
    assert len(long_tool.name) <= 64
    assert NAME_PATTERN.match(long_tool.name)
    assert view.names.resolve(long_tool.name).tool_name == LONG_NAME
    called = await tether.call("odd", long_tool.name, {"text": "long"})
    assert not called.is_error, called.text
    assert called.text == f"{LONG_NAME}: long"

    tree = by_original["tree"]
    for provider in ("openai_chat", "openai_responses", "anthropic"):
        rendered = render_tools(view.tools, provider)
        assert len(rendered) == 2
        text = json.dumps(rendered)
        assert "$ref" not in text, provider
        assert "$defs" not in text, provider
        keys = set(_walk_keys(rendered))
        assert not keys & {"$ref", "$defs", "definitions"}
        names = {r.get("name") or r.get("function", {}).get("name") for r in rendered}
        assert names == {long_tool.name, tree.name}
    anthropic = {r["name"]: r for r in render_tools(view.tools, "anthropic")}
    schema = anthropic[tree.name]["input_schema"]
    assert schema["type"] == "object"
    assert "root" in schema["properties"]
    assert schema["required"] == ["root"]
    # and the flattened tool is callable with a nested tree
    args = {"root": {"name": "a", "children": [{"name": "b"}]}, "mode": "flat"}
    result = await tether.call("odd", tree.name, args)
    assert result.structured == args


# ------------------------------------------------------------ session expiry


async def test_expired_session_is_recreated_once(
    make_tether: MakeTether, tmp_peers: PeerFactory
) -> None:
    """A 404 on the session id makes a new session; the call then succeeds."""
    mcp = tmp_peers.mcp_server(MCP_PROTOCOL_VERSIONS=STATEFUL)
    tether = await make_tether()
    await open_server(tether, "exp", mcp)
    assert (await tether.call_tool("exp", "echo", {"text": "one"})).text == "one"
    first = calls_of(mcp, "echo")[-1]["session_id"]
    assert mcp.expire_sessions() >= 1

    result = await tether.call_tool("exp", "echo", {"text": "two"})
    assert not result.is_error, result.text
    assert result.text == "two"
    second = calls_of(mcp, "echo")[-1]["session_id"]
    assert second
    assert second != first
    # and the new session is kept for the next call
    assert (await tether.call_tool("exp", "echo", {"text": "three"})).text == "three"
    assert calls_of(mcp, "echo")[-1]["session_id"] == second


async def test_second_expiry_within_one_call_is_an_error_result(
    make_tether: MakeTether, tmp_peers: PeerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The renewed session expiring too ends the call with ``session_expired``.

    The SDK session API exposes no hook between renewal and the repeated request, so the
    test wraps the pooled HTTP client's ``send``: right after the new session's
    ``notifications/initialized`` is accepted, it asks the real server to expire every
    session again. The server itself answers the repeated ``tools/call`` with 404.
    """
    mcp = tmp_peers.mcp_server(MCP_PROTOCOL_VERSIONS=STATEFUL)
    tether = await make_tether()
    await open_server(tether, "exp2", mcp)
    server = await tether.servers.get("exp2")
    session = await tether.tools.session(server, SHARED)
    assert (await tether.call_tool("exp2", "echo", {"text": "one"})).text == "one"

    inner = session._http._inner  # the shared guarded client the session sends through
    original = inner.send
    armed = {"on": False, "fired": 0}

    async def send(request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        response = await original(request, **kwargs)
        if (
            armed["on"]
            and request.method == "POST"
            and b"notifications/initialized" in request.content
        ):
            armed["fired"] += 1
            await anyio.to_thread.run_sync(mcp.expire_sessions)
        return response

    monkeypatch.setattr(inner, "send", send)
    echoes = len(calls_of(mcp, "echo"))
    mcp.expire_sessions()
    armed["on"] = True
    result = await tether.call_tool("exp2", "echo", {"text": "two"})
    armed["on"] = False
    assert armed["fired"] == 1, "exactly one renewal was attempted"
    assert result.is_error
    assert result.error_code == "session_expired", result
    assert len(calls_of(mcp, "echo")) == echoes  # both attempts refused with 404

    # the next call starts over and works
    monkeypatch.undo()
    again = await tether.call_tool("exp2", "echo", {"text": "three"})
    assert again.text == "three", again
