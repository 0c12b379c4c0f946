"""Fixtures for the grant-integrity proofs: one pair of real peers per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from peers.fixture import EnvValue, NodeEnv, Peers, peers_home
from peers.plugin import PeerFactory

AS_ENV: dict[str, EnvValue] = {"AS_ROTATE_REFRESH": "1"}
MCP_ENV: dict[str, EnvValue] = {}
REAL_TTL = 60
"""Access-token lifetime (s) of ``expiring_peers``: a storm must end within half of it
(Tether refreshes at the earlier of 60 s and half the lifetime before expiry)."""


@pytest.fixture(scope="module")
def storm_peers(peers_node: NodeEnv) -> Iterator[Peers]:
    """oidc-provider (rotating refresh tokens on every use, AS_LOG on) + the SDK MCP server.

    Started once per module: every test makes its own server registration and grant,
    and counts the AS's token requests from its own log mark.
    """
    with PeerFactory(peers_node, peers_home()) as factory:
        yield factory.peers(as_env=AS_ENV, mcp_env=MCP_ENV)


@pytest.fixture(scope="module")
def expiring_peers(peers_node: NodeEnv) -> Iterator[Peers]:
    """Like ``storm_peers``, with access tokens that live :data:`REAL_TTL` seconds.

    For storms after a real expiry: the MCP server answers 401 to the old token.
    """
    with PeerFactory(peers_node, peers_home()) as factory:
        yield factory.peers(
            as_env={**AS_ENV, "AS_ACCESS_TOKEN_TTL": REAL_TTL}, mcp_env=MCP_ENV
        )
