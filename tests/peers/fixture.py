"""Start real protocol peers on loopback for end-to-end tests.

* :class:`AuthServer` - oidc-provider 9.13.3 on Node 22 (``tests/peers/as/oidc_as.mjs``)
* :class:`MCPServer` - the official ``mcp`` SDK behind uvicorn (``tests/peers/mcp_server.py``)
* :class:`Peers` - one of each, sharing a TLS CA when ``tls=True``

Each instance picks a free loopback port, starts its process in a new process
group, waits for ``/healthz`` (the error carries the log tail) and stops the
group on exit. Keyword arguments are environment switches (``AS_*`` for the
authorization server, ``MCP_*`` for the MCP server; see the two server files);
values may be ``str``, ``int`` or ``bool`` (``True`` -> ``"1"``)::

    with AuthServer(AS_ACCESS_TOKEN_TTL=5) as auth, MCPServer(auth, MCP_STATELESS=True) as mcp:
        auth.issuer, mcp.url, mcp.ca_file, mcp.calls(), auth.log()

Node and the npm packages come from ``.ci/install-peers.sh`` (run once on
demand, see :func:`ensure_node`). Only the standard library is used here,
plus ``trustme`` for TLS.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
INSTALL_SCRIPT = REPO / ".ci" / "install-peers.sh"
AS_SCRIPT = HERE / "as" / "oidc_as.mjs"
MCP_SCRIPT = HERE / "mcp_server.py"
LOOPBACK = "127.0.0.1"

EnvValue = str | int | float | bool


class PeerError(RuntimeError):
    """A peer could not be started or answered unexpectedly."""


class PeersUnavailable(PeerError):
    """Node or the npm packages are missing and could not be installed."""


def peers_home(env: Mapping[str, str] | None = None) -> Path:
    """Where install-peers.sh keeps Node and the npm packages."""
    env = os.environ if env is None else env
    home = env.get("TETHER_PEERS_HOME")
    return Path(home) if home else Path.home() / ".cache" / "tether-peers"


@dataclass(frozen=True)
class NodeEnv:
    """The node binary and the folder holding ``node_modules/oidc-provider``."""

    node_bin: Path
    node_dir: Path


_install_lock = threading.Lock()
_install_result: dict[Path, NodeEnv | PeersUnavailable] = {}


def _read_node_env(home: Path) -> NodeEnv | None:
    env_file = home / "env"
    if not env_file.is_file():
        return None
    values = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
    )
    node_bin, node_dir = (
        Path(values.get("NODE_BIN", "")),
        Path(values.get("NODE_DIR", "")),
    )
    lock = node_dir / "package-lock.json"
    if not (node_bin.is_file() and os.access(node_bin, os.X_OK)):
        return None
    if not (node_dir / "node_modules" / "oidc-provider" / "package.json").is_file():
        return None
    want = (HERE / "as" / "package-lock.json").read_bytes()
    if not lock.is_file() or lock.read_bytes() != want:
        return None
    return NodeEnv(node_bin, node_dir)


def ensure_node(home: Path | None = None, *, install: bool = True) -> NodeEnv:
    """Return the Node set-up, running ``.ci/install-peers.sh`` once if it is missing.

    Raises:
        PeersUnavailable: nothing installed and ``install`` is false, or the
            install script failed (the message carries its output).
    """
    home = home or peers_home()
    with _install_lock:
        cached = _install_result.get(home)
        if isinstance(cached, NodeEnv):
            return cached
        found = _read_node_env(home)
        if found is not None:
            _install_result[home] = found
            return found
        if isinstance(cached, PeersUnavailable):
            raise cached
        if not install:
            error = PeersUnavailable(
                f"peers are not installed in {home}; run {INSTALL_SCRIPT}"
            )
            _install_result[home] = error
            raise error
        if shutil.which("npm") is None:
            error = PeersUnavailable(
                "npm is not installed, cannot install the test peers"
            )
            _install_result[home] = error
            raise error
        env = {**os.environ, "TETHER_PEERS_HOME": str(home)}
        try:
            proc = subprocess.run(
                ["bash", str(INSTALL_SCRIPT)],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            error = PeersUnavailable(f"{INSTALL_SCRIPT} could not run: {exc}")
            _install_result[home] = error
            raise error from exc
        found = _read_node_env(home) if proc.returncode == 0 else None
        if found is None:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            error = PeersUnavailable(
                f"{INSTALL_SCRIPT} failed (exit {proc.returncode}):\n{tail}"
            )
            _install_result[home] = error
            raise error
        _install_result[home] = found
        return found


@dataclass(frozen=True)
class TLSFiles:
    """A throw-away CA and one server certificate for localhost, 127.0.0.1 and ::1."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def create(cls, directory: Path, *extra_names: str) -> TLSFiles:
        """Write ``ca.pem``, ``server.pem`` (leaf + chain) and ``server.key``."""
        import trustme

        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="Tether test peers CA")
        leaf = ca.issue_cert("localhost", "127.0.0.1", "::1", *extra_names)
        files = cls(
            directory / "ca.pem", directory / "server.pem", directory / "server.key"
        )
        ca.cert_pem.write_to_path(str(files.ca_file))
        leaf.private_key_pem.write_to_path(str(files.key_file))
        files.cert_file.write_bytes(
            b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        )
        files.key_file.chmod(0o600)
        return files

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only this CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _env_str(value: EnvValue) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Peer:
    """One server process: start, health check, log, stop."""

    name = "peer"
    prefix = ""

    def __init__(
        self,
        *,
        tls: bool | TLSFiles = False,
        host: str = LOOPBACK,
        public_host: str | None = None,
        port: int | None = None,
        startup_timeout: float = 30.0,
        env: Mapping[str, EnvValue] | None = None,
    ) -> None:
        self.host = host
        self.public_host = public_host or host
        self.port = port or 0
        self._fixed_port = port is not None
        self.startup_timeout = startup_timeout
        self.extra_env = {k: _env_str(v) for k, v in (env or {}).items()}
        self._tls_arg = tls
        self.tls: TLSFiles | None = None
        self.state_dir: Path | None = None
        self._owns_state = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    # --------------------------------------------------------------- public
    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def base_url(self) -> str:
        """``scheme://host:port`` as clients see it."""
        return f"{self.scheme}://{_url_host(self.public_host)}:{self.port}"

    @property
    def ca_file(self) -> str | None:
        """PEM file of the CA to trust, or None without TLS."""
        return str(self.tls.ca_file) if self.tls else None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client SSL context trusting the CA (None without TLS)."""
        return self.tls.ssl_context() if self.tls else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        """Everything the process wrote so far (stdout and stderr)."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def get_json(self, path: str, *, method: str = "GET") -> Any:
        """Call one of the server's own HTTP endpoints and decode the JSON answer."""
        request = urllib.request.Request(self.base_url + path, method=method)  # noqa: S310
        with urllib.request.urlopen(  # noqa: S310
            request, timeout=10, context=self.ssl_context()
        ) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def start(self) -> Self:
        if self._proc is not None:
            raise PeerError(f"{self.name} already started")
        if self.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix=f"tether-peers-{self.name}-"))
            self._owns_state = True
        if self._tls_arg is True:
            self.tls = TLSFiles.create(self.state_dir / "tls")
        elif isinstance(self._tls_arg, TLSFiles):
            self.tls = self._tls_arg
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            if not self._fixed_port:
                self.port = free_port(self.host)
            self._log_path = self.state_dir / f"{self.name}-{attempt}.log"
            try:
                self._spawn()
                self._wait_healthy()
            except PeerError:
                log = self.log()
                self._terminate()
                if attempt + 1 < attempts and (
                    "EADDRINUSE" in log or "address already in use" in log
                ):
                    continue
                self._cleanup()
                raise
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        self._terminate()
        self._cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --------------------------------------------------------------- subclass hooks
    def command(self) -> list[str]:
        raise NotImplementedError

    def server_env(self) -> dict[str, str]:
        raise NotImplementedError

    # --------------------------------------------------------------- internals
    def _spawn(self) -> None:
        assert self._log_path is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AS_", "MCP_"))}
        env.update(self.server_env())
        env.update(self.extra_env)
        with self._log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.command(),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(HERE),
                start_new_session=True,
            )

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.scheme}://{_url_host(self.host)}:{self.port}/healthz"
        context = self.ssl_context()
        last = ""
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise PeerError(
                    f"{self.name} exited with {self._proc.returncode} before it was healthy;"
                    f" log tail:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise PeerError(
                    f"{self.name} not healthy at {url} after {self.startup_timeout}s ({last});"
                    f" log tail:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def _cleanup(self) -> None:
        if (
            self._owns_state
            and self.state_dir is not None
            and not os.environ.get("TETHER_PEERS_KEEP")
        ):
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None
            self._owns_state = False
            self._log_path = None


class AuthServer(_Peer):
    """oidc-provider on loopback. Keywords are ``AS_*`` switches (see ``as/oidc_as.mjs``).

    Attributes:
        issuer: the issuer URL (no trailing slash), also ``url``.
        metadata_url: the RFC 8414 metadata URL.
        ca_file: the CA to trust with ``tls``, else None.
    """

    name = "as"

    def __init__(
        self,
        *,
        tls: bool | TLSFiles = False,
        host: str = LOOPBACK,
        public_host: str | None = None,
        port: int | None = None,
        startup_timeout: float = 30.0,
        node: NodeEnv | None = None,
        peers_home: Path | None = None,
        install: bool = True,
        env: Mapping[str, EnvValue] | None = None,
        **switches: EnvValue,
    ) -> None:
        super().__init__(
            tls=tls,
            host=host,
            public_host=public_host,
            port=port,
            startup_timeout=startup_timeout,
            env={"AS_LOG": "1", **(env or {}), **switches},
        )
        self._node = node
        self._home = peers_home
        self._install = install

    @property
    def issuer(self) -> str:
        return self.extra_env.get("AS_ISSUER", self.base_url).rstrip("/")

    @property
    def url(self) -> str:
        return self.issuer

    @property
    def metadata_url(self) -> str:
        return self.base_url + "/.well-known/oauth-authorization-server"

    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 document as served."""
        data: dict[str, Any] = self.get_json("/.well-known/oauth-authorization-server")
        return data

    def start(self) -> Self:
        if self._node is None:
            self._node = ensure_node(self._home, install=self._install)
        return super().start()

    def command(self) -> list[str]:
        assert self._node is not None
        return [str(self._node.node_bin), str(AS_SCRIPT)]

    def server_env(self) -> dict[str, str]:
        assert self._node is not None
        env = {
            "PEERS_NODE_DIR": str(self._node.node_dir),
            "AS_HOST": self.host,
            "AS_PORT": str(self.port),
            "AS_ISSUER": self.issuer,
        }
        if self.tls:
            env.update(
                AS_TLS_CERT=str(self.tls.cert_file),
                AS_TLS_KEY=str(self.tls.key_file),
                NODE_EXTRA_CA_CERTS=str(self.tls.ca_file),
            )
        return env


class MCPServer(_Peer):
    """The SDK-based MCP server on loopback. Keywords are ``MCP_*`` switches.

    Pass an :class:`AuthServer` (or ``issuer=``) to protect it with OAuth;
    without one it runs with ``MCP_AUTH=0``. With ``tls=True`` and a TLS
    authorization server that is already started, its CA is reused.

    Attributes:
        url: the Streamable HTTP endpoint (also the RFC 8707 resource).
        prm_url: the path-inserted RFC 9728 metadata URL.
        issuer: the authorization server's issuer, or None.
        ca_file: the CA to trust with ``tls``, else None.
    """

    name = "mcp"

    def __init__(
        self,
        auth_server: AuthServer | None = None,
        *,
        issuer: str | None = None,
        tls: bool | TLSFiles = False,
        host: str = LOOPBACK,
        public_host: str | None = None,
        port: int | None = None,
        path: str = "/mcp",
        startup_timeout: float = 30.0,
        env: Mapping[str, EnvValue] | None = None,
        **switches: EnvValue,
    ) -> None:
        super().__init__(
            tls=tls,
            host=host,
            public_host=public_host,
            port=port,
            startup_timeout=startup_timeout,
            env={**(env or {}), **switches},
        )
        self.auth_server = auth_server
        self._issuer = issuer
        self.path = "/" + path.strip("/")

    @property
    def issuer(self) -> str | None:
        if self._issuer is not None:
            return self._issuer.rstrip("/")
        return self.auth_server.issuer if self.auth_server is not None else None

    @property
    def url(self) -> str:
        return self.base_url + ("" if self.path == "/" else self.path)

    @property
    def resource(self) -> str:
        return self.url

    @property
    def prm_url(self) -> str:
        return (
            self.base_url
            + "/.well-known/oauth-protected-resource"
            + ("" if self.path == "/" else self.path)
        )

    def start(self) -> Self:
        if (
            self._tls_arg is True
            and self.auth_server is not None
            and self.auth_server.tls is not None
        ):
            self._tls_arg = self.auth_server.tls  # one CA for both servers
        return super().start()

    def calls(self) -> list[dict[str, Any]]:
        """Every tools/call so far: tool, sub, client_id, scope, session_id, protocol_version."""
        data: list[dict[str, Any]] = self.get_json("/_calls")
        return data

    def listeners(self) -> int:
        """Open ``subscriptions/listen`` streams (2026-07-28)."""
        data: dict[str, int] = self.get_json("/_listeners")
        return data["listeners"]

    def clear_calls(self) -> None:
        self.get_json("/_calls", method="DELETE")

    def expire_sessions(self) -> int:
        """Make every session id issued so far answer 404; returns how many were live."""
        data: dict[str, int] = self.get_json("/_expire_sessions", method="POST")
        return data["expired"]

    def command(self) -> list[str]:
        return [sys.executable, str(MCP_SCRIPT)]

    def server_env(self) -> dict[str, str]:
        env = {
            "MCP_HOST": self.host,
            "MCP_PORT": str(self.port),
            "MCP_PATH": self.path,
            "MCP_PUBLIC_URL": self.base_url,
            "MCP_AUTH": "1" if self.issuer else "0",
            "MCP_AS_ISSUER": self.issuer or "",
            "PYTHONUNBUFFERED": "1",
        }
        if self.tls:
            env.update(
                MCP_TLS_CERT=str(self.tls.cert_file), MCP_TLS_KEY=str(self.tls.key_file)
            )
        ca = self.auth_server.ca_file if self.auth_server is not None else None
        if ca:
            env["MCP_CA_FILE"] = ca
        return env


class Peers:
    """An authorization server and an MCP server protected by it, started together.

    ``as_env`` / ``mcp_env`` hold the switches of each; with ``tls=True`` both
    serve HTTPS with one CA (``ca_file``).
    """

    def __init__(
        self,
        *,
        tls: bool = False,
        as_env: Mapping[str, EnvValue] | None = None,
        mcp_env: Mapping[str, EnvValue] | None = None,
        node: NodeEnv | None = None,
        peers_home: Path | None = None,
        install: bool = True,
    ) -> None:
        self.auth_server = AuthServer(
            tls=tls, node=node, peers_home=peers_home, install=install, env=as_env
        )
        self.mcp = MCPServer(self.auth_server, tls=tls, env=mcp_env)

    @property
    def issuer(self) -> str:
        return self.auth_server.issuer

    @property
    def url(self) -> str:
        return self.mcp.url

    @property
    def ca_file(self) -> str | None:
        return self.auth_server.ca_file

    def start(self) -> Self:
        self.auth_server.start()
        try:
            self.mcp.start()
        except BaseException:
            self.auth_server.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.mcp.stop()
        finally:
            self.auth_server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
