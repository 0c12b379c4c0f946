"""The ``tether`` command (design.md §4; style.md example 14).

Each command builds :class:`~tether.config.Settings`, opens a ``Tether`` and calls one hub
function. One handler turns a :class:`~tether.errors.TetherError` into a one-line message
and the exit code :func:`tether.errors.exit_code` maps (``--debug`` shows the traceback).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import typer

from tether.cli import render
from tether.cli.args import param_pairs
from tether.cli.callback import wait_for_callback
from tether.cli.runtime import key_ring, open_tether
from tether.config import Settings
from tether.errors import TetherError, UsageError, exit_code
from tether.hub.tether import Tether

__all__ = ["app", "main"]

T = TypeVar("T")

app = typer.Typer(
    name="tether",
    help="Connect a multi-user AI application to remote MCP servers.",
    no_args_is_help=True,
    add_completion=False,
)
servers_app = typer.Typer(help="Register and manage MCP servers.", no_args_is_help=True)
credentials_app = typer.Typer(help="Named secrets (write-only).", no_args_is_help=True)
keys_app = typer.Typer(
    help="Encryption keys for secrets at rest.", no_args_is_help=True
)
app.add_typer(servers_app, name="servers")
app.add_typer(credentials_app, name="credentials")
app.add_typer(keys_app, name="keys")


def _add_tool_commands() -> None:
    from tether.cli.tools import tools_app, toolsets_app

    app.add_typer(tools_app, name="tools")
    app.add_typer(toolsets_app, name="toolsets")


_state: dict[str, bool] = {"debug": False}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
UserOpt = Annotated[
    str | None, typer.Option("--user", help="Act for this end user (per-user servers).")
]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    _state["debug"] = debug


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine, mapping Tether errors to a message and exit code."""
    try:
        return asyncio.run(coro)
    except TetherError as exc:
        if _state["debug"]:
            raise
        typer.echo(f"error: {render.terminal_text(exc)} [{exc.code}]", err=True)
        raise typer.Exit(exit_code(exc)) from None


def with_tether(action: Callable[[Tether], Awaitable[T]]) -> T:
    """Open a Tether from the environment's settings and run ``action`` with it."""

    async def body() -> T:
        async with open_tether(Settings()) as tether:
            return await action(tether)

    return run(body())


# ---------------------------------------------------------------------- servers


