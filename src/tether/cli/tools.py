"""``tether tools`` and ``tether toolsets``: list and call tools, manage toolsets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from tether.cli.render import emit_json, terminal_text
from tether.errors import UsageError
from tether.hub.tether import Tether
from tether.mcp.render import render_toolset
from tether.mcp.results import ToolResult

__all__ = ["tools_app", "toolsets_app"]

tools_app = typer.Typer(help="List and call a server's tools.", no_args_is_help=True)
toolsets_app = typer.Typer(
    help="Toolsets: what an agent may use.", no_args_is_help=True
)

T = TypeVar("T")

MAX_OUTPUT = 1_000_000
"""Longest tool output printed, in characters (escape sequences removed first)."""

UserOpt = Annotated[str | None, typer.Option("--user", help="Act for this end user.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
ArgsOpt = Annotated[str, typer.Option("--args", help="Tool arguments as JSON.")]


def _with(action: Any) -> None:
    from tether.cli.main import with_tether

    with_tether(action)


# A remote server's text reaches the terminal: no escape sequences (ANSI CSI, OSC), no
# other control characters; newlines and tabs stay.
_TERMINAL_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


async def _show_progress(
    progress: float, total: float | None, message: str | None
) -> None:
    """A tool's ``notifications/progress`` as lines on stderr (stdout stays the result)."""
    done = f"{progress:g}/{total:g}" if total else f"{progress:g}"
    note = f" {_TERMINAL_UNSAFE.sub('', message)[:200]}" if message else ""
    typer.echo(f"progress: {done}{note}", err=True)


#: Seconds between "still waiting" lines while a tool call runs (on a terminal).
WAIT_NOTE_EVERY = 5.0


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


async def _waiting(
    label: str,
    call: Awaitable[T],
    *,
    every: float = WAIT_NOTE_EVERY,
    note: Callable[[str], None] | None = None,
) -> T:
    """Await ``call``; on a terminal, say every ``every`` seconds that it still runs.

    A long tool call without progress notifications is otherwise silent. Lines go to
    stderr (stdout stays the result); nothing is printed when stderr is not a terminal.
    """
    if note is None:
        if not _stderr_is_terminal():
            return await call
        note = _note

    async def tick() -> None:
        waited = 0.0
        while True:
            await asyncio.sleep(every)
            waited += every
            note(f"… still waiting for {label} ({waited:g} s)")

    ticker = asyncio.get_running_loop().create_task(tick())
    try:
        return await call
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


def _note(line: str) -> None:
    typer.echo(line, err=True)


def _result(result: ToolResult, *, as_json: bool) -> None:
    """A call's outcome; exit code 1 when the model would see an error."""
    if as_json:
        emit_json(
            {
                "text": result.text,
                "is_error": result.is_error,
                "error_code": result.error_code,
                "structured": result.structured,
            }
        )
    else:
        typer.echo(_TERMINAL_UNSAFE.sub("", result.text))
    if result.is_error:
        raise typer.Exit(1)


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
    server: str,
    tool: str,
    args: ArgsOpt = "{}",
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Call one tool and print what the model would see."""

    async def action(tether: Tether) -> None:
        arguments = _arguments(args)  # bad input first, before any lookup
        await tether.servers.get(server)  # a missing server is not a missing tool
        result = await _waiting(
            tool,
            tether.call_tool(
                server, tool, arguments, user=user, progress=_show_progress
            ),
        )
        _result(result, as_json=as_json)

    _with(action)


@toolsets_app.command("create")
def toolsets_create(
    name: str,
    server: Annotated[
        list[str], typer.Option(help="SERVER or SERVER:tool1,tool2 (repeatable).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Create a toolset from servers and optional tool allow-lists."""
    entries: list[dict[str, Any]] = []
    for item in server:
        ref, sep, names = item.partition(":")
        entries.append({"server": ref, "tools": names.split(",") if sep else None})

    async def action(tether: Tether) -> None:
        toolset = await tether.toolsets.create(name, entries, actor="cli")
        if as_json:
            emit_json(await tether.toolsets.export(toolset.id))
        else:
            typer.echo(f"created toolset {toolset.name} ({toolset.id})")

    _with(action)


@toolsets_app.command("show")
def toolsets_show(
    name: str,
    user: UserOpt = None,
    provider: Annotated[
        str, typer.Option(help="openai_chat, openai_responses or anthropic.")
    ] = "openai_chat",
    _as_json: Annotated[
        bool, typer.Option("--json", help="Accepted for uniformity: always JSON.")
    ] = True,
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
    name: str,
    tool: str,
    args: ArgsOpt = "{}",
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Call a toolset's tool by its exposed name."""

    async def action(tether: Tether) -> None:
        arguments = _arguments(args)  # bad input first, before any lookup
        await tether.toolsets.get(name)  # a missing toolset is not a missing tool
        result = await _waiting(
            tool,
            tether.call(name, tool, arguments, user=user, progress=_show_progress),
        )
        _result(result, as_json=as_json)

    _with(action)


@toolsets_app.command("export")
def toolsets_export(
    name: str,
    _as_json: Annotated[
        bool, typer.Option("--json", help="Accepted for uniformity: always JSON.")
    ] = True,
) -> None:
    """Print a toolset as JSON referring to servers by name."""

    async def action(tether: Tether) -> None:
        emit_json(await tether.toolsets.export(name))

    _with(action)


@toolsets_app.command("list")
def toolsets_list(as_json: JsonOpt = False) -> None:
    """List toolsets with their servers (by name) and tool allow-lists."""

    async def action(tether: Tether) -> None:
        exported = [
            await tether.toolsets.export(toolset.id)
            for toolset in await tether.stores.toolsets.list()
        ]
        if as_json:
            emit_json(exported)
            return
        if not exported:
            typer.echo("no toolsets; create one with `tether toolsets create`")
        for item in exported:
            servers = ", ".join(
                entry["server"]
                + (f" ({', '.join(entry['tools'])})" if entry["tools"] else "")
                for entry in item["servers"]
            )
            typer.echo(f"{item['name']:24} {servers or '-'}")

    _with(action)


@toolsets_app.command("remove")
def toolsets_remove(name: str, as_json: JsonOpt = False) -> None:
    """Delete a toolset (its servers and connections are untouched)."""

    async def action(tether: Tether) -> None:
        await tether.toolsets.delete(name, actor="cli")
        if as_json:
            emit_json({"removed": name})
        else:
            typer.echo(f"removed toolset {name}")

    _with(action)


@toolsets_app.command("import")
def toolsets_import(
    source: Annotated[
        str, typer.Argument(help="A file from `tether toolsets export`, or - (stdin).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Create a toolset from `tether toolsets export` output."""
    data = _exported(source)

    async def action(tether: Tether) -> None:
        toolset = await tether.toolsets.import_(data, actor="cli")
        if as_json:
            emit_json(await tether.toolsets.export(toolset.id))
        else:
            typer.echo(f"imported toolset {toolset.name} ({toolset.id})")

    _with(action)


def _exported(source: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {source}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source} is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{source} must hold a JSON object (a toolset export)")
    return data
