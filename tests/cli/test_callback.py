"""The loopback listener that receives ``tether connect``'s OAuth callback (CB-6)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tether.cli.callback import wait_for_callback
from tether.errors import CallbackRejected
from tether.oauth.callback import callback_state


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def get(port: int, target: str) -> bytes:
    for _ in range(1500):  # until the listener is up; 30 s is only a hang guard
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            await asyncio.sleep(0.02)
    else:
        raise AssertionError("the callback listener never came up")
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


async def test_returns_the_callback_query_and_a_safe_page() -> None:
    port = free_port()
    waiting = asyncio.create_task(
        wait_for_callback(f"http://127.0.0.1:{port}/oauth/callback", seconds=5)
    )
    other = await get(port, "/favicon.ico")
    page = await get(port, "/oauth/callback?code=abc&state=xyz&iss=https%3A%2F%2Fas")
    params = await waiting
    assert params == {"code": "abc", "state": "xyz", "iss": "https://as"}
    assert b"Not found" in other
    assert b"Authorization received" in page
    assert b"Content-Security-Policy: default-src 'none'" in page
    assert b"Referrer-Policy: no-referrer" in page


async def test_gives_up_after_the_wait() -> None:
    with pytest.raises(TimeoutError):
        await wait_for_callback(
            f"http://127.0.0.1:{free_port()}/oauth/callback", seconds=0.2
        )


async def test_a_repeated_parameter_keeps_all_its_values() -> None:
    """RFC 6749 §3.1: the hub refuses a repeated parameter, so none may be dropped."""
    port = free_port()
    waiting = asyncio.create_task(
        wait_for_callback(f"http://127.0.0.1:{port}/oauth/callback", seconds=5)
    )
    await get(port, "/oauth/callback?code=mine&code=theirs&state=s&state=t&iss=x")
    params = await waiting
    assert params == {"code": ["mine", "theirs"], "state": ["s", "t"], "iss": "x"}
    with pytest.raises(CallbackRejected, match="'state' 2 times"):
        callback_state(params)
