"""``tether tools`` and ``tether toolsets``: list and call tools, manage toolsets."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tether.cli.render import emit_json, terminal_text
from tether.errors import UsageError
from tether.hub.tether import Tether
from tether.mcp.render import render_toolset

__all__ = ["tools_app", "toolsets_app"]

tools_app = typer.Typer(help="List and call a server's tools.", no_args_is_help=True)
toolsets_app = typer.Typer(
    help="Toolsets: what an agent may use.", no_args_is_help=True
)

MAX_OUTPUT = 1_000_000
"""Longest tool output printed, in characters (escape sequences removed first)."""

UserOpt = Annotated[str | None, typer.Option("--user", help="Act for this end user.")]
ArgsOpt = Annotated[str, typer.Option("--args", help="Tool arguments as JSON.")]


def _with(action: Any) -> None:
    from tether.cli.main import with_tether

    with_tether(action)


def _arguments(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--args is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError("--args must be a JSON object")
    return value


@tools_app.command("list")
def tools_list(
    server: str,
    user: UserOpt = None,
    refresh: bool = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List a server's tools (cached for an hour; --refresh fetches now)."""

    async def action(tether: Tether) -> None:
        tools = await tether.list_tools(server, user=user, refresh=refresh)
        if as_json:
            emit_json(tools)
            return
        for tool in tools:
            name = terminal_text(tool.get("name"), limit=200)
            typer.echo(
                f"{name}: {terminal_text(tool.get('description') or '', limit=80)}"
            )

    _with(action)


@tools_app.command("call")
def tools_call(
    server: str, tool: str, args: ArgsOpt = "{}", user: UserOpt = None
) -> None:
    """Call one tool and print what the model would see."""

    async def action(tether: Tether) -> None:
        result = await tether.call_tool(server, tool, _arguments(args), user=user)
        typer.echo(terminal_text(result.text, limit=MAX_OUTPUT, multiline=True))
        if result.is_error:
            raise typer.Exit(1)

    _with(action)


@toolsets_app.command("create")
def toolsets_create(
    name: str,
    server: Annotated[
        list[str], typer.Option(help="SERVER or SERVER:tool1,tool2 (repeatable).")
    ],
) -> None:
    """Create a toolset from servers and optional tool allow-lists."""
    entries: list[dict[str, Any]] = []
    for item in server:
        ref, sep, names = item.partition(":")
        entries.append({"server": ref, "tools": names.split(",") if sep else None})

    async def action(tether: Tether) -> None:
        toolset = await tether.toolsets.create(name, entries, actor="cli")
        typer.echo(f"created toolset {toolset.name} ({toolset.id})")

    _with(action)


@toolsets_app.command("show")
def toolsets_show(
    name: str,
    user: UserOpt = None,
    provider: Annotated[
        str, typer.Option(help="openai_chat, openai_responses or anthropic.")
    ] = "openai_chat",
) -> None:
    """Print the toolset's tools as the provider's tool definitions."""

    async def action(tether: Tether) -> None:
        view = await tether.toolset(name, user=user)
        rendered = render_toolset(view.tools, provider)  # type: ignore[arg-type]
        emit_json(
            {
                "tools": rendered.tools,
                "excluded": dict(view.excluded),
                "excluded_tools": [item.to_dict() for item in rendered.excluded],
            }
        )

    _with(action)


@toolsets_app.command("call")
def toolsets_call(
    name: str, tool: str, args: ArgsOpt = "{}", user: UserOpt = None
) -> None:
    """Call a toolset's tool by its exposed name."""

    async def action(tether: Tether) -> None:
        result = await tether.call(name, tool, _arguments(args), user=user)
        typer.echo(terminal_text(result.text, limit=MAX_OUTPUT, multiline=True))
        if result.is_error:
            raise typer.Exit(1)

    _with(action)


@toolsets_app.command("export")
def toolsets_export(name: str) -> None:
    """Print a toolset as JSON referring to servers by name."""

    async def action(tether: Tether) -> None:
        emit_json(await tether.toolsets.export(name))

    _with(action)
