"""SessionPool bookkeeping; sessions connect lazily, so no server is needed here.

A pool that talks to a real server is in test_session.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio.abc
import httpx2
import pytest

from tether.errors import UsageError
from tether.mcp.pool import SessionPool
from tether.mcp.session import MCPSession


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(
        transport=httpx2.MockTransport(lambda r: httpx2.Response(500))
    ) as c:
        yield c


class Factory:
    def __init__(self, http: httpx2.AsyncClient) -> None:
        self.http = http
        self.made: list[tuple[str, str]] = []

    def __call__(
        self, server_id: str, subject: str, tg: anyio.abc.TaskGroup
    ) -> MCPSession:
        self.made.append((server_id, subject))
        return MCPSession(f"https://{server_id}.example/mcp", self.http, task_group=tg)


async def test_reuses_a_session_per_server_and_subject(
    http: httpx2.AsyncClient,
) -> None:
    factory = Factory(http)
    async with SessionPool(factory) as pool:
        alice = await pool.get("files", "alice")
        assert await pool.get("files", "alice") is alice
        assert await pool.get("files", "bob") is not alice
        assert await pool.get("mail", "alice") is not alice
        assert len(pool) == 3
    assert factory.made == [("files", "alice"), ("files", "bob"), ("mail", "alice")]


async def test_drop_one_subject(http: httpx2.AsyncClient) -> None:
    async with SessionPool(Factory(http)) as pool:
        alice = await pool.get("files", "alice")
        bob = await pool.get("files", "bob")
        assert await pool.drop("files", "alice") == 1
        assert pool.keys() == [("files", "bob")]
        with pytest.raises(UsageError, match="closed"):
            await alice.list_tools()
        assert await pool.get("files", "alice") is not alice  # a new one on next use
        assert await pool.get("files", "bob") is bob


async def test_drop_a_server_after_a_config_change(http: httpx2.AsyncClient) -> None:
    async with SessionPool(Factory(http)) as pool:
        await pool.get("files", "alice")
        await pool.get("files", "bob")
        mail = await pool.get("mail", "alice")
        assert await pool.drop("files") == 2
        assert await pool.drop("files") == 0
        assert pool.keys() == [("mail", "alice")]
        assert await pool.get("mail", "alice") is mail


async def test_closes_everything_on_exit(http: httpx2.AsyncClient) -> None:
    async with SessionPool(Factory(http)) as pool:
        session = await pool.get("files", "alice")
    assert len(pool) == 0
    with pytest.raises(UsageError):
        await session.call_tool("echo", {})
    with pytest.raises(UsageError, match="not running"):
        await pool.get("files", "alice")


async def test_needs_to_be_entered(http: httpx2.AsyncClient) -> None:
    with pytest.raises(UsageError, match="not running"):
        await SessionPool(Factory(http)).get("files", "alice")


async def test_exceptions_in_the_body_are_not_wrapped(http: httpx2.AsyncClient) -> None:
    async def body() -> None:
        async with SessionPool(Factory(http)) as pool:
            await pool.get("files", "alice")
            raise KeyError("boom")

    with pytest.raises(KeyError):
        await body()