@servers_app.command("add")
def servers_add(
    name: str,
    url: str,
    auth: Annotated[str, typer.Option(help="none, header or oauth.")] = "none",
    description: str = "",
    timeout: Annotated[int, typer.Option(help="Seconds, 1-300.")] = 30,
    credential: Annotated[str | None, typer.Option(help="Header credential.")] = None,
    header_name: str | None = None,
    header_scheme: str | None = None,
    scopes: str | None = None,
    registration: Annotated[
        str, typer.Option(help="auto, metadata_document, dynamic or manual.")
    ] = "auto",
    client_id: str | None = None,
    client_secret_credential: str | None = None,
    token_auth_method: str | None = None,
    auth_param: Annotated[list[str], typer.Option(help="NAME=VALUE.")] = [],  # noqa: B006
    remove_auth_param: Annotated[list[str], typer.Option(help="Drop a default.")] = [],  # noqa: B006
    token_param: Annotated[list[str], typer.Option(help="NAME=VALUE.")] = [],  # noqa: B006
    remove_token_param: Annotated[list[str], typer.Option()] = [],  # noqa: B006
    require_refresh_token: bool = False,
    allow_missing_pkce_metadata: bool = False,
    per_user: bool = False,
    allow_network: Annotated[list[str], typer.Option(help="Host or CIDR.")] = [],  # noqa: B006
    ca_bundle: str | None = None,
    grant: Annotated[
        str,
        typer.Option(
            help="authorization_code, client_credentials, jwt_bearer or enterprise."
        ),
    ] = "authorization_code",
    private_key_credential: Annotated[
        str | None, typer.Option(help="Credential with a PEM key (private_key_jwt).")
    ] = None,
    signing_algorithm: Annotated[
        str | None, typer.Option(help="ES256, ES384, RS256 or PS256.")
    ] = None,
    idp_token_endpoint: Annotated[
        str | None, typer.Option(help="Enterprise IdP token endpoint.")
    ] = None,
    idp_client_id: Annotated[
        str | None, typer.Option(help="Client id at the IdP.")
    ] = None,
    idp_client_secret_credential: Annotated[
        str | None, typer.Option(help="Credential with the IdP client secret.")
    ] = None,
    idp_id_token_credential: Annotated[
        str | None, typer.Option(help="Credential with a static ID token.")
    ] = None,
    resource_match: Annotated[
        str, typer.Option(help="exact, or prefix for servers whose PRM names a parent.")
    ] = "exact",
    resource_expected: Annotated[
        str | None, typer.Option(help="The exact resource the server publishes.")
    ] = None,
    legacy_endpoints: Annotated[
        bool, typer.Option(help="2025-03-26 fallback: /authorize, /token, /register.")
    ] = False,
    dpop: Annotated[
        str, typer.Option(help="Sender-constrained tokens: never, auto or always.")
    ] = "never",
    assertion_credential: Annotated[
        str | None,
        typer.Option(help="Credential with the JWT for the jwt_bearer grant."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register an MCP server."""

    async def action(tether: Tether) -> None:
        cred = (
            (await tether.credentials.get_record(credential)).id if credential else None
        )
        secret = (
            (await tether.credentials.get_record(client_secret_credential)).id
            if client_secret_credential
            else None
        )
        refs = {}
        for key, ref in (
            ("private_key_credential_id", private_key_credential),
            ("idp_client_secret_credential_id", idp_client_secret_credential),
            ("idp_id_token_credential_id", idp_id_token_credential),
            ("assertion_credential_id", assertion_credential),
        ):
            refs[key] = (await tether.credentials.get_record(ref)).id if ref else None
        spec = {
            "name": name,
            "url": url,
            "description": description,
            "timeout_seconds": timeout,
            "auth_mode": auth,
            "credential_id": cred,
            "header_name": header_name,
            "header_scheme": header_scheme,
            "allow_networks": allow_network,
            "ca_bundle": ca_bundle,
            "oauth": {
                "registration": registration,
                "client_id": client_id,
                "client_secret_credential_id": secret,
                "token_auth_method": token_auth_method,
                "scopes": scopes,
                "authorization_params": param_pairs(auth_param, remove_auth_param),
                "token_params": param_pairs(token_param, remove_token_param),
                "require_refresh_token": require_refresh_token,
                "allow_missing_pkce_metadata": allow_missing_pkce_metadata,
                "per_user": per_user,
                "grant": grant,
                "signing_algorithm": signing_algorithm,
                "idp_token_endpoint": idp_token_endpoint,
                "idp_client_id": idp_client_id,
                "resource_match": resource_match,
                "resource_expected": resource_expected,
                "legacy_endpoints": legacy_endpoints,
                "dpop": dpop,
                **refs,
            },
        }
        server = await tether.servers.create(spec, actor="cli")
        render.server(server, as_json=as_json)

    with_tether(action)


@servers_app.command("list")
def servers_list(as_json: JsonOpt = False) -> None:
    """List registered servers."""

    async def action(tether: Tether) -> None:
        render.servers(await tether.servers.list(), as_json=as_json)

    with_tether(action)


@servers_app.command("show")
def servers_show(name: str, as_json: JsonOpt = False) -> None:
    """Show one server's settings (never a secret)."""

    async def action(tether: Tether) -> None:
        render.server(await tether.servers.get(name), as_json=as_json)

    with_tether(action)


@servers_app.command("set")
def servers_set(
    name: str,
    field: Annotated[
        list[str],
        typer.Argument(
            help="FIELD=JSON, e.g. timeout_seconds=60 oauth.scopes='\"a b\"'"
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Change server fields; a change to URL, auth or OAuth client settings disconnects."""

    async def action(tether: Tether) -> None:
        changes: dict[str, Any] = {}
        for item in field:
            key, sep, raw = item.partition("=")
            if not sep:
                raise UsageError(f"'{item}' is not FIELD=VALUE")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            if key.startswith("oauth."):
                changes.setdefault("oauth", {})[key.removeprefix("oauth.")] = value
            else:
                changes[key] = value
        render.server(
            await tether.servers.update(name, changes, actor="cli"), as_json=as_json
        )

    with_tether(action)


@servers_app.command("remove")
def servers_remove(name: str) -> None:
    """Revoke the server's grants and delete it."""

    async def action(tether: Tether) -> None:
        await tether.delete_server(name, actor="cli")
        typer.echo(f"removed {name}")

    with_tether(action)


# ---------------------------------------------------------------------- credentials


@credentials_app.command("add")
def credentials_add(
    name: str,
    value: Annotated[
        str | None, typer.Option(help="The secret; read from stdin when omitted.")
    ] = None,
    description: str = "",
) -> None:
    """Store a named secret (encrypted at rest; never shown again)."""
    secret = value if value is not None else sys.stdin.readline().rstrip("\n")

    async def action(tether: Tether) -> None:
        info = await tether.credentials.create(
            name, secret, description=description, actor="cli"
        )
        typer.echo(f"stored credential {info.name} ({info.id})")

    with_tether(action)


@credentials_app.command("list")
def credentials_list(as_json: JsonOpt = False) -> None:
    """List credentials (names only)."""

    async def action(tether: Tether) -> None:
        render.credentials(await tether.credentials.list(), as_json=as_json)

    with_tether(action)


@credentials_app.command("remove")
def credentials_remove(name: str) -> None:
    """Delete a credential no server uses."""

    async def action(tether: Tether) -> None:
        await tether.credentials.delete(name, actor="cli")
        typer.echo(f"removed {name}")

    with_tether(action)


# ---------------------------------------------------------------------- connections


@app.command()
def connect(
    name: str,
    user: UserOpt = None,
    follow_redirects: Annotated[
        bool,
        typer.Option(help="Complete headlessly against an AS that approves at once."),
    ] = False,
    wait: Annotated[int, typer.Option(help="Seconds to wait for the callback.")] = 600,
    id_token_stdin: Annotated[
        bool,
        typer.Option(help="Enterprise grant: read the user's ID token from stdin."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Connect a server (prints the URL and waits, or fetches a machine token).

    Authorization-code servers print the URL and wait for the callback;
    client_credentials and enterprise servers get a token directly.
    """
    id_token = sys.stdin.readline().strip() if id_token_stdin else None

    async def action(tether: Tether) -> None:
        oauth = (await tether.servers.get(name)).oauth
        grant = oauth.grant
        # A shared connection is made by the operator at this terminal (the audit
        # actor); a per-user one needs --user, which the hub checks.
        who = user if (user or oauth.per_user) else "cli"
        if grant in ("client_credentials", "jwt_bearer"):
            info = await tether.connect_machine(name, user=who)
            return render.connection(info, as_json=as_json)
        if grant == "enterprise":
            info = await tether.connect_enterprise(name, user=who, id_token=id_token)
            return render.connection(info, as_json=as_json)
        started = await tether.connect(name, user=who)
        redirect_uri = tether.ctx.config.redirect_uri
        if follow_redirects:
            from tether.net.browser import follow_authorization

            params = await follow_authorization(
                started.authorization_url, redirect_uri, tether.fetcher.policy
            )
        else:
            typer.echo(
                f"Open this URL to authorize:\n\n  {started.authorization_url}\n",
                err=True,
            )
            host = urlsplit(redirect_uri).hostname or ""
            if host not in ("127.0.0.1", "localhost", "::1"):
                typer.echo(
                    "The callback goes to the web service; check `tether status`.",
                    err=True,
                )
                return
            params = await wait_for_callback(redirect_uri, seconds=wait)
        render.connection(await tether.complete(params, user=who), as_json=as_json)

    with_tether(action)


@app.command()
def status(name: str, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """Show a server's connection (never a token)."""

    async def action(tether: Tether) -> None:
        render.connection(await tether.connection(name, user=user), as_json=as_json)

    with_tether(action)


@app.command()
def refresh(name: str, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """Refresh a connection's tokens now."""

    async def action(tether: Tether) -> None:
        render.connection(await tether.refresh(name, user=user), as_json=as_json)

    with_tether(action)


@app.command()
def disconnect(name: str, user: UserOpt = None) -> None:
    """Revoke the connection's tokens at the AS and forget them."""

    async def action(tether: Tether) -> None:
        outcomes = await tether.disconnect(name, user=user, actor="cli")
        typer.echo("disconnected" + "".join(f"\n  {line}" for line in outcomes))

    with_tether(action)


@app.command()
def audit(
    name: Annotated[str | None, typer.Argument()] = None,
    limit: int = 50,
    as_json: JsonOpt = False,
) -> None:
    """Show recent audit events (secrets masked)."""

    async def action(tether: Tether) -> None:
        render.audit(await tether.audit(server_ref=name, limit=limit), as_json=as_json)

    with_tether(action)


# ---------------------------------------------------------------------- operations


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from tether.store.migrate import migrate as run_migrate

    settings = Settings()
    run(run_migrate(settings.resolved_database_url()))
    typer.echo("database is up to date")


@keys_app.command("add")
def keys_add() -> None:
    """Put a new key in front of the key file's keys (then run `tether keys rotate`)."""
    from tether.store.crypto import add_key_to_file

    settings = Settings()
    if settings.encryption_keys is not None:
        typer.echo(
            "keys come from TETHER_ENCRYPTION_KEYS: prepend a new key there", err=True
        )
        raise typer.Exit(2)
    ring = add_key_to_file(settings.resolved_key_file())
    typer.echo(f"new primary key {ring.primary_key_id}")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored secret with the newest key."""
    from tether.store.rotate import rotate_keys

    settings = Settings()
    report = run(rotate_keys(settings.resolved_database_url(), key_ring(settings)))
    typer.echo(f"re-encrypted {report.total} secrets with key {report.key_id}")


def main() -> None:
    """Entry point of the ``tether`` command."""
    app()


_add_tool_commands()


from tether.cli.probe import probe  # noqa: E402

app.command("probe")(probe)
