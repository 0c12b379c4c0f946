"""Live MCP sessions keyed by ``(server_id, subject)`` (design-notes D3.2, R6.4).

One :class:`~tether.mcp.session.MCPSession` per server and subject, made by a factory on
first use and reused by every later call, so the negotiated version and the session id
carry over between calls, and one :class:`~tether.mcp.session.EraMemory` that every
session the factory makes can share (``pool.eras``), so the era and capabilities one
session learned spare the next session of that server its ``server/discover``
(R6.4.3). The hub drops a server's sessions when its configuration
changes, a subject's session on disconnect, and everything on shutdown.

The pool owns the task group the sessions' connections run in, and holds it in a task of
its own (R6.4.5): :meth:`SessionPool.start` and :meth:`SessionPool.aclose` may run in
different tasks, and the task that starts the pool may enter and leave cancel scopes
afterwards, which a task group entered in the caller's task would forbid.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

import anyio
import anyio.abc

from tether.errors import UsageError
from tether.mcp.session import EraMemory, MCPSession

__all__ = ["SessionFactory", "SessionKey", "SessionPool"]

logger = logging.getLogger(__name__)

IDLE_SECONDS = 600.0
"""A session unused this long, with nothing in flight and no subscription, is closed."""

SessionKey = tuple[str, str]
"""``(server_id, subject)``."""

SessionFactory = Callable[[str, str, anyio.abc.TaskGroup], MCPSession]
"""``(server_id, subject, task_group) -> MCPSession``; pass ``task_group`` to the session.

Called without awaiting anything; the session connects on its first request.
"""


class SessionPool:
    """Sessions by ``(server_id, subject)``; ``async with SessionPool(factory) as pool``."""

    def __init__(
        self,
        factory: SessionFactory,
        *,
        idle_seconds: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create an empty pool.

        Args:
            factory: Builds the session for a key (URL, guarded client, auth, timeout).
            idle_seconds: A session asked for by no one for this long, with no
                request in flight and no tool-list subscription, is closed (R6.4.6).
            clock: Monotonic seconds (tests pass a fake).
        """
        self._factory = factory
        self.eras = EraMemory()
        self._sessions: dict[SessionKey, MCPSession] = {}
        self._used: dict[SessionKey, float] = {}
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._next_sweep = clock() + idle_seconds / 2
        self._tg: anyio.abc.TaskGroup | None = None
        self._host: asyncio.Task[None] | None = None
        self._stop = anyio.Event()
        self._closed = False

    async def start(self) -> None:
        """Start the task that holds the sessions' task group; returns once it runs.

        Raises:
            UsageError: The pool was started before.
        """
        if self._host is not None or self._closed:
            raise UsageError("the MCP session pool was already started")
        running = anyio.Event()

        async def host() -> None:
            try:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    running.set()
                    await self._stop.wait()
                    # sessions are closed by now; end stragglers
                    tg.cancel_scope.cancel()
            except Exception:  # sessions catch their own; never expected
                logger.exception("the MCP session pool's task group failed")
                running.set()

        self._host = asyncio.get_running_loop().create_task(host())
        await running.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __len__(self) -> int:
        return len(self._sessions)

    def keys(self) -> list[SessionKey]:
        """The keys of the open sessions."""
        return list(self._sessions)

    def connected(self) -> int:
        """How many sessions hold a live connection (R6.4.7)."""
        return sum(1 for session in self._sessions.values() if session.connected)

    def peek(self, server_id: str, subject: str) -> MCPSession | None:
        """The open session for this key, if there is one; never creates one."""
        return self._sessions.get((server_id, subject))

    async def get(self, server_id: str, subject: str) -> MCPSession:
        """Return the session for this key, creating it (unconnected) if needed.

        Raises:
            UsageError: The pool is not entered, or closed.
        """
        if self._tg is None or self._closed or self._host is None or self._host.done():
            raise UsageError("the MCP session pool is not running")
        key = (server_id, subject)
        now = self._clock()
        if now >= self._next_sweep:
            self.evict_idle()
        session = self._sessions.get(key)
        if session is None:
            session = self._factory(server_id, subject, self._tg)
            self._sessions[key] = session
        self._used[key] = now
        return session

    def evict_idle(self) -> int:
        """Close the sessions idle for ``idle_seconds`` (R6.4.6); :meth:`get` calls it.

        Idle: not asked for since, no request in flight, no tool-list subscription.
        They close in the pool's task, so no caller waits for it; the next
        :meth:`get` of the key makes a new session (the era is remembered in
        :attr:`eras`, so it connects without a probe). Runs at most every half
        ``idle_seconds`` when called from :meth:`get`.

        Returns:
            How many sessions were closed.
        """
        now = self._clock()
        self._next_sweep = now + self._idle_seconds / 2
        idle = [
            key
            for key, session in self._sessions.items()
            if now - self._used.get(key, now) >= self._idle_seconds and not session.busy
        ]
        for key in idle:
            session = self._sessions.pop(key)
            self._used.pop(key, None)
            if self._tg is not None:
                self._tg.start_soon(session.aclose)
        return len(idle)

    async def drop(self, server_id: str, subject: str | None = None) -> int:
        """Close and forget one subject's session, or every session of a server.

        Use after a server's configuration changes (``subject=None``) or after a user
        disconnects. Requests in flight on a dropped session fail.

        Returns:
            How many sessions were closed.
        """
        keys = [
            key
            for key in self._sessions
            if key[0] == server_id and (subject is None or key[1] == subject)
        ]
        for key in keys:
            self._used.pop(key, None)
            await self._sessions.pop(key).aclose()
        return len(keys)

    async def aclose(self) -> None:
        """Close every session and end the pool's task; new sessions are refused.

        Any task may call it, any number of times.
        """
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        self._used.clear()
        try:
            for session in sessions:
                await session.aclose()
        finally:
            self._stop.set()
            host, self._host = self._host, None
            if host is not None:
                # shielded: a cancelled closer still leaves no task group behind
                with anyio.CancelScope(shield=True):
                    await host
            self._tg = None
