"""Start and stop what ``tether demo`` runs on loopback (issue 10 item 10).

Three servers on 127.0.0.1, each on a free port:

* the demo authorization server: oidc-provider on Node (``authserver.mjs``) with a real
  sign-in and consent page, in its own process group;
* the demo MCP server (``mcp_server.py``, the official SDK) under uvicorn, in this process;
* the Tether web service (:func:`tether.web.app.create_app`, SQLite and a key file in a
  fresh folder, the background jobs running) under uvicorn, in this process.

Node and the npm packages come from ``.ci/install-peers.sh`` (``scripts/demo.sh`` runs it),
which records them in ``$TETHER_PEERS_HOME/env``; when they are missing,
:func:`find_node` raises a :class:`~tether.errors.ConfigurationError` naming the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import uvicorn
from pydantic import SecretStr

from tether.config import Settings
from tether.errors import ConfigurationError, NetworkError
from tether.hub.tether import Tether
from tether.store.migrate import migrate
from tether.web.app import create_app, run_jobs
from tether.web.security import issue_key

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_USER",
    "INSTALL_HINT",
    "DemoStack",
    "NodeSetup",
    "find_node",
    "start_stack",
]

AUTH_SERVER_JS = Path(__file__).with_name("authserver.mjs")
DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - the printed demo account, loopback only
SERVER_NAME = "demo"
INSTALL_HINT = (
    "run `bash scripts/demo.sh` (or `bash .ci/install-peers.sh`) in a Tether checkout"
)
_STARTUP = 60.0  # seconds a server may take to answer its first health check


@dataclass(frozen=True, slots=True)
class NodeSetup:
    """The node binary and the folder holding ``node_modules/oidc-provider``."""

    node_bin: Path
    node_dir: Path


def find_node(env: Mapping[str, str] | None = None) -> NodeSetup:
    """Node and oidc-provider as ``.ci/install-peers.sh`` recorded them.

    Raises:
        ConfigurationError: Not installed (the message names the command to run).
    """
    env = os.environ if env is None else env
    home = Path(env.get("TETHER_PEERS_HOME") or Path.home() / ".cache/tether-peers")
    record = home / "env"
    values: dict[str, str] = {}
    if record.is_file():
        for line in record.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key] = value
    node_bin = Path(values.get("NODE_BIN", "/nonexistent"))
    node_dir = Path(values.get("NODE_DIR", "/nonexistent"))
    if not (node_bin.is_file() and os.access(node_bin, os.X_OK)):
        raise ConfigurationError(
            f"tether demo needs Node 22 and oidc-provider, not found in {home}",
            hint=INSTALL_HINT,
        )
    if not (node_dir / "node_modules" / "oidc-provider" / "package.json").is_file():
        raise ConfigurationError(
            f"tether demo needs the npm package oidc-provider, not found in {node_dir}",
            hint=INSTALL_HINT,
        )
    return NodeSetup(node_bin, node_dir)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Server(uvicorn.Server):
    """uvicorn in a task: an event once it listens, and no signal handlers of its own.

    ``tether demo`` handles Ctrl-C once, for all three servers.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _listen(port: int, what: str) -> socket.socket:
    """A socket bound to 127.0.0.1:``port`` (0: any free port) for uvicorn to serve.

    Raises:
        NetworkError: The port is taken (or not ours to bind).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise NetworkError(
            f"the {what} cannot listen on 127.0.0.1:{port}: {exc.strerror}",
            hint="choose another --port, or leave it out for any free port",
        ) from None
    return sock


@contextlib.asynccontextmanager
async def _serve(app: Any, sock: socket.socket, what: str) -> AsyncIterator[None]:
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait(
        [task, ready], timeout=_STARTUP, return_when=asyncio.FIRST_COMPLETED
    )
    if not ready.done():
        ready.cancel()
        server.should_exit = True
        with contextlib.suppress(BaseException):  # uvicorn exits on a failed start
            await task
        sock.close()
        raise NetworkError(f"the {what} did not start (see the messages above)")
    try:
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await task
        sock.close()


async def _wait_healthy(url: str, proc: asyncio.subprocess.Process, log: Path) -> None:
    """Poll ``url`` until it answers 200 (or the process exits, or 60 s pass)."""
    deadline = asyncio.get_running_loop().time() + _STARTUP
    async with httpx2.AsyncClient(timeout=5.0) as client:
        while True:
            if proc.returncode is not None:
                text = await asyncio.to_thread(log.read_text, errors="replace")
                raise ConfigurationError(
                    f"the demo authorization server exited ({proc.returncode}): "
                    + text[-800:],
                    hint=INSTALL_HINT,
                )
            with contextlib.suppress(httpx2.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise NetworkError(
                    f"the demo authorization server at {url} never answered"
                )
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _auth_server(
    node: NodeSetup, port: int, rs_secret: str, folder: Path
) -> AsyncIterator[str]:
    log = folder / "authserver.log"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DEMO_NODE_DIR": str(node.node_dir),
        "DEMO_AS_PORT": str(port),
        "DEMO_USER": DEMO_USER,
        "DEMO_PASSWORD": DEMO_PASSWORD,
        "DEMO_RS_SECRET": rs_secret,
    }
    out = await asyncio.to_thread(log.open, "wb")
    try:
        proc = await asyncio.create_subprocess_exec(
            str(node.node_bin),
            str(AUTH_SERVER_JS),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us only; we stop it in order
        )
    finally:
        out.close()
    issuer = f"http://127.0.0.1:{port}"
    try:
        await _wait_healthy(f"{issuer}/healthz", proc, log)
        yield issuer
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


@dataclass(frozen=True, slots=True)
class DemoStack:
    """What a newcomer needs: where everything runs and how to sign in."""

    base_url: str
    admin_url: str
    admin_key: str
    issuer: str
    mcp_url: str
    server_id: str
    folder: Path
    tether: Tether


def _settings(folder: Path, base: str) -> Settings:
    """The demo's settings: its own folder and nothing from ``TETHER_*`` variables."""
    return Settings(
        home=folder,
        database_url=SecretStr(f"sqlite+aiosqlite:///{folder / 'tether.db'}"),
        encryption_keys=None,
        key_file=folder / "keys",
        public_url=base,
        allow_networks=[],
        ca_bundle=None,
        redis_url=None,
        client_name="Tether demo",
        fresh_start=False,
        session_secret=None,
        return_urls=[],
    )


