"""pytest fixtures for the loopback test peers (register as a plugin).

Fixtures:
    peers_node       (session) Node + npm packages; runs .ci/install-peers.sh once if
                     needed, skips (or fails with TETHER_PEERS_REQUIRED=1) if impossible
    auth_server      (session) AuthServer with defaults (auto-approve, JWT tokens, DCR)
    mcp_server       (session) MCPServer protected by ``auth_server`` (stateful, SSE)
    open_mcp_server  (session) MCPServer without auth
    mcp_server_2025_03_26 / mcp_server_2025_11_25 / mcp_server_2026_07_28
                     (session) protected by ``auth_server``, restricted to one revision
    peer_factory     (session) PeerFactory: start differently configured peers,
                     stopped at the end of the session
    tmp_peers        (function) PeerFactory whose peers stop after the test

Environment read once at import (tests/conftest.py drops TETHER_* per test):
    TETHER_PEERS_HOME      install location (default ~/.cache/tether-peers)
    TETHER_PEERS_INSTALL   1 (default) | 0 never run the install script
    TETHER_PEERS_REQUIRED  0 (default: skip when unavailable) | 1 fail instead
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

from .fixture import (
    AuthServer,
    EnvValue,
    MCPServer,
    NodeEnv,
    Peers,
    PeersUnavailable,
    TLSFiles,
    ensure_node,
    peers_home,
)

_HOME = peers_home(dict(os.environ))
_INSTALL = os.environ.get("TETHER_PEERS_INSTALL", "1") != "0"
_REQUIRED = os.environ.get("TETHER_PEERS_REQUIRED", "0") == "1"


class PeerFactory:
    """Starts peers on demand and stops them all on close (newest first)."""

    def __init__(self, node: NodeEnv, home: Path) -> None:
        self.node = node
        self.home = home
        self._stack = contextlib.ExitStack()

    def auth_server(
        self, *, tls: bool | TLSFiles = False, **env: EnvValue
    ) -> AuthServer:
        """A started AuthServer; keywords are AS_* switches."""
        server = AuthServer(tls=tls, node=self.node, peers_home=self.home, env=env)
        return self._stack.enter_context(server)

    def mcp_server(
        self,
        auth_server: AuthServer | None = None,
        *,
        tls: bool | TLSFiles = False,
        **env: EnvValue,
    ) -> MCPServer:
        """A started MCPServer (protected when ``auth_server`` is given); keywords are MCP_* switches."""
        return self._stack.enter_context(MCPServer(auth_server, tls=tls, env=env))

    def peers(
        self,
        *,
        tls: bool = False,
        as_env: dict[str, EnvValue] | None = None,
        mcp_env: dict[str, EnvValue] | None = None,
    ) -> Peers:
        """A started AS + protected MCP server pair."""
        pair = Peers(
            tls=tls,
            as_env=as_env,
            mcp_env=mcp_env,
            node=self.node,
            peers_home=self.home,
        )
        return self._stack.enter_context(pair)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@pytest.fixture(scope="session")
def peers_node() -> NodeEnv:
    """Node 22 and oidc-provider, installed on first use."""
    try:
        return ensure_node(_HOME, install=_INSTALL)
    except PeersUnavailable as exc:
        if _REQUIRED:
            pytest.fail(f"test peers unavailable: {exc}")
        pytest.skip(f"test peers unavailable: {exc}")


@pytest.fixture(scope="session")
def peer_factory(peers_node: NodeEnv) -> Iterator[PeerFactory]:
    """Session-wide factory; its peers stop when the session ends."""
    with PeerFactory(peers_node, _HOME) as factory:
        yield factory


@pytest.fixture
def tmp_peers(peers_node: NodeEnv) -> Iterator[PeerFactory]:
    """Per-test factory; its peers stop after the test."""
    with PeerFactory(peers_node, _HOME) as factory:
        yield factory


@pytest.fixture(scope="session")
def auth_server(peer_factory: PeerFactory) -> AuthServer:
    """The default authorization server (auto-approve, JWT access tokens, open DCR)."""
    return peer_factory.auth_server()


@pytest.fixture(scope="session")
def mcp_server(peer_factory: PeerFactory, auth_server: AuthServer) -> MCPServer:
    """A stateful, SSE-answering MCP server protected by ``auth_server``."""
    return peer_factory.mcp_server(auth_server)


@pytest.fixture(scope="session")
def open_mcp_server(peer_factory: PeerFactory) -> MCPServer:
    """An MCP server without authentication."""
    return peer_factory.mcp_server()


@pytest.fixture(scope="session")
def mcp_server_2025_03_26(
    peer_factory: PeerFactory, auth_server: AuthServer
) -> MCPServer:
    """Protected, stateful; negotiates only 2025-03-26 (no 2026-07-28 either)."""
    return peer_factory.mcp_server(auth_server, MCP_PROTOCOL_VERSIONS="2025-03-26")


@pytest.fixture(scope="session")
def mcp_server_2025_11_25(
    peer_factory: PeerFactory, auth_server: AuthServer
) -> MCPServer:
    """Protected, stateful (Mcp-Session-Id); speaks only the 2025-11-25 handshake revision."""
    return peer_factory.mcp_server(auth_server, MCP_PROTOCOL_VERSIONS="2025-11-25")


@pytest.fixture(scope="session")
def mcp_server_2026_07_28(
    peer_factory: PeerFactory, auth_server: AuthServer
) -> MCPServer:
    """Protected; answers only stateless 2026-07-28 requests (no initialize, no sessions)."""
    return peer_factory.mcp_server(auth_server, MCP_PROTOCOL_VERSIONS="2026-07-28")
