"""TLS, secrets at rest and broken authorization servers end to end (SSRF-*, TOK-8, GEN-4).

* a private CA trusted per server (``ca_bundle``), and a clear certificate error without it;
* the SQLite file after full connects holds no token, secret or credential in plaintext;
* a dead or HTML-serving authorization server fails the next connect with an error naming
  the server and the step, and leaves the stored grant untouched.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hub.conftest import (
    MakeTether,
    connect,
    oauth_server,
    secret,
    stored,
    whoami,
)
from peers.fixture import AuthServer, MCPServer
from peers.plugin import PeerFactory
from tether.errors import DiscoveryError, NetworkError

pytestmark = pytest.mark.realservers


async def test_tls_with_private_ca_bundle_ssrf2(
    tmp_peers: PeerFactory, make_tether: MakeTether
) -> None:
    """SSRF-2/TOK-2: https peers signed by a local CA work with the server's ``ca_bundle``.

    Without the bundle the same server fails at discovery with a certificate error that
    names the server.
    """
    peers = tmp_peers.peers(tls=True)
    assert peers.url.startswith("https://")
    assert peers.issuer.startswith("https://")
    assert peers.ca_file is not None
    tether = await make_tether()
    server = await tether.servers.create(
        oauth_server(peers, ca_bundle=peers.ca_file), actor="admin"
    )

    info = await connect(tether, server.name, ca_bundle=peers.ca_file)

    assert info.issuer == peers.issuer
    conn = await stored(tether, server.id)
    assert whoami(peers.mcp, secret(conn.access_token))["aud"] == peers.url
    await tether.refresh(server.name)  # the token endpoint over TLS too

    untrusted = await tether.servers.create(
        oauth_server(peers, name="no-ca"), actor="admin"
    )
    with pytest.raises(NetworkError) as caught:
        await tether.connect(untrusted.name, user="admin")
    assert caught.value.server == "no-ca"
    assert caught.value.step == "discovery"
    assert "certificate" in str(caught.value).lower()


def file_bytes(db_path: Path) -> bytes:
    """The database file and every side file SQLite keeps next to it."""
    files = sorted(db_path.parent.glob(db_path.name + "*"))
    assert db_path in files
    return b"".join(path.read_bytes() for path in files)


def dump_text(db_path: Path) -> str:
    with sqlite3.connect(db_path) as db:
        return "\n".join(db.iterdump())


async def test_database_holds_no_plaintext_secret_tok8(
    make_tether: MakeTether,
    auth_server: AuthServer,
    mcp_server: MCPServer,
    db_path: Path,
) -> None:
    """TOK-8/RFR-1: after full connects nothing secret is readable in the SQLite file.

    Covers access and refresh tokens of two connections, a manual client secret, a
    dynamic registration's secret and registration access token, and a header
    credential; the raw bytes (with WAL) and an ``iterdump`` are searched, and a control
    shows non-secret values are found in them.
    """
    tether = await make_tether()
    header_value = "hdr-9f8e7d6c5b4a-plaintext-canary"
    header = await tether.credentials.create("header-key", header_value, actor="admin")
    await tether.servers.create(
        {
            "name": "with-header",
            "url": mcp_server.url,
            "auth_mode": "header",
            "credential_id": header.id,
            "allow_networks": ["127.0.0.0/8"],
        },
        actor="admin",
    )
    manual_secret = await tether.credentials.create(
        "static-basic", "static-basic-secret", actor="admin"
    )
    manual = await tether.servers.create(
        oauth_server(
            mcp_server,
            name="manual",
            registration="manual",
            client_id="static-basic",
            client_secret_credential_id=manual_secret.id,
        ),
        actor="admin",
    )
    dynamic = await tether.servers.create(
        oauth_server(mcp_server, name="dynamic"), actor="admin"
    )
    await connect(tether, manual.name)
    await connect(tether, dynamic.name)
    await tether.refresh(dynamic.name)

    secrets = {
        "header credential": header_value,
        "manual secret": "static-basic-secret",
    }
    for server_id in (manual.id, dynamic.id):
        conn = await stored(tether, server_id)
        secrets[f"{server_id} access"] = secret(conn.access_token)
        secrets[f"{server_id} refresh"] = secret(conn.refresh_token)
    registration = await tether.stores.registrations.get(dynamic.id, auth_server.issuer)
    assert registration is not None
    if registration.client_secret is not None:  # Tether registers public when it can
        secrets["dcr secret"] = secret(registration.client_secret)
    secrets["dcr registration token"] = secret(registration.registration_access_token)
    # the file: raw bytes (text may be stored as UTF-8 anywhere) and a logical dump
    raw = file_bytes(db_path)
    text = dump_text(db_path)

    for label, value in secrets.items():
        assert len(value) >= 16, label
        assert value.encode() not in raw, f"{label} is stored in plaintext"
        assert value not in text, f"{label} is in the SQL dump"
        assert value[:16] not in text, f"a prefix of {label} is in the SQL dump"
    # control: the search does find what is stored in the clear
    assert "static-basic" in text
    assert registration.client_id in text
    assert mcp_server.url in text


class _HtmlHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def html_server(host: str, port: int) -> Iterator[ThreadingHTTPServer]:
    """Answer every GET on ``host:port`` with an HTML page (a misconfigured proxy)."""
    httpd = ThreadingHTTPServer((host, port), _HtmlHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


async def test_broken_as_fails_clearly_and_keeps_the_grant_prm4_gen4(
    tmp_peers: PeerFactory, make_tether: MakeTether
) -> None:
    """PRM-4/GEN-4/RFR-6: dead AS, then HTML metadata: clear errors, grant intact.

    After a working connect the AS stops: a new connect fails with a NetworkError naming
    the server and the discovery step, a refresh fails as retryable and keeps the
    tokens. Then an HTML page answers on the AS's port: the connect fails with a
    DiscoveryError naming server and step. The stored
    connection's tokens, discovery and registration are never touched.
    """
    peers = tmp_peers.peers()
    auth = peers.auth_server
    tether = await make_tether()
    server = await tether.servers.create(oauth_server(peers), actor="admin")
    await connect(tether, server.name)
    before = await stored(tether, server.id)
    discovery = await tether.stores.discovery.get(server.id)
    registration = await tether.stores.registrations.get(server.id, auth.issuer)
    host, port = auth.host, auth.port

    auth.stop()
    tether.connections.discoverer.forget(server.id)  # cached by the connect above
    with pytest.raises(NetworkError) as dead:
        await tether.connect(server.name, user="admin")
    assert dead.value.server == server.name
    assert dead.value.step == "discovery"
    assert await stored(tether, server.id) == before

    with pytest.raises(NetworkError) as refresh:
        await tether.refresh(server.name)
    assert refresh.value.server == server.name
    assert refresh.value.step == "token"
    kept = await stored(tether, server.id)
    assert kept.status == "refresh_failed"  # RFR-6: retryable, tokens kept
    assert kept.access_token == before.access_token
    assert kept.refresh_token == before.refresh_token
    assert kept.expires_at == before.expires_at
    assert kept.last_error_code == refresh.value.code

    with html_server(host, port), pytest.raises(DiscoveryError) as html:
        await tether.connect(server.name, user="admin")
    error = html.value
    assert "HTML page" in error.message
    assert error.server == server.name
    assert error.step == "discovery"
    assert "<h1>" not in str(error)  # GEN-4: the page itself is not echoed

    after = await stored(tether, server.id)
    assert after.access_token == before.access_token
    assert after.refresh_token == before.refresh_token
    assert after.issuer == before.issuer
    assert await tether.stores.discovery.get(server.id) == discovery
    assert await tether.stores.registrations.get(server.id, auth.issuer) == registration
