"""One set of network settings for every command and every step (issue 8 item 5).

The README's quick start is run here verbatim — the commands are read from README.md —
against the real peers (oidc-provider and an MCP server built with the official SDK),
with no installation-wide allowlist: the server's own ``--allow-network`` must carry
every hop of its flows, including the authorization redirects of
``connect --follow-redirects``. Bad allowlist entries fail at configuration time.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from peers.fixture import AuthServer, MCPServer
from peers.plugin import PeerFactory
from tether.cli.main import app
from tether.errors import ConfigurationError
from tether.hub.context import HubConfig
from tether.probe import ProbeOptions, probe

README = Path(__file__).resolve().parents[2] / "README.md"


def quick_start_commands() -> list[list[str]]:
    """The ``tether …`` lines of the README's quick-start block, as argument lists."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "the README quick start has no bash block"
    commands = [shlex.split(line, comments=True) for line in block[1].splitlines()]
    return [argv[1:] for argv in commands if argv and argv[0] == "tether"]


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TETHER_HOME", str(tmp_path))
    monkeypatch.delenv("TETHER_ALLOW_NETWORKS", raising=False)
    return CliRunner()


def test_the_readme_quick_start_has_the_commands_this_test_relies_on() -> None:
    commands = quick_start_commands()
    assert commands[0][:2] == ["servers", "add"]
    assert "--allow-network" in commands[0]
    assert ["connect", "demo", "--follow-redirects"] in commands
    assert not any("TETHER_ALLOW_NETWORKS" in " ".join(c) for c in commands)


