"""Tether's main job, end to end, with the `tether` CLI against real loopback peers.

Starts oidc-provider (authorization server) and an MCP server built with the official SDK
(both from tests/peers), then runs the CLI as an admin would, with a fresh SQLite
database and key file under a temporary TETHER_HOME (kept with --keep).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from peers.fixture import Peers  # noqa: E402

TETHER = str(ROOT / ".venv" / "bin" / "tether")


def tether(env: dict[str, str], *args: str) -> str:
    """Run one CLI command, echo it and its output, fail loudly on error."""
    print(f"\n$ tether {' '.join(args)}", flush=True)
    done = subprocess.run(  # noqa: S603 - our own CLI with fixed arguments
        [TETHER, *args], env=env, text=True, capture_output=True, check=False
    )
    sys.stdout.write(done.stdout)
    sys.stdout.write(done.stderr)
    if done.returncode:
        raise SystemExit(f"tether {args[0]} failed with exit code {done.returncode}")
    return done.stdout


def main() -> None:
    """Start the peers and drive the CLI through the whole connection life cycle."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep TETHER_HOME")
    options = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="tether-demo-"))
    # No installation-wide allowlist: the server's own --allow-network carries every
    # hop of its flows, exactly as the README's quick start says.
    env = {k: v for k, v in os.environ.items() if k != "TETHER_ALLOW_NETWORKS"}
    env["TETHER_HOME"] = str(home)
    with Peers(
        as_env={"AS_ACCESS_TOKEN_FORMAT": "opaque"},
        mcp_env={"MCP_TOKEN_VALIDATION": "introspection"},
    ) as peers:
        print(
            f"authorization server: {peers.issuer}\nMCP server:           {peers.url}"
        )
        tether(
            env,
            "servers",
            "add",
            "demo",
            peers.url,
            "--auth",
            "oauth",
            "--description",
            "Loopback demo server",
            "--allow-network",
            "127.0.0.0/8",
        )
        tether(env, "servers", "list")
        tether(env, "connect", "demo", "--follow-redirects")
        tether(env, "refresh", "demo")
        tether(env, "tools", "list", "demo")
        tether(env, "tools", "call", "demo", "add", "--args", '{"a": 2, "b": 40}')
        tether(env, "toolsets", "create", "agent", "--server", "demo:echo,whoami")
        tether(env, "toolsets", "show", "agent", "--provider", "anthropic")
        tether(env, "toolsets", "call", "agent", "echo", "--args", '{"text": "hi"}')
        tether(env, "status", "demo", "--json")
        tether(env, "disconnect", "demo")
        tether(env, "audit")
    db = home / "tether.db"
    print(
        f"\nSQLite database: {db} ({db.stat().st_size} bytes); key file: {home / 'keys'}"
    )
    if not options.keep:
        shutil.rmtree(home, ignore_errors=True)
    print("demo finished: server registered, connected, refreshed, revoked")


if __name__ == "__main__":
    main()
