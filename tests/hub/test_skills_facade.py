"""The facade's Skills methods (SEP-2640) over a real loopback HTTP server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from hub.conftest import MakeTether
from peers.skill_server import SkillServer
from tether.errors import SkillVerificationFailed

LOOPBACK = ["127.0.0.0/8"]


@pytest.fixture
def skills() -> Iterator[tuple[SkillServer, str]]:
    app = SkillServer()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30  # a hang guard only
    while not server.started:
        assert thread.is_alive(), "server died"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield app, f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    thread.join(5)


async def test_list_then_load_verified_skills(
    make_tether: MakeTether, skills: tuple[SkillServer, str]
) -> None:
    app, url = skills
    tether = await make_tether()
    await tether.servers.create(
        {"name": "docs", "url": url, "allow_networks": LOOPBACK}, actor="admin"
    )
    listed = await tether.list_skills("docs")
    assert [s.name for s in listed] == ["alpha", "beta"]
    assert app.reads == []  # listing never prefetches a file
    skill = await tether.read_skill("docs", "alpha")
    assert "Body of alpha." in skill.text
    app.tampered.add("skill://alpha/ref/NOTES.md")
    with pytest.raises(SkillVerificationFailed) as caught:
        await tether.read_skill_file("docs", "alpha", "skill://alpha/ref/NOTES.md")
    assert caught.value.server == "docs"
    assert "alpha" in caught.value.message
