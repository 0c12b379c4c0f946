"""Live MCP sessions keyed by ``(server_id, subject)`` (design-notes D3.2, R6.4).

One :class:`~tether.mcp.session.MCPSession` per server and subject, made by a factory on
first use and reused by every later call, so the negotiated version and the session id
carry over between calls, and one :class:`~tether.mcp.session.EraMemory` that every
session the factory makes can share (``pool.eras``), so the era and capabilities one
session learned spare the next session of that server its ``server/discover``
(R6.4.3). The hub drops a server's sessions when its configuration
changes, a subject's session on disconnect, and everything on shutdown. The pool owns the
task group the sessions' connections run in, so enter it once, in the application's
lifespan.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

import anyio
import anyio.abc

from tether.errors import UsageError
from tether.mcp.session import EraMemory, MCPSession

__all__ = ["SessionFactory", "SessionKey", "SessionPool"]

SessionKey = tuple[str, str]
"""``(server_id, subject)``."""

SessionFactory = Callable[[str, str, anyio.abc.TaskGroup], MCPSession]
"""``(server_id, subject, task_group) -> MCPSession``; pass ``task_group`` to the session.

Called without awaiting anything; the session connects on its first request.
"""


class SessionPool:
    """Sessions by ``(server_id, subject)``; ``async with SessionPool(factory) as pool``."""

    def __init__(self, factory: SessionFactory) -> None:
        """Create an empty pool.

        Args:
            factory: Builds the session for a key (URL, guarded client, auth, timeout).
        """
        self._factory = factory
        self.eras = EraMemory()
        self._sessions: dict[SessionKey, MCPSession] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.aclose()
        finally:
            tg, self._tg = self._tg, None
            if tg is not None:
                # Sessions are closed; end stragglers and let the body's exception
                # propagate as itself, not wrapped in an ExceptionGroup.
                tg.cancel_scope.cancel()
                await tg.__aexit__(None, None, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def keys(self) -> list[SessionKey]:
        """The keys of the open sessions."""
        return list(self._sessions)

    async def get(self, server_id: str, subject: str) -> MCPSession:
        """Return the session for this key, creating it (unconnected) if needed.

        Raises:
            UsageError: The pool is not entered, or closed.
        """
        if self._tg is None or self._closed:
            raise UsageError("the MCP session pool is not running")
        key = (server_id, subject)
        session = self._sessions.get(key)
        if session is None:
            session = self._factory(server_id, subject, self._tg)
            self._sessions[key] = session
        return session

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
            await self._sessions.pop(key).aclose()
        return len(keys)

    async def aclose(self) -> None:
        """Close every session; the pool refuses new ones afterwards."""
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.aclose()
