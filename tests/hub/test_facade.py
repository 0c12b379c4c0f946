"""Server and credential use cases through the ``Tether`` facade, with the real URL check.

Name resolution is a fake: these tests never touch DNS or the network.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from tether.errors import BlockedDestination, NotFound, ValidationFailed
from tether.hub.tether import Tether
from tether.store.crypto import KeyRing

REDIRECT_URI = "http://127.0.0.1:8470/oauth/callback"
SECRET = "glpat-facade-secret-value-31337"

ZONE: Mapping[str, list[str]] = {
    "mcp.example.com": ["93.184.216.34"],
    "mcp6.example.com": ["2606:2800:220:1:248:1893:25c8:1946"],
    "internal.example.com": ["10.0.0.7"],
    "rebind.example.com": ["93.184.216.34", "127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
    "intranet.corp": ["10.20.30.40"],
    "localhost": ["127.0.0.1", "::1"],
}


@dataclass
class FakeResolver:
    calls: list[tuple[str, int]] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            pass
        else:
            return [host.strip("[]")]
        if host not in ZONE:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return list(ZONE[host])


@dataclass
class Env:
    tether: Tether
    resolver: FakeResolver


LOOPBACK = ["127.0.0.0/8", "::1/128"]


async def _open(allow_networks: list[str]) -> tuple[Tether, FakeResolver]:
    resolver = FakeResolver()
    tether = await Tether.open(
        database_url="memory://",
        key_ring=KeyRing.generate(),
        redirect_uri=REDIRECT_URI,
        allow_networks=allow_networks,
        resolver=resolver,
    )
    return tether, resolver


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    """An installation with no allowlist: public HTTPS only."""
    tether, resolver = await _open([])
    async with tether:
        yield Env(tether, resolver)


@pytest.fixture
async def dev_env() -> AsyncIterator[Env]:
    """An installation that allowlists loopback (development)."""
    tether, resolver = await _open(LOOPBACK)
    async with tether:
        yield Env(tether, resolver)


def server(url: str, **changes: Any) -> dict[str, Any]:
    return {"name": "Jira", "url": url, **changes}


REFUSED: list[tuple[str, str]] = [
    ("private IPv4 literal", "https://10.0.0.5/mcp"),
    ("loopback literal over https", "https://127.0.0.2/mcp"),
    ("link-local metadata literal", "https://169.254.169.254/latest"),
    ("IPv6 unique-local", "https://[fd00::1]/mcp"),
    ("IPv4-mapped loopback", "https://[::ffff:127.0.0.1]/mcp"),
    ("localhost", "https://localhost/mcp"),
    ("name resolving privately", "https://internal.example.com/mcp"),
    ("name resolving to metadata", "https://metadata.example.com/mcp"),
    ("one private answer among public", "https://rebind.example.com/mcp"),
    ("http to a public name", "http://mcp.example.com/mcp"),
    ("http to a public literal", "http://93.184.216.34/mcp"),
    ("userinfo", "https://user:pw@mcp.example.com/mcp"),
    ("ftp scheme", "ftp://mcp.example.com/mcp"),
    ("numeric host", "https://2130706433/mcp"),
    ("not a url", "https://exa mple.com/"),
]


@pytest.mark.parametrize("url", [u for _, u in REFUSED], ids=[i for i, _ in REFUSED])
async def test_url_refused_as_a_field_error(env: Env, url: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        await env.tether.servers.create(server(url), actor="admin")
    exc = info.value
    assert exc.code == "validation"
    assert set(exc.details["fields"]) == {"url"}
    assert "url" in exc.message.lower()
    assert exc.hint is not None
    assert "allow_networks" in exc.hint
    assert isinstance(exc.__cause__, BlockedDestination)
    assert await env.tether.servers.list() == []
    assert await env.tether.audit() == []


async def test_an_unresolvable_name_is_saved_with_a_warning(
    env: Env, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Offline registration: DNS failing now is a warning, not a refusal ...
    with caplog.at_level(logging.WARNING, logger="tether"):
        created = await env.tether.servers.create(
            server("https://nowhere.example.net/mcp"), actor=None
        )
    assert created.url == "https://nowhere.example.net/mcp"
    assert "could not resolve nowhere.example.net" in caplog.text
    assert "checked again at connect" in caplog.text
    # ... because every connection checks the addresses again (SSRF-5).
    monkeypatch.setitem(ZONE, "nowhere.example.net", ["10.0.0.9"])
    with pytest.raises(BlockedDestination, match=r"10\.0\.0\.9"):
        await env.tether.list_tools(created.name, refresh=True)


ACCEPTED: list[tuple[str, str]] = [
    ("public name", "https://mcp.example.com/mcp"),
    ("public name with port", "https://mcp.example.com:8443/mcp"),
    ("public IPv6 name", "https://mcp6.example.com/mcp"),
    ("public literal", "https://93.184.216.34/mcp"),
]


@pytest.mark.parametrize("url", [u for _, u in ACCEPTED], ids=[i for i, _ in ACCEPTED])
async def test_url_accepted(env: Env, url: str) -> None:
    created = await env.tether.servers.create(server(url), actor="admin")
    assert created.url == url


LOOPBACK_ACCEPTED = [
    "http://127.0.0.1:9000/mcp",
    "https://127.0.0.2/mcp",
    "http://[::1]:9000/mcp",
    "http://localhost:9000/mcp",
]


@pytest.mark.parametrize("url", LOOPBACK_ACCEPTED)
async def test_loopback_allowed_only_when_the_installation_allowlists_it(
    env: Env, dev_env: Env, url: str
) -> None:
    with pytest.raises(ValidationFailed):
        await env.tether.servers.create(server(url), actor=None)
    created = await dev_env.tether.servers.create(server(url), actor=None)
    assert created.url == url


async def test_installation_loopback_allowlist_does_not_open_private_or_http(
    dev_env: Env,
) -> None:
    for url in ("https://10.0.0.5/mcp", "http://mcp.example.com/mcp"):
        with pytest.raises(ValidationFailed) as info:
            await dev_env.tether.servers.create(server(url), actor=None)
        assert set(info.value.details["fields"]) == {"url"}


async def test_the_resolver_is_asked_with_the_port(env: Env) -> None:
    await env.tether.servers.create(
        server("https://mcp.example.com:8443/mcp"), actor=None
    )
    assert ("mcp.example.com", 8443) in env.resolver.calls


async def test_server_allowlist_opens_a_private_network(env: Env) -> None:
    created = await env.tether.servers.create(
        server("https://intranet.corp/mcp", allow_networks=["10.20.0.0/16"]),
        actor=None,
    )
    assert created.allow_networks == ("10.20.0.0/16",)


async def test_server_allowlist_does_not_open_other_networks(env: Env) -> None:
    with pytest.raises(ValidationFailed) as info:
        await env.tether.servers.create(
            server("https://intranet.corp/mcp", allow_networks=["192.168.0.0/16"]),
            actor=None,
        )
    assert set(info.value.details["fields"]) == {"url"}


async def test_server_allowlist_does_not_allow_plain_http(env: Env) -> None:
    with pytest.raises(ValidationFailed):
        await env.tether.servers.create(
            server("http://intranet.corp/mcp", allow_networks=["10.20.0.0/16"]),
            actor=None,
        )


async def test_update_rechecks_the_url(env: Env) -> None:
    created = await env.tether.servers.create(
        server("https://mcp.example.com/mcp"), actor=None
    )
    with pytest.raises(ValidationFailed) as info:
        await env.tether.servers.update(
            created.id, {"url": "https://internal.example.com/mcp"}, actor=None
        )
    assert set(info.value.details["fields"]) == {"url"}
    assert (await env.tether.servers.get(created.id)).url == created.url


async def test_url_change_through_the_facade_clears_and_audits(env: Env) -> None:
    created = await env.tether.servers.create(
        server(
            "https://mcp.example.com/mcp",
            auth_mode="oauth",
            oauth={"registration": "manual", "client_id": "c1"},
        ),
        actor="admin",
    )
    updated = await env.tether.servers.update(
        created.id, {"url": "https://mcp6.example.com/mcp"}, actor="admin"
    )
    assert updated.url == "https://mcp6.example.com/mcp"
    conn = await env.tether.connection(created.id)
    assert conn.status == "disconnected"
    events = await env.tether.audit(server_ref=created.id)
    assert events[0].action == "server.update"
    assert events[0].detail == "re-authorization required: url"


async def test_credentials_and_header_server_end_to_end(env: Env) -> None:
    cred = await env.tether.credentials.create("gitlab", SECRET, actor="admin")
    created = await env.tether.servers.create(
        server(
            "https://mcp.example.com/mcp",
            auth_mode="header",
            credential_id=cred.id,
            header_name="PRIVATE-TOKEN",
            header_scheme="",
        ),
        actor="admin",
    )
    assert (created.header_name, created.header_scheme) == ("PRIVATE-TOKEN", "")
    with pytest.raises(ValidationFailed) as info:
        await env.tether.credentials.delete("gitlab", actor="admin")
    assert "Jira" in info.value.message

    await env.tether.delete_server("Jira", actor="admin")
    await env.tether.credentials.delete("gitlab", actor="admin")
    with pytest.raises(NotFound):
        await env.tether.servers.get("Jira")

    events = await env.tether.audit(limit=100)
    text = json.dumps([dataclasses.asdict(e) for e in events], default=str)
    assert SECRET not in text
    assert [e.action for e in reversed(events)] == [
        "credential.create",
        "server.create",
        "server.delete",
        "credential.delete",
    ]
