"""SessionPool bookkeeping; sessions connect lazily, so no server is needed here.

A pool that talks to a real server is in test_session.py.
"""

from __future__ import annotations

import logging
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


class Watching(Factory):
    """A factory whose sessions leave a task running in the pool's task group."""

    def __init__(self, http: httpx2.AsyncClient) -> None:
        super().__init__(http)
        self.running = anyio.Event()
        self.ended = anyio.Event()

    def __call__(
        self, server_id: str, subject: str, tg: anyio.abc.TaskGroup
    ) -> MCPSession:
        tg.start_soon(self._connection)
        return super().__call__(server_id, subject, tg)

    async def _connection(self) -> None:
        self.running.set()
        try:
            await anyio.sleep_forever()
        finally:
            self.ended.set()


async def test_started_and_closed_from_other_tasks_and_cancel_scopes(
    http: httpx2.AsyncClient,
) -> None:
    """R6.4.5: the starter's cancel scopes are its own; the pool's tasks outlive them."""
    factory = Watching(http)
    pool = SessionPool(factory)
    with anyio.CancelScope():  # the starter leaves a scope after starting the pool
        await pool.start()
    with anyio.fail_after(60):  # an application's timeout around a call
        await pool.get("files", "alice")
    await factory.running.wait()
    async with anyio.create_task_group() as tg:  # closed from another task
        tg.start_soon(pool.aclose)
    assert factory.ended.is_set()
    with pytest.raises(UsageError, match="not running"):
        await pool.get("files", "alice")
    await pool.aclose()  # a second close is harmless


async def test_a_cancelled_closer_still_ends_the_pool(http: httpx2.AsyncClient) -> None:
    factory = Watching(http)
    pool = SessionPool(factory)
    await pool.start()
    await pool.get("files", "alice")
    await factory.running.wait()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await pool.aclose()
    assert factory.ended.is_set()


async def test_started_once(http: httpx2.AsyncClient) -> None:
    async with SessionPool(Factory(http)) as pool:
        with pytest.raises(UsageError, match="already started"):
            await pool.start()
    with pytest.raises(UsageError, match="already started"):
        await pool.start()


class Told(logging.Handler):
    """Sets an event when the pool logs an error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.logged = anyio.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.logged.set()


async def test_a_failed_task_group_is_logged_and_refuses_new_sessions(
    http: httpx2.AsyncClient,
) -> None:
    """Sessions catch their own errors; should one escape, the pool says so plainly."""

    class Failing(Factory):
        def __call__(
            self, server_id: str, subject: str, tg: anyio.abc.TaskGroup
        ) -> MCPSession:
            tg.start_soon(self._fail)
            return super().__call__(server_id, subject, tg)

        async def _fail(self) -> None:
            raise RuntimeError("a bug in a connection task")

    told = Told()
    logger = logging.getLogger("tether.mcp.pool")
    logger.addHandler(told)
    try:
        pool = SessionPool(Failing(http))
        await pool.start()
        await pool.get("files", "alice")
        await told.logged.wait()
    finally:
        logger.removeHandler(told)
    assert told.messages == ["the MCP session pool's task group failed"]
    with pytest.raises(UsageError, match="not running"):
        await pool.get("files", "bob")
    await pool.aclose()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class BusySession(MCPSession):
    """A session with a request in flight, as far as the pool can tell."""

    @property
    def busy(self) -> bool:
        return True


async def test_idle_sessions_are_evicted_and_remade_on_next_use(
    http: httpx2.AsyncClient,
) -> None:
    """R6.4.6: unused, nothing in flight, no subscription: closed; the next get remakes."""
    clock = Clock()
    factory = Factory(http)
    async with SessionPool(factory, idle_seconds=600, clock=clock) as pool:
        idle = await pool.get("files", "alice")
        clock.now += 300
        recent = await pool.get("files", "bob")
        clock.now += 300  # alice unused for 600 s, bob for 300 s
        assert pool.evict_idle() == 1
        assert pool.keys() == [("files", "bob")]
        assert await pool.get("files", "bob") is recent
        remade = await pool.get("files", "alice")
        assert remade is not idle
        assert factory.made.count(("files", "alice")) == 2
    with pytest.raises(UsageError, match="closed"):
        await idle.list_tools()


async def test_busy_sessions_are_kept(http: httpx2.AsyncClient) -> None:
    """In flight: kept. Watching but not connected holds nothing: evicted.

    A connected session with a subscription is kept too (tests/hub, real server).
    """
    clock = Clock()

    def factory(server_id: str, subject: str, tg: anyio.abc.TaskGroup) -> MCPSession:
        kind = BusySession if subject == "busy" else MCPSession
        return kind(f"https://{server_id}.example/mcp", http, task_group=tg)

    async with SessionPool(factory, idle_seconds=600, clock=clock) as pool:
        busy = await pool.get("files", "busy")
        watching = await pool.get("files", "watching")
        watching.watch_tools()
        await pool.get("files", "idle")
        clock.now += 601
        assert pool.evict_idle() == 2
        assert pool.keys() == [("files", "busy")]
        assert await pool.get("files", "busy") is busy


async def test_get_sweeps_at_most_every_half_period(http: httpx2.AsyncClient) -> None:
    clock = Clock()
    async with SessionPool(Factory(http), idle_seconds=600, clock=clock) as pool:
        first = await pool.get("files", "alice")
        await pool.get("mail", "alice")
        clock.now += 299  # before the first sweep is due: nothing looked at
        await pool.get("mail", "alice")
        clock.now += 302  # files: 601 s unused; mail: 302 s
        await pool.get("mail", "alice")  # the sweep is due and runs here
        assert pool.keys() == [("mail", "alice")]
        assert await pool.get("files", "alice") is not first