@contextlib.asynccontextmanager
async def start_stack(
    folder: Path, *, port: int = 0, node: NodeSetup | None = None
) -> AsyncIterator[DemoStack]:
    """Start the three servers, create the admin key and register the demo server.

    Args:
        folder: Holds the SQLite database, the key file and the servers' logs.
        port: The web service's port (0: any free port).
        node: Node and oidc-provider (default: :func:`find_node`).

    Raises:
        ConfigurationError: Node or oidc-provider is missing.
        NetworkError: A server did not start.
    """
    from tether.demo.mcp_server import demo_mcp_app

    node = node or find_node()
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    web_sock = _listen(port, "Tether web service")
    mcp_sock = _listen(0, "demo MCP server")
    with contextlib.closing(web_sock), contextlib.closing(mcp_sock):
        base = f"http://127.0.0.1:{web_sock.getsockname()[1]}"
        mcp_base = f"http://127.0.0.1:{mcp_sock.getsockname()[1]}"
        settings = _settings(folder, base)
        await migrate(settings.resolved_database_url())
        app = create_app(settings, background=[run_jobs])
        rs_secret = secrets.token_urlsafe(24)
        async with _auth_server(node, _free_port(), rs_secret, folder) as issuer:
            mcp_app = demo_mcp_app(
                base_url=mcp_base, issuer=issuer, rs_secret=rs_secret
            )
            async with (
                _serve(mcp_app, mcp_sock, "demo MCP server"),
                _serve(app, web_sock, "Tether web service"),
            ):
                tether: Tether = app.state.tether
                _, admin_key = await issue_key(tether, "demo-admin", "admin")
                server = await tether.servers.create(
                    {
                        "name": SERVER_NAME,
                        "url": f"{mcp_base}/mcp",
                        "auth_mode": "oauth",
                        "description": "The demo MCP server (add, echo, whoami)",
                        "allow_networks": ["127.0.0.0/8"],
                    },
                    actor="demo",
                )
                yield DemoStack(
                    base_url=base,
                    admin_url=f"{base}/admin/",
                    admin_key=admin_key,
                    issuer=issuer,
                    mcp_url=f"{mcp_base}/mcp",
                    server_id=server.id,
                    folder=folder,
                    tether=tether,
                )
