"""One OS process of a refresh storm or a kill trial (run by ``grants.harness``).

Run as ``python -m grants.worker MODE CONFIG_JSON`` with ``tests`` on ``PYTHONPATH`` (or
by path: ``python tests/grants/worker.py MODE CONFIG_JSON``). The key ring comes from
the ``STORM_TETHER_KEY`` environment variable. Each process opens its own
:class:`~tether.hub.tether.Tether` on the shared database, prints ``{"event": "ready"}``
and then waits for a line on stdin (the barrier: the harness writes ``go`` to every
worker once all of them are ready). Modes:

``storm``
    Fire ``calls`` concurrent ``call_tool(server, "echo")`` and print one ``done`` line:
    calls ok/failed and the failures' error codes. With ``warm`` the worker first lists
    the tools (its MCP session is open and the token read) before it says ready.
``check``
    A fresh process proving the grant is alive: ``tether.refresh`` and then one tool
    call; prints ``done`` with each outcome.
``refresh``
    One ``tether.refresh`` while timestamped marks (``time.monotonic_ns``, one unbuffered
    ``write(2)`` each, so they survive SIGKILL) go to ``marks``: ``start``; ``post``
    before the token request; ``response`` after its answer; ``journal`` after the sealed token journal took it
    (DUR-1); ``store:<method>:end``
    after each write to the connection store returns (the first write after
    ``response`` is the commit of the new tokens); ``end``. The wrappers live in this
    process only: the fetcher's ``request``, the journal's ``append`` and the
    connection store's methods.
``flow``
    One ``complete`` (connect completion), ``disconnect`` or ``servers.update`` with
    marks ``<step>:sent`` / ``<step>:answered`` around every request, ``journal``,
    ``store:<method>:end`` and ``servers:<method>:end`` (``tests/faults``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

if __package__ in (None, ""):  # run by path: make ``grants`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from grants.common import GO, KEY_ENV, emit, open_tether
from tether.errors import TetherError
from tether.hub.tether import Tether

READS = frozenset({"get", "list"})
SAMPLES = 3  # error messages kept per worker (bounded; messages never hold tokens)


async def wait_barrier() -> None:
    """Block until the harness releases every worker at once."""
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() != GO:
        raise SystemExit(f"barrier closed without {GO!r}")


async def one_call(tether: Tether, server: str, text: str) -> tuple[bool, str, str]:
    """One echo call: (ok, error code, message)."""
    result = await tether.call_tool(server, "echo", {"text": text})
    if result.is_error:
        return False, result.error_code or "unknown", result.text[:160]
    if text not in result.text:
        return False, "wrong_result", result.text[:160]
    return True, "", ""


async def storm(tether: Tether, config: dict[str, Any]) -> None:
    """Fire ``calls`` concurrent tool calls once released; report ok/failed."""
    calls: int = config["calls"]
    server: str = config["server"]
    if config.get("warm"):  # a running app: MCP session open, token read, then expiry
        await tether.list_tools(server)
    emit("ready", pid=os.getpid())
    await wait_barrier()
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(one_call(tether, server, f"w{os.getpid()}-{i}") for i in range(calls)),
        return_exceptions=True,
    )
    seconds = time.monotonic() - started
    errors: Counter[str] = Counter()
    samples: list[str] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):  # call_tool must not raise at all
            code, message = f"raised:{type(outcome).__name__}", str(outcome)[:160]
        elif outcome[0]:
            continue
        else:
            code, message = outcome[1], outcome[2]
        errors[code] += 1
        if len(samples) < SAMPLES:
            samples.append(f"{code}: {message}")
    failed = sum(errors.values())
    emit(
        "done",
        pid=os.getpid(),
        ok=calls - failed,
        failed=failed,
        errors=dict(errors),
        samples=samples,
        seconds=round(seconds, 3),
    )


async def check(tether: Tether, config: dict[str, Any]) -> None:
    """Refresh once, then call once: is the grant alive for a process that knows nothing?"""
    server: str = config["server"]
    emit("ready", pid=os.getpid())
    await wait_barrier()
    try:
        info = await tether.refresh(server)
        refresh = "ok" if info.status == "connected" else f"status:{info.status}"
    except TetherError as exc:
        refresh = exc.code
    ok, code, _ = await one_call(tether, server, f"check-{os.getpid()}")
    status = (await tether.connection(server)).status
    emit("done", refresh=refresh, call="ok" if ok else code, status=status)


class Marks:
    """Append-only timestamp marks, one ``write(2)`` per mark (no user-space buffer)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def __call__(self, name: str) -> None:
        os.write(self._fd, f"{name} {time.monotonic_ns()}\n".encode())


