"""No stray SDK tracebacks on stderr over many successful calls (issue 10 item 9).

The report was ``Error parsing SSE message … BrokenResourceError`` on about one in
eight successful calls with SSE responses. The cause (:mod:`tether.mcp.drain`): a
server message arriving while the SDK closes a session — after the session's streams
closed, before the transport stopped its readers. The peer's ``chatter`` tool
(``MCP_CHATTER=1``) answers and then sends log messages tied to no request, which a
stateful session receives on its GET stream just as the caller closes it: without the
fix most of these calls logged the traceback. Each call is a whole session life (a
fresh Tether, or a ``tether`` process), the SDK server answering in SSE.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from peers.plugin import PeerFactory
from tether import KeyRing, Tether

pytestmark = pytest.mark.realservers

CALLS = 24
PROCESSES = 6


@pytest.mark.parametrize("revision", ["2025-11-25", "2026-07-28"])
async def test_many_session_lives_log_nothing(
    tmp_peers: PeerFactory, caplog: pytest.LogCaptureFixture, revision: str
) -> None:
    mcp = tmp_peers.mcp_server(
        MCP_PROTOCOL_VERSIONS=revision, MCP_JSON_RESPONSE=0, MCP_CHATTER=1
    )
    progress: list[float] = []

    async def seen(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    caplog.set_level(logging.WARNING)
    for i in range(CALLS):
        async with await Tether.open(
            database_url="memory://",
            key_ring=KeyRing.generate(),
            redirect_uri="http://127.0.0.1:8470/oauth/callback",
            allow_networks=["127.0.0.0/8"],
        ) as tether:
            await tether.servers.create(
                {"name": "open", "url": mcp.url, "auth_mode": "none"}, actor="test"
            )
            if i % 4 == 3:
                args = {"seconds": 0.01, "steps": 2}
                result = await tether.call_tool("open", "slow", args, progress=seen)
            else:
                result = await tether.call_tool("open", "chatter", {"after": 5})
            assert not result.is_error, result.text
    assert progress  # the SSE responses carried notifications before the results
    assert [r.getMessage() for r in caplog.records] == []


def test_many_cli_calls_keep_stderr_clean(
    tmp_peers: PeerFactory, tmp_path: Path
) -> None:
    mcp = tmp_peers.mcp_server(
        MCP_PROTOCOL_VERSIONS="2025-11-25", MCP_JSON_RESPONSE=0, MCP_CHATTER=1
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TETHER_")},
        "TETHER_HOME": str(tmp_path),
        "TETHER_ALLOW_NETWORKS": "127.0.0.0/8",
    }

    def tether(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from tether.cli.main import main; main()", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    added = tether("servers", "add", "open", mcp.url)
    assert added.returncode == 0, added.stderr
    for _ in range(PROCESSES):
        done = tether("tools", "call", "open", "chatter", "--args", '{"after": 5}')
        assert done.returncode == 0, done.stderr
        assert [
            line
            for line in done.stderr.splitlines()
            if not line.startswith("progress:")
        ] == []
