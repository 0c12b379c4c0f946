"""``tether demo`` (issue 10 item 10): the newcomer's first command, end to end.

The command runs as a real process (``.venv/bin/tether``) with the real oidc-provider
from ``.ci/install-peers.sh``; the failure paths run the stack in-process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import socket
import sys
from pathlib import Path

import httpx2
import pytest

from peers.fixture import NodeEnv, peers_home
from tether.demo.stack import NodeSetup, find_node, start_stack
from tether.demo.walkthrough import forms_of, walk
from tether.errors import ConfigurationError, InvalidResponse, NetworkError

TETHER = str(Path(sys.executable).with_name("tether"))
HANG_GUARD = 180.0  # seconds; a hang guard only, never a speed bound


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["TETHER_PEERS_HOME"] = str(peers_home())
    env.update(extra)
    return env


async def _run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        TETHER,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), HANG_GUARD)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.realservers
async def test_headless_demo_signs_in_connects_calls_and_disconnects(
    peers_node: NodeEnv,
) -> None:
    code, out, err = await _run("demo", "--headless", env=_env())
    assert code == 0, out + err
    assert "admin pages       http://127.0.0.1:" in out
    assert "user demo, password demo-password" in out
    for step in range(1, 9):
        assert f"[{step}/8]" in out, out
    assert "status Connected" in out
    assert "tools: add, echo, whoami" in out
    assert "add(a=2, b=40) from the tools browser: 42" in out
    assert "refresh, tools, health" in out
    assert "pressed Disconnect: Disconnected." in out
    assert "demo finished" in out
    assert "Traceback" not in err


@pytest.mark.realservers
async def test_interactive_demo_serves_until_ctrl_c_then_stops_everything(
    peers_node: NodeEnv,
) -> None:
    proc = await asyncio.create_subprocess_exec(
        TETHER,
        "demo",
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    banner: list[str] = []
    while not banner or "Press Ctrl-C" not in banner[-1]:
        line = await asyncio.wait_for(proc.stdout.readline(), HANG_GUARD)
        assert line, "the demo ended before it was ready"
        banner.append(line.decode())
    text = "".join(banner)

    def shown(label: str) -> str:
        found = re.search(rf"^  {label} +(\S+)", text, re.M)
        assert found, text
        return found.group(1)

    admin, issuer = shown("admin pages"), shown("its OAuth server")
    key, folder = shown("admin API key"), Path(shown("demo data"))
    async with httpx2.AsyncClient(timeout=30.0) as client:
        page = await client.get(admin + "login")
        assert page.status_code == 200
        csrf = forms_of(page.text)[0].fields["csrf"]
        signed_in = await client.post(
            admin + "login", data={"csrf": csrf, "api_key": key}
        )
        assert signed_in.status_code == 303  # the printed key signs in
        assert (await client.get(issuer + "/healthz")).status_code == 200
    assert await asyncio.to_thread(folder.is_dir)

    proc.send_signal(signal.SIGINT)
    rest, err = await asyncio.wait_for(proc.communicate(), HANG_GUARD)
    assert proc.returncode == 0, err.decode()
    assert "stopping" in rest.decode()
    assert "Traceback" not in err.decode()
    assert not await asyncio.to_thread(folder.exists)  # the demo's data is deleted
    async with httpx2.AsyncClient(timeout=5.0) as client:
        for url in (admin, issuer + "/healthz"):
            with pytest.raises(httpx2.ConnectError):
                await client.get(url)


async def test_missing_node_is_one_line_naming_the_command(tmp_path: Path) -> None:
    code, out, err = await _run(
        "demo", "--headless", env=_env(TETHER_PEERS_HOME=str(tmp_path))
    )
    assert code == 3  # configuration
    assert err.count("\n") == 1, err
    assert err.startswith("error: tether demo needs Node 22 and oidc-provider")
    assert "bash scripts/demo.sh" in err
    assert "Traceback" not in err
    assert out == ""


def test_find_node_refuses_a_node_without_oidc_provider(tmp_path: Path) -> None:
    (tmp_path / "env").write_text(f"NODE_BIN={sys.executable}\nNODE_DIR={tmp_path}\n")
    with pytest.raises(ConfigurationError, match="oidc-provider, not found") as caught:
        find_node({"TETHER_PEERS_HOME": str(tmp_path)})
    assert caught.value.hint is not None
    assert "install-peers.sh" in caught.value.hint


def test_find_node_reads_what_install_peers_recorded(peers_node: NodeEnv) -> None:
    found = find_node({"TETHER_PEERS_HOME": str(peers_home())})
    assert found == NodeSetup(peers_node.node_bin, peers_node.node_dir)


async def test_an_authorization_server_that_exits_is_a_clear_error(
    tmp_path: Path,
) -> None:
    broken = NodeSetup(Path("/bin/false"), tmp_path)
    with pytest.raises(ConfigurationError, match=r"authorization server exited \(1\)"):
        async with start_stack(tmp_path / "demo", node=broken):
            pytest.fail("the stack started without its authorization server")


async def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        unused = NodeSetup(Path("/nonexistent"), tmp_path)
        with pytest.raises(NetworkError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with start_stack(tmp_path / "demo", port=port, node=unused):
                pytest.fail("the stack started on a taken port")


@pytest.mark.realservers
async def test_a_failing_walkthrough_step_is_named(
    peers_node: NodeEnv, tmp_path: Path
) -> None:
    node = NodeSetup(peers_node.node_bin, peers_node.node_dir)
    lines: list[str] = []
    async with start_stack(tmp_path, node=node) as stack:
        wrong = dataclasses.replace(stack, admin_key="tk_0000_not_the_demo_key")
        with pytest.raises(InvalidResponse) as caught:
            await walk(wrong, lines.append)
    assert caught.value.step == "sign in"
    assert "answered 401" in caught.value.message
    assert lines == []  # nothing claimed before the failing step


def test_without_the_web_extra_the_command_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from tether.cli.main import app

    for name in ("tether.demo.run", "tether.demo.stack", "tether.demo.walkthrough"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    result = CliRunner().invoke(app, ["demo", "--headless"])
    assert result.exit_code == 3
    assert "uvicorn is missing" in result.output
    assert "'.[web]'" in result.output
    assert "Traceback" not in result.output
