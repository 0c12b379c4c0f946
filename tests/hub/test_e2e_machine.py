"""Machine-to-machine servers against the real oidc-provider (EXT-1 … 3).

oidc-provider runs the client_credentials grant with resource indicators; the static
clients come from an ``AS_CLIENTS_FILE``: one with a secret (client_secret_basic), one
authenticating with ``private_key_jwt`` (RFC 7523 §2.2) against a key made here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from hub.conftest import MakeTether
from peers.plugin import PeerFactory

pytestmark = pytest.mark.realservers

LOOPBACK = ["127.0.0.0/8"]


def machine_clients(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    public = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    clients = [
        {
            "client_id": "machine-basic",
            "client_secret": "machine-basic-secret",
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["client_credentials"],
            "redirect_uris": [],
            "response_types": [],
        },
        {
            "client_id": "machine-jwt",
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "ES256",
            "jwks": {"keys": [{**public, "use": "sig", "alg": "ES256"}]},
            "grant_types": ["client_credentials"],
            "redirect_uris": [],
            "response_types": [],
        },
    ]
    path.write_text(json.dumps(clients))
    return path


@pytest.mark.parametrize("client", ["machine-basic", "machine-jwt"])
async def test_client_credentials_server_calls_tools_without_a_browser(
    client: str, make_tether: MakeTether, tmp_peers: PeerFactory, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    auth = tmp_peers.auth_server(
        AS_CLIENTS_FILE=str(machine_clients(tmp_path / "clients.json", key)),
        AS_PRIVATE_KEY_JWT=1,
    )
    mcp = tmp_peers.mcp_server(auth)
    tether = await make_tether()
    if client == "machine-basic":
        secret = await tether.credentials.create(
            "machine-secret", "machine-basic-secret", actor="admin"
        )
        oauth = {"client_secret_credential_id": secret.id}
    else:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        cred = await tether.credentials.create("machine-key", pem, actor="admin")
        oauth = {"private_key_credential_id": cred.id}
    await tether.servers.create(
        {
            "name": "m2m",
            "url": mcp.url,
            "auth_mode": "oauth",
            "allow_networks": LOOPBACK,
            "oauth": {
                "grant": "client_credentials",
                "registration": "manual",
                "client_id": client,
                **oauth,
            },
        },
        actor="admin",
    )
    result = await tether.call_tool("m2m", "whoami", {})
    assert not result.is_error, result.text
    assert result.structured is not None
    assert result.structured["client_id"] == client
    info = await tether.connection("m2m")
    assert info.status == "connected"
    assert not info.has_refresh_token
    assert mcp.calls()[-1]["client_id"] == client
