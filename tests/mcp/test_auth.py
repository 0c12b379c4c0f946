"""BearerAuth and HeaderAuth driven through httpx2.MockTransport (design-notes S7)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx2
import pytest

from tether.errors import AuthorizationRequired, StepUpRequired
from tether.mcp.auth import AccessToken, BearerAuth, HeaderAuth
from tether.oauth.challenge import BearerChallenge

URL = "https://mcp.example/mcp"
INVALID = 'Bearer error="invalid_token", resource_metadata="https://mcp.example/prm"'
SCOPE = 'Bearer error="insufficient_scope", scope="files:read files:write"'


@dataclass
class Source:
    """A fake TokenSource: ``tokens`` in turn; ``refuse`` makes ``rejected`` raise."""

    tokens: list[str]
    refuse: Exception | None = None
    calls: list[tuple[str, BearerChallenge | None, int]] = field(default_factory=list)
    current_calls: int = 0

    async def current(self) -> AccessToken:
        self.current_calls += 1
        return AccessToken(self.tokens[0])

    async def rejected(
        self, token: AccessToken, challenge: BearerChallenge | None, *, status: int
    ) -> AccessToken:
        self.calls.append((token.access_token, challenge, status))
        if self.refuse is not None:
            raise self.refuse
        self.tokens.pop(0)
        return AccessToken(self.tokens[0])


Handler = Callable[[httpx2.Request], httpx2.Response]


def server(accept: set[str], status: int = 401, challenge: str = INVALID) -> Handler:
    """Answer 200 to accepted bearer tokens, else ``status`` with ``challenge``."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token in accept:
            return httpx2.Response(200, json={"token": token})
        return httpx2.Response(status, headers={"www-authenticate": challenge})

    return handle


async def send(auth: httpx2.Auth, handler: Handler) -> httpx2.Response:
    async with httpx2.AsyncClient(
        transport=httpx2.MockTransport(handler), auth=auth
    ) as c:
        return await c.post(
            URL, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        )


async def test_attaches_the_current_token() -> None:
    source = Source(["t1"])
    response = await send(BearerAuth(source), server({"t1"}))
    assert response.json() == {"token": "t1"}
    assert source.calls == []
    assert source.current_calls == 1


async def test_401_refreshes_once_and_retries() -> None:
    source = Source(["old", "new"])
    seen: list[str] = []
    accept = server({"new"})

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers["authorization"])
        return accept(request)

    response = await send(BearerAuth(source), handler)
    assert response.status_code == 200
    assert seen == ["Bearer old", "Bearer new"]
    assert len(source.calls) == 1
    token, challenge, status = source.calls[0]
    assert (token, status) == ("old", 401)
    assert challenge == BearerChallenge(
        error="invalid_token", resource_metadata="https://mcp.example/prm"
    )


async def test_second_401_is_authorization_required() -> None:
    source = Source(["old", "new"])
    with pytest.raises(AuthorizationRequired) as caught:
        await send(BearerAuth(source, server="files"), server(set()))
    assert type(caught.value) is AuthorizationRequired
    assert caught.value.server == "files"
    assert caught.value.details == {"status": 401, "error": "invalid_token"}
    assert len(source.calls) == 1  # refreshed once, never twice


async def test_source_that_cannot_refresh_raises_its_own_error() -> None:
    source = Source(["old"], refuse=AuthorizationRequired("no refresh token"))
    with pytest.raises(AuthorizationRequired, match="no refresh token"):
        await send(BearerAuth(source), server(set()))


async def test_403_insufficient_scope_asks_the_source_for_step_up() -> None:
    step_up = StepUpRequired("more scope", details={"required_scopes": ["files:write"]})
    source = Source(["narrow"], refuse=step_up)
    with pytest.raises(StepUpRequired) as caught:
        await send(BearerAuth(source), server(set(), status=403, challenge=SCOPE))
    assert caught.value is step_up
    _, challenge, status = source.calls[0]
    assert status == 403
    assert challenge is not None
    assert challenge.error == "insufficient_scope"
    assert challenge.scope == ("files:read", "files:write")


async def test_second_403_insufficient_scope_is_step_up() -> None:
    source = Source(["narrow", "still-narrow"])
    with pytest.raises(StepUpRequired) as caught:
        await send(BearerAuth(source), server(set(), status=403, challenge=SCOPE))
    assert caught.value.details["required_scopes"] == ["files:read", "files:write"]


async def test_401_without_a_challenge_still_refreshes() -> None:
    source = Source(["old", "new"])

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.headers["authorization"] == "Bearer new":
            return httpx2.Response(200)
        return httpx2.Response(401)

    assert (await send(BearerAuth(source), handler)).status_code == 200
    assert source.calls == [("old", None, 401)]


async def test_other_errors_pass_through() -> None:
    source = Source(["t"])
    response = await send(BearerAuth(source), lambda r: httpx2.Response(500))
    assert response.status_code == 500
    assert source.calls == []


@pytest.mark.parametrize(
    ("auth", "header", "expected"),
    [
        (HeaderAuth("s3cret", scheme="Bearer"), "authorization", "Bearer s3cret"),
        (HeaderAuth("k-123", header="X-API-Key"), "x-api-key", "k-123"),
        (HeaderAuth("k-123", header="X-API-Key", scheme="  "), "x-api-key", "k-123"),
        (HeaderAuth("abc", scheme="Token"), "authorization", "Token abc"),
    ],
)
async def test_header_auth(auth: HeaderAuth, header: str, expected: str) -> None:
    seen: list[str | None] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers.get(header))
        return httpx2.Response(401)  # a 401 is the caller's business in header mode

    response = await send(auth, handler)
    assert response.status_code == 401
    assert seen == [expected]


@pytest.mark.parametrize("secret", [None, ""])
async def test_header_auth_without_a_secret_sends_nothing(secret: str | None) -> None:
    seen: list[str | None] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers.get("authorization"))
        return httpx2.Response(200)

    await send(HeaderAuth(secret, scheme="Bearer"), handler)
    assert seen == [None]


def test_secrets_are_masked_in_reprs() -> None:
    token = AccessToken("tok-SECRET", expires_at=datetime(2030, 1, 1, tzinfo=UTC))
    assert "SECRET" not in repr(token)
    assert "2030-01-01" in repr(token)
    assert "SECRET" not in repr(HeaderAuth("SECRET", header="X-API-Key"))
