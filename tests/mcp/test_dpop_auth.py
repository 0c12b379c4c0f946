"""BearerAuth with DPoP tokens (RFC 9449 §7.1, §9) through httpx2.MockTransport."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx2
import jwt
import pytest
from jwt.algorithms import ECAlgorithm

from tether.errors import AuthorizationRequired
from tether.mcp.auth import AccessToken, BearerAuth
from tether.oauth.challenge import BearerChallenge
from tether.oauth.dpop import access_token_hash, generate_key

URL = "https://mcp.example/mcp?x=1"
KEY = generate_key()
NONCE = 'DPoP error="use_dpop_nonce"'


@dataclass
class Source:
    tokens: list[str]
    token_type: str = "DPoP"
    calls: list[int] = field(default_factory=list)

    def _token(self) -> AccessToken:
        return AccessToken(self.tokens[0], token_type=self.token_type, dpop_key=KEY)

    async def current(self) -> AccessToken:
        return self._token()

    async def rejected(
        self, token: AccessToken, challenge: BearerChallenge | None, *, status: int
    ) -> AccessToken:
        self.calls.append(status)
        if len(self.tokens) == 1:
            raise AuthorizationRequired("no refresh")
        self.tokens.pop(0)
        return self._token()


def claims(request: httpx2.Request | dict[str, str]) -> dict[str, Any]:
    headers = request if isinstance(request, dict) else request.headers
    proof = headers["dpop"]
    header = jwt.get_unverified_header(proof)
    assert header["typ"] == "dpop+jwt"
    assert "d" not in header["jwk"]
    public = ECAlgorithm.from_jwk(header["jwk"])
    return jwt.decode(proof, public, algorithms=["ES256"])  # type: ignore[arg-type]


async def run(auth: BearerAuth, handle: Any) -> list[dict[str, str]]:
    """Send two requests; the headers of every attempt, as sent (snapshots)."""
    seen: list[dict[str, str]] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        seen.append(dict(request.headers))
        return handle(request, len(seen))  # type: ignore[no-any-return]

    async with httpx2.AsyncClient(
        transport=httpx2.MockTransport(record), auth=auth
    ) as client:
        await client.post(URL, json={"jsonrpc": "2.0", "id": 1, "method": "x"})
        await client.post(URL, json={"jsonrpc": "2.0", "id": 2, "method": "y"})
    return seen


async def test_dpop_scheme_and_a_fresh_proof_on_every_request() -> None:
    seen = await run(
        BearerAuth(Source(["tok"])), lambda r, n: httpx2.Response(200, json={})
    )
    assert [r["authorization"] for r in seen] == ["DPoP tok", "DPoP tok"]
    first, second = claims(seen[0]), claims(seen[1])
    assert first["htm"] == "POST"
    assert first["htu"] == "https://mcp.example/mcp"  # no query (RFC 9449 §4.2)
    assert first["ath"] == access_token_hash("tok")
    assert "nonce" not in first
    assert first["jti"] != second["jti"]
    assert abs(first["iat"] - datetime.now(UTC).timestamp()) < 60


async def test_a_bearer_token_gets_no_proof() -> None:
    seen = await run(
        BearerAuth(Source(["tok"], token_type="Bearer")),
        lambda r, n: httpx2.Response(200, json={}),
    )
    assert seen[0]["authorization"] == "Bearer tok"
    assert "dpop" not in seen[0]


async def test_resource_server_nonce_is_retried_once_and_kept() -> None:
    source = Source(["tok"])

    def handle(request: httpx2.Request, n: int) -> httpx2.Response:
        if claims(request).get("nonce") != "rs-n":
            return httpx2.Response(
                401, headers={"www-authenticate": NONCE, "dpop-nonce": "rs-n"}
            )
        return httpx2.Response(200, json={})

    seen = await run(BearerAuth(source), handle)
    # first request: challenged, resent with the nonce; second: nonce from the start
    assert [claims(r).get("nonce") for r in seen] == [None, "rs-n", "rs-n"]
    assert source.calls == []  # a nonce is not a reason to refresh


async def test_a_nonce_that_keeps_failing_falls_back_to_one_refresh() -> None:
    source = Source(["tok"])

    def handle(request: httpx2.Request, n: int) -> httpx2.Response:
        return httpx2.Response(
            401, headers={"www-authenticate": NONCE, "dpop-nonce": f"n{n}"}
        )

    seen: list[httpx2.Request] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return handle(request, len(seen))

    async with httpx2.AsyncClient(
        transport=httpx2.MockTransport(record), auth=BearerAuth(source)
    ) as client:
        with pytest.raises(AuthorizationRequired, match="no refresh"):
            await client.post(URL, json={})
    assert len(seen) == 2  # one nonce retry, then the source is asked (and refuses)
    assert source.calls == [401]
