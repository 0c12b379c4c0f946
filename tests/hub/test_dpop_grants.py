"""DPoP at the token endpoint and the jwt_bearer (workload identity) grant.

A scripted fetcher plays the AS (see test_machine.py); the rest is the real hub and the
memory store. Real peers: the conformance suite (auth/dpop, auth/dpop-nonce,
auth/wif-jwt-bearer).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import jwt
import pytest
from jwt.algorithms import ECAlgorithm

from tether.errors import (
    AuthorizationRequired,
    ConfigurationError,
    InvalidGrant,
    InvalidResponse,
    NotFound,
    OAuthError,
    ValidationFailed,
)
from tether.hub.tether import Tether
from tether.net.fetch import HttpResponse
from tether.oauth.token_exchange import JWT_BEARER_GRANT
from tether.store.base import ServerRecord

from .test_machine import TOKEN, Handler, add_server, answer, hub, secret

ES256 = {"dpop_signing_alg_values_supported": ["ES256"]}
WORKLOAD_JWT = "eyJ.workload.jwt"


def proof(headers: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    token = headers["DPoP"]
    header = jwt.get_unverified_header(token)
    public = ECAlgorithm.from_jwk(header["jwk"])
    claims = jwt.decode(
        token,
        public,  # type: ignore[arg-type]
        algorithms=["ES256"],
        options={"verify_iat": False},
    )
    return header, claims


def dpop_as(
    *, nonce: str | None = None, token_type: str = "DPoP", always_nonce: bool = False
) -> Handler:
    """An AS that issues ``token_type`` tokens; asks for ``nonce`` first when given."""
    issued: list[int] = []

    def handle(headers: Mapping[str, str], form: Mapping[str, str]) -> HttpResponse:
        if nonce is not None:
            sent = proof(headers)[1].get("nonce") if "DPoP" in headers else None
            if sent != nonce or always_nonce:
                return HttpResponse(
                    400,
                    {
                        "content-type": ["application/json"],
                        "dpop-nonce": [nonce],
                    },
                    b'{"error":"use_dpop_nonce"}',
                    TOKEN,
                )
        issued.append(1)
        return answer(
            200,
            TOKEN,
            access_token=f"at-{len(issued)}",
            token_type=token_type,
            expires_in=300,
        )

    return handle


async def cc_server(tether: Tether, **oauth: Any) -> ServerRecord:
    cred = await secret(tether, "pw")
    oauth.setdefault("dpop", "auto")
    return await add_server(
        tether,
        grant="client_credentials",
        client_secret_credential_id=cred,
        **oauth,
    )


# ------------------------------------------------------------------ DPoP, token requests


async def test_token_request_carries_a_proof_and_the_key_is_kept() -> None:
    tether, fetcher, clock = await hub({TOKEN: dpop_as()})
    server = await cc_server(tether, as_meta=ES256)
    conn = await tether.connections.usable(server, "shared")
    assert conn.token_type == "DPoP"
    assert conn.dpop_key is not None
    header, claims = proof(fetcher.sent[0][2])
    assert header["typ"] == "dpop+jwt"
    assert claims["htm"] == "POST"
    assert claims["htu"] == TOKEN
    assert claims["iat"] == int(clock.now().timestamp())
    assert "ath" not in claims  # no access token yet

    renewed = await tether.connections.refresh(server, "shared", stale=conn)
    assert renewed.access_token is not None
    assert renewed.access_token.get_secret_value() == "at-2"
    again = proof(fetcher.sent[1][2])[0]
    assert again["jwk"] == header["jwk"]  # the grant's key is reused
    assert renewed.dpop_key == conn.dpop_key


async def test_as_nonce_is_retried_once_with_the_nonce() -> None:
    tether, fetcher, _ = await hub({TOKEN: dpop_as(nonce="as-n")})
    server = await cc_server(tether, as_meta=ES256)
    conn = await tether.connections.usable(server, "shared")
    assert conn.token_type == "DPoP"
    nonces = [proof(h)[1].get("nonce") for _, _, h, _ in fetcher.sent]
    assert nonces == [None, "as-n"]
    jtis = {proof(h)[1]["jti"] for _, _, h, _ in fetcher.sent}
    assert len(jtis) == 2


async def test_as_nonce_that_keeps_failing_is_an_oauth_error_naming_server_and_step() -> (
    None
):
    tether, fetcher, _ = await hub({TOKEN: dpop_as(nonce="n", always_nonce=True)})
    server = await cc_server(tether, as_meta=ES256)
    with pytest.raises(OAuthError) as info:
        await tether.connections.usable(server, "shared")
    assert info.value.error == "use_dpop_nonce"
    assert (info.value.server, info.value.step) == ("m2m", "token")
    assert len(fetcher.sent) == 2  # retried once, not more


async def test_use_dpop_nonce_without_a_nonce_header_names_server_and_step() -> None:
    def handle(headers: Mapping[str, str], form: Mapping[str, str]) -> HttpResponse:
        return answer(400, TOKEN, error="use_dpop_nonce")

    tether, fetcher, _ = await hub({TOKEN: handle})
    server = await cc_server(tether, as_meta=ES256)
    with pytest.raises(InvalidResponse, match="DPoP-Nonce") as info:
        await tether.connections.usable(server, "shared")
    assert (info.value.server, info.value.step) == ("m2m", "token")
    assert info.value.details["url"] == TOKEN
    assert len(fetcher.sent) == 1


@pytest.mark.parametrize(
    ("dpop", "as_meta", "proof_sent"),
    [
        ("auto", {}, False),
        ("auto", {"dpop_signing_alg_values_supported": ["RS256"]}, False),
        ("auto", ES256, True),
        ("never", ES256, False),
        ("always", {}, True),
    ],
)
async def test_when_a_proof_is_sent(
    dpop: str, as_meta: dict[str, Any], proof_sent: bool
) -> None:
    tether, fetcher, _ = await hub(
        {TOKEN: dpop_as(token_type="DPoP" if proof_sent else "Bearer")}
    )
    server = await cc_server(tether, as_meta=as_meta, dpop=dpop)
    conn = await tether.connections.usable(server, "shared")
    assert ("DPoP" in fetcher.sent[0][2]) is proof_sent
    assert conn.token_type == ("DPoP" if proof_sent else "Bearer")
    assert (conn.dpop_key is not None) is proof_sent


async def test_dpop_is_off_by_default() -> None:
    tether, fetcher, _ = await hub({TOKEN: dpop_as(token_type="Bearer")})
    cred = await secret(tether, "pw")
    server = await add_server(
        tether,
        grant="client_credentials",
        client_secret_credential_id=cred,
        as_meta=ES256,
    )
    assert server.oauth.dpop == "never"
    await tether.connections.usable(server, "shared")
    assert "DPoP" not in fetcher.sent[0][2]


async def test_bearer_answer_to_a_proof_is_kept_under_auto() -> None:
    tether, _, _ = await hub({TOKEN: dpop_as(token_type="Bearer")})
    server = await cc_server(tether, as_meta=ES256)
    conn = await tether.connections.usable(server, "shared")
    assert conn.token_type == "Bearer"


async def test_bearer_answer_under_always_is_a_configuration_error() -> None:
    tether, _, _ = await hub({TOKEN: dpop_as(token_type="Bearer")})
    server = await cc_server(tether, as_meta=ES256, dpop="always")
    with pytest.raises(ConfigurationError, match="requires DPoP") as info:
        await tether.connections.usable(server, "shared")
    assert (info.value.server, info.value.step) == ("m2m", "token")


async def test_always_with_an_as_without_es256_names_server_and_step() -> None:
    tether, fetcher, _ = await hub({TOKEN: dpop_as()})
    server = await cc_server(
        tether,
        as_meta={"dpop_signing_alg_values_supported": ["RS256"]},
        dpop="always",
    )
    with pytest.raises(ConfigurationError, match="RS256") as info:
        await tether.connections.usable(server, "shared")
    assert (info.value.server, info.value.step) == ("m2m", "dpop")
    assert fetcher.sent == []


async def test_dpop_token_without_a_proof_is_refused() -> None:
    tether, _, _ = await hub({TOKEN: dpop_as(token_type="DPoP")})
    server = await cc_server(tether, dpop="never")
    with pytest.raises(InvalidResponse, match="no proof") as info:
        await tether.connections.usable(server, "shared")
    assert (info.value.server, info.value.step) == ("m2m", "token")


# ------------------------------------------------------------------ jwt_bearer (WIF)


async def wif_server(
    tether: Tether, jwt_value: str = WORKLOAD_JWT, **oauth: Any
) -> Any:
    cred = await secret(tether, jwt_value, name="workload")
    oauth.setdefault("dpop", "auto")
    server = await add_server(
        tether, grant="jwt_bearer", assertion_credential_id=cred, **oauth
    )
    return server, cred


async def test_jwt_bearer_presents_the_workload_jwt() -> None:
    tether, fetcher, _ = await hub({TOKEN: dpop_as(token_type="Bearer")})
    server, _ = await wif_server(
        tether, as_meta={"token_endpoint_auth_methods_supported": ["none"]}
    )
    conn = await tether.connections.usable(server, "shared")
    assert conn.access_token is not None
    _, url, headers, form = fetcher.sent[0]
    assert url == TOKEN
    assert form["grant_type"] == JWT_BEARER_GRANT
    assert form["assertion"] == WORKLOAD_JWT
    assert form["resource"] == "https://mcp.example/mcp"
    assert form["client_id"] == "svc"
    assert "Authorization" not in headers  # auth method none (RFC 7523 §3.1)


async def test_jwt_bearer_without_a_client_id_sends_none() -> None:
    tether, fetcher, _ = await hub({TOKEN: dpop_as(token_type="Bearer")})
    server, _ = await wif_server(
        tether,
        client_id=None,
        registration="auto",
        as_meta={"token_endpoint_auth_methods_supported": ["none"]},
    )
    await tether.connections.usable(server, "shared")
    assert "client_id" not in fetcher.sent[0][3]


async def test_jwt_bearer_with_dpop() -> None:
    tether, fetcher, _ = await hub({TOKEN: dpop_as()})
    server, _ = await wif_server(tether, as_meta=ES256)
    conn = await tether.connections.usable(server, "shared")
    assert conn.token_type == "DPoP"
    assert "DPoP" in fetcher.sent[0][2]


async def test_a_refused_assertion_is_never_resent_and_no_other_grant_is_tried() -> (
    None
):
    def refuse(headers: Mapping[str, str], form: Mapping[str, str]) -> HttpResponse:
        return answer(400, TOKEN, error="invalid_grant", error_description="expired")

    tether, fetcher, clock = await hub({TOKEN: refuse})
    server, cred = await wif_server(tether)
    with pytest.raises(InvalidGrant) as info:
        await tether.connections.usable(server, "shared")
    assert (info.value.server, info.value.step) == ("m2m", "token")
    for _ in range(2):
        with pytest.raises(AuthorizationRequired, match="not sent again") as again:
            await tether.connections.usable(server, "shared")
        assert (again.value.server, again.value.step) == ("m2m", "token")
    with pytest.raises(AuthorizationRequired):
        await tether.connections.refresh(server, "shared")
    assert len(fetcher.sent) == 1
    assert {f["grant_type"] for _, _, _, f in fetcher.sent} == {JWT_BEARER_GRANT}

    # a rotated workload JWT is tried (once)
    fetcher.routes[TOKEN] = dpop_as(token_type="Bearer")
    clock.current += timedelta(seconds=1)
    await tether.credentials.update(cred, value="eyJ.new.jwt", actor="ops")
    conn = await tether.connections.usable(server, "shared")
    assert conn.status == "connected"
    assert fetcher.sent[-1][3]["assertion"] == "eyJ.new.jwt"


async def test_an_explicit_connect_runs_a_refused_grant_again() -> None:
    answers = [answer(400, TOKEN, error="invalid_grant")]

    def handle(headers: Mapping[str, str], form: Mapping[str, str]) -> HttpResponse:
        if answers:
            return answers.pop()
        return answer(200, TOKEN, access_token="ok", token_type="Bearer")

    tether, fetcher, _ = await hub({TOKEN: handle})
    await wif_server(tether)
    with pytest.raises(InvalidGrant):
        await tether.connect_machine("m2m")
    info = await tether.connect_machine("m2m")
    assert info.status == "connected"
    assert len(fetcher.sent) == 2


async def test_a_server_error_is_not_a_refusal() -> None:
    answers = [answer(503, TOKEN, error="temporarily_unavailable")]

    def handle(headers: Mapping[str, str], form: Mapping[str, str]) -> HttpResponse:
        if answers:
            return answers.pop()
        return answer(200, TOKEN, access_token="ok", token_type="Bearer")

    tether, _, _ = await hub({TOKEN: handle})
    server, _ = await wif_server(tether)
    with pytest.raises(OAuthError):
        await tether.connections.usable(server, "shared")
    conn = await tether.connections.usable(server, "shared")
    assert conn.status == "connected"


async def test_a_deleted_workload_credential_names_server_and_step() -> None:
    tether, fetcher, _ = await hub({TOKEN: dpop_as(token_type="Bearer")})
    server, cred = await wif_server(tether)
    await tether.stores.credentials.delete(cred)
    with pytest.raises(NotFound, match="workload JWT") as info:
        await tether.connections.usable(server, "shared")
    assert info.value.server == "m2m"
    assert fetcher.sent == []


async def test_a_blank_workload_jwt_is_a_configuration_error() -> None:
    tether, fetcher, _ = await hub({TOKEN: dpop_as(token_type="Bearer")})
    server, _ = await wif_server(tether, jwt_value="   ")
    with pytest.raises(ConfigurationError, match="no workload JWT") as info:
        await tether.connections.usable(server, "shared")
    assert (info.value.server, info.value.step) == ("m2m", "token")
    assert fetcher.sent == []


async def test_an_as_without_the_grant_names_server_and_step() -> None:
    tether, fetcher, _ = await hub({TOKEN: dpop_as(token_type="Bearer")})
    server, _ = await wif_server(
        tether, as_meta={"grant_types_supported": ["client_credentials"]}
    )
    with pytest.raises(ConfigurationError, match="jwt-bearer") as info:
        await tether.connections.usable(server, "shared")
    assert info.value.server == "m2m"
    assert fetcher.sent == []


async def test_jwt_bearer_needs_the_assertion_credential_at_save_time() -> None:
    tether, _, _ = await hub({})
    with pytest.raises(ValidationFailed) as info:
        await tether.servers.create(
            {
                "name": "wif",
                "url": "https://mcp.example/mcp",
                "auth_mode": "oauth",
                "oauth": {"grant": "jwt_bearer"},
            },
            actor="admin",
        )
    assert "oauth.assertion_credential_id" in str(info.value.details)