def _wrap_fetcher(tether: Tether, mark: Marks) -> None:
    original = tether.fetcher.request

    async def request(method: str, url: str, **kwargs: Any) -> Any:
        token = kwargs.get("step") == "token"
        if token:
            mark("post")
        response = await original(method, url, **kwargs)
        if token:
            mark("response")
        return response

    setattr(tether.fetcher, "request", request)  # noqa: B010 - a method, mypy refuses =


def _wrap_journal(tether: Tether, mark: Marks) -> None:
    journal = tether.ctx.journal
    if journal is None:
        return
    original = journal.append

    def append(record: Any) -> None:
        original(record)
        mark("journal")

    setattr(journal, "append", append)  # noqa: B010 - a method, mypy refuses =


def _wrap_store(tether: Tether, mark: Marks) -> None:
    store = tether.stores.connections
    for name in dir(store):
        method = getattr(store, name)
        if (
            name.startswith("_")
            or name in READS
            or not inspect.iscoroutinefunction(method)
        ):
            continue
        setattr(store, name, _marked(method, f"store:{name}", mark))


def _marked(
    method: Callable[..., Awaitable[Any]], label: str, mark: Marks
) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = await method(*args, **kwargs)
        mark(f"{label}:end")
        return result

    return wrapper


async def refresh(tether: Tether, config: dict[str, Any]) -> None:
    """One marked refresh (the process the kill trials SIGKILL)."""
    mark = Marks(config["marks"])
    _wrap_fetcher(tether, mark)
    _wrap_journal(tether, mark)
    _wrap_store(tether, mark)
    emit("ready", pid=os.getpid())
    await wait_barrier()
    mark("start")
    try:
        await tether.refresh(config["server"])
        outcome = "ok"
    except TetherError as exc:
        outcome = exc.code
    mark("end")
    emit("done", refresh=outcome)


def _wrap_flows(tether: Tether, mark: Marks) -> None:
    """Marks for connect, disconnect and configuration changes (tests/faults)."""
    original = tether.fetcher.request

    async def request(method: str, url: str, **kwargs: Any) -> Any:
        step = kwargs.get("step")
        mark(f"{step}:sent")
        response = await original(method, url, **kwargs)
        mark(f"{step}:answered")
        return response

    setattr(tether.fetcher, "request", request)  # noqa: B010
    _wrap_journal(tether, mark)
    _wrap_store(tether, mark)
    servers = tether.stores.servers
    for name in ("update", "add", "delete"):
        setattr(servers, name, _marked(getattr(servers, name), f"servers:{name}", mark))


async def flow(tether: Tether, config: dict[str, Any]) -> None:
    """One marked flow (``complete``, ``disconnect`` or ``update``) to be SIGKILLed."""
    mark = Marks(config["marks"])
    _wrap_flows(tether, mark)
    server: str = config["server"]
    emit("ready", pid=os.getpid())
    await wait_barrier()
    mark("start")
    try:
        if config["flow"] == "complete":
            await tether.complete(config["params"], user=config["user"])
        elif config["flow"] == "disconnect":
            await tether.disconnect(server, actor="fault")
        else:
            await tether.servers.update(server, config["changes"], actor="fault")
        outcome = "ok"
    except TetherError as exc:
        outcome = exc.code
    mark("end")
    emit("done", outcome=outcome)


MODES = {"storm": storm, "check": check, "refresh": refresh, "flow": flow}


async def main(mode: str, config: dict[str, Any]) -> None:
    """Open this process's Tether, run ``mode``, close."""
    tether = await open_tether(
        config["database_url"], os.environ[KEY_ENV], config.get("open_kwargs")
    )
    try:
        await MODES[mode](tether, config)
    finally:
        await tether.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