@pytest.mark.realservers
def test_readme_quick_start_verbatim_without_a_global_allowlist(
    runner: CliRunner, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    port = urlsplit(mcp_server.url).port
    assert mcp_server.url == f"http://127.0.0.1:{port}/mcp"
    outputs: dict[str, str] = {}
    for argv in quick_start_commands():
        argv = [a.replace("PORT", str(port)) for a in argv]
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, f"tether {shlex.join(argv)}\n{result.output}"
        outputs[" ".join(argv[:2])] = result.output
    assert json.loads(outputs["status demo"])["status"] == "connected"
    assert "whoami" in outputs["tools list"]
    assert "42" in outputs["tools call"]
    events = outputs["audit"]
    assert "connection.connect" in events


@pytest.mark.realservers
def test_connect_refused_without_any_allowlist_entry_for_the_as(
    runner: CliRunner, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    """The server's allowlist opens its hops and nothing more: here it names only the
    MCP server's address and port, so the AS (same host, other port) stays closed."""
    mcp = urlsplit(mcp_server.url)
    added = runner.invoke(
        app,
        [
            "servers",
            "add",
            "narrow",
            mcp_server.url,
            "--auth",
            "oauth",
            "--allow-network",
            f"127.0.0.1:{mcp.port}",
        ],
    )
    assert added.exit_code == 0, added.output
    connected = runner.invoke(app, ["connect", "narrow", "--follow-redirects"])
    assert connected.exit_code != 0
    assert "[discovery]" in connected.output  # the AS metadata, on the AS's port
    assert "refused to connect to 127.0.0.1: loopback address" in connected.output
    assert "[blocked_destination]" in connected.output


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("10.0.0.5:99999", "port '99999' is not a number from 1 to 65535"),
        ("[fd00::1", "expected '[IPv6]' or '[IPv6]:PORT'"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not an address or CIDR"),
    ],
)
def test_a_bad_allowlist_entry_is_refused_when_the_server_is_added(
    runner: CliRunner, entry: str, message: str
) -> None:
    result = runner.invoke(
        app,
        [
            "servers",
            "add",
            "x",
            "https://mcp.example.com/mcp",
            "--allow-network",
            entry,
        ],
    )
    assert result.exit_code == 2, result.output
    assert "allow_networks" in result.output
    assert message in result.output
    assert json.loads(runner.invoke(app, ["servers", "list", "--json"]).output) == []


def test_a_bad_global_allowlist_entry_fails_every_command(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_ALLOW_NETWORKS", '["10.0.0.5:0"]')
    result = runner.invoke(app, ["servers", "list"])
    assert result.exit_code != 0
    assert "allowlist entry '10.0.0.5:0'" in result.output
    assert "[configuration]" in result.output


@pytest.mark.realservers
def test_probe_uses_the_installation_allowlist(
    runner: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    auth_server: AuthServer,
    mcp_server: MCPServer,
) -> None:
    """``TETHER_ALLOW_NETWORKS`` applies to the probe as to every other command."""
    refused = runner.invoke(app, ["probe", mcp_server.url, "--follow-redirects"])
    assert refused.exit_code != 0
    # the probe registers the server as `servers add` would: the URL is vetted first
    assert "[FAILED] configuration: the server URL is not allowed" in refused.output
    assert "loopback address" in refused.output
    assert "requests: 0" in refused.output
    monkeypatch.setenv("TETHER_ALLOW_NETWORKS", '["127.0.0.0/8"]')
    probed = runner.invoke(app, ["probe", mcp_server.url, "--follow-redirects"])
    assert probed.exit_code == 0, probed.output
    assert "[ok] authorization" in probed.output
    assert "result: ok" in probed.output


@pytest.mark.realservers
def test_probe_server_allowlist_carries_every_hop_and_no_more(
    runner: CliRunner, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    """``--allow-network`` (the probed server's own) opens discovery, the AS endpoints
    and the authorization redirects; an entry for the MCP port only opens that."""
    probed = runner.invoke(
        app,
        ["probe", mcp_server.url, "--follow-redirects", "--allow-network", "127.0.0.1"],
    )
    assert probed.exit_code == 0, probed.output
    port = urlsplit(mcp_server.url).port
    narrow = runner.invoke(
        app,
        [
            "probe",
            mcp_server.url,
            "--follow-redirects",
            "--allow-network",
            f"127.0.0.1:{port}",
        ],
    )
    assert narrow.exit_code != 0
    assert "[ok] challenge" in narrow.output
    assert "[FAILED] discovery" in narrow.output


def test_probe_refuses_invalid_settings(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a comma list is accepted too, so this is one entry that is no host name
    monkeypatch.setenv("TETHER_ALLOW_NETWORKS", "not json")
    result = runner.invoke(app, ["probe", "https://mcp.example.com/mcp"])
    assert result.exit_code == 3  # configuration
    assert "'not json' is not a valid host name" in result.output
    assert "Traceback" not in result.output


def test_probe_reports_a_bad_installation_allowlist_entry(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_ALLOW_NETWORKS", '["[fd00::1]:0"]')
    result = runner.invoke(app, ["probe", "https://mcp.example.com/mcp"])
    assert result.exit_code != 0
    assert "[FAILED] setup" in result.output
    assert "allowlist entry '[fd00::1]:0'" in result.output


# ------------------------------------------------------------ redirect URI (item 6)


@pytest.mark.parametrize(
    "public_url", ["http://evil.example", "https://user@tether.example", "javascript:x"]
)
def test_a_bad_public_url_is_refused_at_startup(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, public_url: str
) -> None:
    monkeypatch.setenv("TETHER_PUBLIC_URL", public_url)
    result = runner.invoke(app, ["servers", "list"])
    assert result.exit_code != 0
    assert "the redirect URI" in result.output
    assert "[configuration]" in result.output


def test_hub_config_checks_the_redirect_uri() -> None:
    assert HubConfig(redirect_uri="http://[::1]:8470/cb").redirect_uri
    with pytest.raises(ConfigurationError, match="fragment"):
        HubConfig(redirect_uri="https://tether.example/cb#x")


@pytest.mark.parametrize(
    "redirect", ["javascript:alert(1)", "http://evil.example/cb", "https://a/cb#f"]
)
def test_probe_refuses_a_bad_redirect_uri(runner: CliRunner, redirect: str) -> None:
    result = runner.invoke(
        app, ["probe", "https://mcp.example.com/mcp", "--redirect-uri", redirect]
    )
    assert result.exit_code == 2
    assert "--redirect-uri: the redirect URI" in result.output
    assert "[usage]" in result.output


async def test_probe_function_reports_a_bad_redirect_uri_as_a_setup_step() -> None:
    report = await probe(
        ProbeOptions(url="https://mcp.example.com/mcp", redirect_uri="http://x.test/")
    )
    failed = report.failed_step
    assert failed is not None
    assert failed.name == "setup"
    assert failed.error is not None
    assert failed.error["code"] == "configuration"


# ------------------------------------------------------------ CA bundles


@pytest.mark.realservers
def test_ca_bundles_cover_every_hop_server_own_else_installation(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_peers: PeerFactory
) -> None:
    """https peers signed by a private CA: the server's ``--ca-bundle``, else
    ``TETHER_CA_BUNDLE``, is trusted for discovery, the AS endpoints and the
    authorization redirects of ``connect --follow-redirects`` and of the probe."""
    peers = tmp_peers.peers(tls=True)
    assert peers.ca_file is not None
    add = ["servers", "add"]
    tail = [peers.url, "--auth", "oauth", "--allow-network", "127.0.0.0/8"]

    added = runner.invoke(app, [*add, "own", *tail, "--ca-bundle", peers.ca_file])
    assert added.exit_code == 0, added.output
    own = runner.invoke(app, ["connect", "own", "--follow-redirects"])
    assert own.exit_code == 0, own.output

    assert runner.invoke(app, [*add, "bare", *tail]).exit_code == 0
    untrusted = runner.invoke(app, ["connect", "bare", "--follow-redirects"])
    assert untrusted.exit_code != 0
    assert "certificate verification failed" in untrusted.output
    refused_probe = runner.invoke(
        app, ["probe", peers.url, "--follow-redirects", "--allow-network", "127.0.0.1"]
    )
    assert refused_probe.exit_code != 0
    assert "certificate verification failed" in refused_probe.output

    monkeypatch.setenv("TETHER_CA_BUNDLE", peers.ca_file)
    trusted = runner.invoke(app, ["connect", "bare", "--follow-redirects"])
    assert trusted.exit_code == 0, trusted.output
    monkeypatch.setenv("TETHER_ALLOW_NETWORKS", '["127.0.0.1"]')
    probed = runner.invoke(app, ["probe", peers.url, "--follow-redirects"])
    assert probed.exit_code == 0, probed.output
    assert "[ok] token" in probed.output


def test_a_bad_installation_ca_bundle_fails_at_startup(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TETHER_CA_BUNDLE", str(tmp_path / "missing.pem"))
    result = runner.invoke(app, ["servers", "list"])
    assert result.exit_code != 0
    assert "cannot load the CA bundle" in result.output
    assert "[configuration]" in result.output
    probed = runner.invoke(app, ["probe", "https://mcp.example.com/mcp"])
    assert "[FAILED] setup" in probed.output
