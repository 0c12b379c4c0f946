"""The ``tether demo`` command's body (issue 10 item 10).

Interactive: start the stack, print the admin URL and the sign-ins, and wait for Ctrl-C
(or SIGTERM), then stop the three servers and delete the demo's folder. ``headless``:
run :func:`tether.demo.walkthrough.walk` instead of waiting, then stop the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

from tether.demo.stack import (
    DEMO_PASSWORD,
    DEMO_USER,
    DemoStack,
    find_node,
    start_stack,
)
from tether.demo.walkthrough import walk

__all__ = ["banner", "run_demo"]


def banner(stack: DemoStack, folder: Path) -> str:
    """What a newcomer needs to connect, browse tools and call one."""
    return "\n".join(
        [
            "Tether demo is running on 127.0.0.1:",
            f"  admin pages       {stack.admin_url}",
            f"  admin API key     {stack.admin_key}   (sign in with it; made for this demo)",
            f"  MCP server 'demo' {stack.mcp_url}   (tools: add, echo, whoami)",
            f"  its OAuth server  {stack.issuer}   (user {DEMO_USER}, password {DEMO_PASSWORD})",
            f"  demo data         {folder}   (SQLite database, key file, logs)",
            "",
            "Open the admin pages, sign in with the key, open 'demo' and press Connect;",
            f"sign in as {DEMO_USER} and Allow; then Browse tools and call 'add'.",
            "Metrics: "
            + stack.base_url
            + "/metrics   Jobs: "
            + stack.base_url
            + "/admin/jobs",
        ]
    )


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def run_demo(
    *,
    headless: bool,
    say: Callable[[str], None],
    port: int = 0,
    keep: bool = False,
) -> None:
    """Run the demo until Ctrl-C, or the scripted walkthrough with ``headless``.

    Raises:
        ConfigurationError: Node or oidc-provider is missing (names the command to run).
        InvalidResponse: A walkthrough step failed (names the step).
        NetworkError: A server did not start.
    """
    # the demo's own output is the walkthrough; servers' logs say only what went wrong
    logging.basicConfig(level=logging.WARNING, format="warning: %(name)s: %(message)s")
    node = find_node()  # before anything starts: a missing install is one clear line
    folder = Path(tempfile.mkdtemp(prefix="tether-demo-"))
    try:
        async with start_stack(folder, port=port, node=node) as stack:
            say(banner(stack, folder))
            if headless:
                say("")
                say("Headless walkthrough (what you would click):")
                await walk(stack, say)
                say(
                    "demo finished: signed in, connected through OAuth, listed and "
                    "called tools, disconnected"
                )
            else:
                say("\nPress Ctrl-C to stop; the demo's data is deleted then.")
                await _until_stopped()
                say("stopping…")
    finally:
        if keep:
            say(f"demo data kept in {folder}")
        else:
            with contextlib.suppress(OSError):
                shutil.rmtree(folder)
