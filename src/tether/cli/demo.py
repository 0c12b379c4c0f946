"""``tether demo`` (issue 10 item 10): try Tether end to end on one machine."""

from __future__ import annotations

from typing import Annotated

import typer

from tether.errors import ConfigurationError

__all__ = ["demo", "register"]


def demo(
    headless: Annotated[
        bool,
        typer.Option(help="Run the walkthrough scripted over HTTP and exit (for CI)."),
    ] = False,
    port: Annotated[
        int, typer.Option(help="Port of the web service (default: any free port).")
    ] = 0,
    keep: Annotated[
        bool, typer.Option(help="Keep the demo's SQLite database and logs.")
    ] = False,
) -> None:
    """Start Tether, a demo MCP server and its OAuth server with a real sign-in page."""
    from tether.cli.main import run

    try:
        from tether.demo.run import run_demo
    except ImportError as exc:  # the web extra (FastAPI, uvicorn, Jinja2) is missing
        raise ConfigurationError(
            f"tether demo needs the web service's packages ({exc.name} is missing)",
            hint="pip install -c constraints.txt -e '.[web]' (scripts/demo.sh does it)",
        ) from None

    def say(line: str) -> None:
        typer.echo(line)

    run(run_demo(headless=headless, say=say, port=port, keep=keep))


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the ``tether`` command."""
    app.command("demo")(demo)
