"""Fixtures for the grant-integrity proofs: one pair of real peers per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from peers.fixture import EnvValue, NodeEnv, Peers, peers_home
from peers.plugin import PeerFactory

AS_ENV: dict[str, EnvValue] = {"AS_ROTATE_REFRESH": "1"}
MCP_ENV: dict[str, EnvValue] = {}


@pytest.fixture(scope="module")
def storm_peers(peers_node: NodeEnv) -> Iterator[Peers]:
    """oidc-provider (rotating refresh tokens on every use, AS_LOG on) + the SDK MCP server.

    Started once per module: every test makes its own server registration and grant,
    and counts the AS's token requests from its own log mark.
    """
    with PeerFactory(peers_node, peers_home()) as factory:
        yield factory.peers(as_env=AS_ENV, mcp_env=MCP_ENV)
