"""In-process single-flight: concurrent callers of one key share one piece of work.

The work runs in its own task, so a caller that is cancelled (its tool-call deadline
fired) stops waiting without cancelling the refresh the others are waiting for, and the
tokens an authorization server issued are still stored (issue 7 item 3).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SingleFlight"]

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """One running task per key; later callers await the same result."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task[T]] = {}

    def running(self, key: Hashable) -> bool:
        """True while work for ``key`` is in flight."""
        return key in self._running

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        """Start ``work`` for ``key`` unless it runs already; wait for its result.

        Raises:
            Whatever ``work`` raised, to every caller that waited for it.
        """
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._running[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved: nobody may be left waiting for it
