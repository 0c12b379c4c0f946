"""``tether serve`` and ``tether apikeys`` (design-notes D4; S14)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tether.cli.render import emit_json
from tether.config import Settings

__all__ = ["apikeys_app", "register", "serve"]

apikeys_app = typer.Typer(help="API keys of the web service.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def _key_view(record: Any) -> dict[str, Any]:
    """An API key's record without its hash."""
    return {
        "id": record.id,
        "name": record.name,
        "role": record.role,
        "app": record.app,
        "created_at": record.created_at,
        "revoked_at": record.revoked_at,
        "state": "revoked" if record.revoked_at else "active",
    }


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8470,
    workers: Annotated[
        int, typer.Option(help="Worker processes (use PostgreSQL for more than 1).")
    ] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning…")] = "info",
) -> None:
    """Run the web service (JSON API, admin pages, OAuth callback)."""
    import uvicorn

    from tether.cli.main import run
    from tether.store.migrate import migrate
    from tether.web.config import WebConfig
    from tether.web.logs import configure_logging

    async def checked() -> (
        WebConfig
    ):  # through run(): an error is one line, no traceback
        return WebConfig.from_settings(Settings())

    web = run(checked())  # fails fast on a bad public URL
    if workers > 1 and web.database_url.startswith("sqlite"):
        typer.echo(
            "error: --workers > 1 needs PostgreSQL (TETHER_DATABASE_URL)", err=True
        )
        raise typer.Exit(2)
    if not web.database_url.startswith("memory"):
        run(migrate(web.database_url))  # once, before the workers start
    configure_logging(log_level)
    uvicorn.run(
        "tether.web.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        log_level=log_level,
        proxy_headers=False,
    )


@apikeys_app.command("create")
def apikeys_create(
    name: str,
    role: Annotated[str, typer.Option(help="admin or app.")] = "app",
    app: Annotated[
        str | None, typer.Option(help="App namespace of its users (default: NAME).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; it is printed once and never stored in clear."""
    from tether.cli.main import with_tether
    from tether.hub.tether import Tether
    from tether.web.security import issue_key

    if role not in ("admin", "app"):
        raise typer.BadParameter("role must be admin or app", param_hint="--role")

    async def action(tether: Tether) -> None:
        record, key = await issue_key(
            tether, name, "admin" if role == "admin" else "app", app=app
        )
        if as_json:  # the key is shown this once, as in the text form
            emit_json({**_key_view(record), "key": key})
            return
        typer.echo(f"created {record.role} key {record.name} ({record.id})", err=True)
        typer.echo(key)

    with_tether(action)


@apikeys_app.command("list")
def apikeys_list(as_json: JsonOpt = False) -> None:
    """List API keys (names, roles; never the keys)."""
    from tether.cli.main import with_tether
    from tether.hub.tether import Tether

    async def action(tether: Tether) -> None:
        keys = await tether.stores.api_keys.list()
        if as_json:
            emit_json([_key_view(k) for k in keys])
            return
        for k in keys:
            state = "revoked" if k.revoked_at else "active"
            typer.echo(f"{k.id}  {k.name}  {k.role}  {k.app or '-'}  {state}")

    with_tether(action)


@apikeys_app.command("revoke")
def apikeys_revoke(ref: str, as_json: JsonOpt = False) -> None:
    """Revoke a key by id or name; it stops working at once."""
    from tether.cli.main import with_tether
    from tether.errors import NotFound
    from tether.hub.tether import Tether

    async def action(tether: Tether) -> None:
        if await tether.stores.api_keys.revoke(ref) is None:
            raise NotFound(f"no API key '{ref}'")
        if as_json:
            emit_json({"revoked": ref})
            return
        typer.echo(f"revoked {ref}")

    with_tether(action)


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``apikeys`` to the ``tether`` command."""
    app.command("serve")(serve)
    app.add_typer(apikeys_app, name="apikeys")
