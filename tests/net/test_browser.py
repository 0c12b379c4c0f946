"""Headless completion of an authorization request (``follow_authorization``)."""

from __future__ import annotations

import pytest

from tether.errors import BlockedDestination, RemoteError, UsageError
from tether.net.browser import follow_authorization
from tether.net.policy import NetworkPolicy

from .loopback import Exchange, LoopbackServer

POLICY = NetworkPolicy.from_allowlist(["127.0.0.1"])


async def login_page(exchange: Exchange) -> None:
    await exchange.send(200, [("Content-Type", "text/html")], b"<form>log in</form>")


async def loop(exchange: Exchange) -> None:
    await exchange.send(302, [("Location", "/loop")])


async def test_follows_relative_redirects_with_cookies_to_the_callback() -> None:
    async def authorize(exchange: Exchange) -> None:
        await exchange.send(302, [("Location", "/consent"), ("Set-Cookie", "s=1")])

    async def consent(exchange: Exchange) -> None:
        assert exchange.headers.get("cookie") == "s=1"
        await exchange.send(
            303, [("Location", "http://127.0.0.1:9/cb?code=c1&state=s1&iss=x")]
        )

    routes = {"/authorize": authorize, "/consent": consent}
    async with LoopbackServer(routes=routes) as server:
        params = await follow_authorization(
            f"http://{server.origin}/authorize", "http://127.0.0.1:9/cb", POLICY
        )
    assert params == {"code": "c1", "state": "s1", "iss": "x"}


async def test_a_login_page_needs_a_person() -> None:
    async with LoopbackServer(routes={"/authorize": login_page}) as server:
        with pytest.raises(RemoteError) as caught:
            await follow_authorization(
                f"http://{server.origin}/authorize", "http://127.0.0.1:9/cb", POLICY
            )
    assert caught.value.details["status"] == 200
    assert "browser" in (caught.value.hint or "")


async def test_endless_redirects_stop() -> None:
    async with LoopbackServer(routes={"/loop": loop}) as server:
        with pytest.raises(RemoteError, match="no redirect to the callback"):
            await follow_authorization(
                f"http://{server.origin}/loop",
                "http://127.0.0.1:9/cb",
                POLICY,
                max_hops=3,
            )


async def test_a_hop_to_a_private_address_is_refused() -> None:
    async def authorize(exchange: Exchange) -> None:
        await exchange.send(302, [("Location", "http://10.0.0.1/steal")])

    async with LoopbackServer(routes={"/authorize": authorize}) as server:
        with pytest.raises(BlockedDestination):
            await follow_authorization(
                f"http://{server.origin}/authorize", "http://127.0.0.1:9/cb", POLICY
            )


async def test_the_callback_itself_is_not_an_authorization_url() -> None:
    with pytest.raises(UsageError):
        await follow_authorization(
            "http://127.0.0.1:9/cb?x=1", "http://127.0.0.1:9/cb", POLICY
        )


async def test_a_repeated_callback_parameter_keeps_all_its_values() -> None:
    """The walk hands the hub every value, so its RFC 6749 §3.1 check can refuse."""

    async def authorize(exchange: Exchange) -> None:
        await exchange.send(
            302, [("Location", "http://127.0.0.1:9/cb?code=a&state=s&code=b")]
        )

    async with LoopbackServer(routes={"/authorize": authorize}) as server:
        params = await follow_authorization(
            f"http://{server.origin}/authorize", "http://127.0.0.1:9/cb", POLICY
        )
    assert params == {"code": ["a", "b"], "state": "s"}
