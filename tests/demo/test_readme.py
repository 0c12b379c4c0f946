"""The README's first command, ``bash scripts/demo.sh``, still works (issue 10 item 10).

The script is run as the README says; with the checkout's ``.venv`` already installed
(as in CI, or after a first run) it only checks the install and runs the walkthrough.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from peers.fixture import NodeEnv, peers_home

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD = 900.0  # seconds: a first run may pip-install; a hang guard only


def test_the_readme_starts_with_the_two_set_up_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[0] == "```bash"
    assert lines[1].startswith("bash scripts/demo.sh ")
    assert lines[2].startswith(".venv/bin/pytest -q ")
    assert lines[3] == "```"
    script = (ROOT / "scripts" / "demo.sh").read_text()
    assert ".venv/bin/tether demo --headless" in script


@pytest.mark.realservers
async def test_bash_scripts_demo_sh_runs_the_headless_demo(
    peers_node: NodeEnv,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["TETHER_PEERS_HOME"] = str(peers_home())
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "scripts/demo.sh",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), HANG_GUARD)
    text = out.decode()
    assert proc.returncode == 0, text + err.decode()
    assert "[8/8] pressed Disconnect" in text
    assert "demo finished" in text
    assert "To try it yourself in a browser: .venv/bin/tether demo" in text
