"""The ``tether`` command (design-notes D4; S14).

Each command builds :class:`~tether.config.Settings`, opens a ``Tether`` and calls one hub
function. One handler, around every command (:class:`_Group`), turns a
:class:`~tether.errors.TetherError` (and a settings problem) into a one-line message and
the exit code :func:`tether.errors.exit_code` maps; nothing ends in a traceback unless
``--debug`` asks for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from typer.core import TyperGroup

from tether.cli import render
from tether.cli.args import param_pairs
from tether.cli.callback import await_callback
from tether.cli.runtime import key_ring, open_tether
from tether.config import Settings, load_settings
from tether.errors import (
    ConfigurationError,
    TetherError,
    UsageError,
    exit_code,
)
from tether.hub.tether import Tether

__all__ = ["app", "main"]

T = TypeVar("T")

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_MAX_MESSAGE = 2000
_INTERNAL_EXIT = 1


def _printable(text: str) -> str:
    """Strip terminal control characters (ANSI/OSC escapes) and bound the length."""
    clean = _CONTROL.sub("", text.replace("\n", " "))
    return clean if len(clean) <= _MAX_MESSAGE else clean[:_MAX_MESSAGE] + "…"


class _WarningLines(logging.Handler):
    """Tether's warnings as ``warning: …`` lines on stderr (the stream of the moment)."""

    def emit(self, record: logging.LogRecord) -> None:
        typer.echo(f"warning: {_printable(record.getMessage())}", err=True)


def _show_warnings() -> None:
    log = logging.getLogger("tether")
    if not any(isinstance(h, _WarningLines) for h in log.handlers):
        log.addHandler(_WarningLines(logging.WARNING))


def _settings_error(exc: ValidationError | SettingsError) -> ConfigurationError:
    # Settings built outside load_settings (a plugin, a test) still get one clear line.
    if isinstance(exc, ValidationError):
        fields = ", ".join(
            f"TETHER_{str(e['loc'][0]).upper()}" for e in exc.errors() if e["loc"]
        )
        return ConfigurationError(f"invalid settings: {fields or 'settings'}")
    return ConfigurationError(f"invalid settings: {exc}")


class _Group(TyperGroup):
    """The top-level group: every command's errors end here as one clear line."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, EOFError, KeyboardInterrupt):
            raise
        except TetherError as exc:
            _fail(exc, exit_code(exc))
        except (ValidationError, SettingsError) as exc:
            error = _settings_error(exc)
            _fail(error, exit_code(error), cause=exc)
        except Exception as exc:
            if type(exc).__module__.startswith(("click", "typer")):
                raise  # usage errors: the framework prints them
            _internal(exc)


def _fail(exc: TetherError, code: int, *, cause: BaseException | None = None) -> None:
    if _state.debug:
        raise cause or exc
    typer.echo(f"error: {_printable(str(exc))} [{exc.code}]", err=True)
    raise typer.Exit(code) from None


def _internal(exc: Exception) -> None:
    # An unexpected exception is a bug. Its text is not shown: it may quote a URL with a
    # token in it; --debug prints the traceback for a bug report.
    if _state.debug:
        raise exc
    typer.echo(
        f"error: internal error ({type(exc).__name__}); run again with --debug "
        "for the traceback and report it [internal]",
        err=True,
    )
    raise typer.Exit(_INTERNAL_EXIT) from None


app = typer.Typer(
    name="tether",
    help="Connect a multi-user AI application to remote MCP servers.",
    no_args_is_help=True,
    add_completion=True,
    cls=_Group,
    pretty_exceptions_enable=False,
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


@dataclass(slots=True)
class _Options:
    """The root options, for every command of this invocation."""

    debug: bool = False
    env_file: Path | None = None
    fresh_start: bool = False


_state = _Options()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
LimitOpt = Annotated[int | None, typer.Option(help="Page size (1-1000).")]
AfterOpt = Annotated[
    str | None, typer.Option(help="Cursor from the previous page ('more: ...').")
]
UserOpt = Annotated[
    str | None, typer.Option("--user", help="Act for this end user (per-user servers).")
]


def _package_version() -> str:
    try:
        return version("tether-mcp")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"tether {_package_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="Read settings from this .env file (else TETHER_ENV_FILE; a .env in "
            "the current folder is never read on its own).",
        ),
    ] = None,
    fresh_start: Annotated[
        bool,
        typer.Option(
            "--fresh-start",
            help="Accept a missing or empty database beside an existing key file "
            "(start over; every stored server and grant is lost).",
        ),
    ] = False,
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    _show_warnings()
    _state.debug = debug
    _state.env_file = env_file
    _state.fresh_start = fresh_start


def settings() -> Settings:
    """This invocation's settings: the environment, the named .env, the root options."""
    overrides: dict[str, Any] = {"fresh_start": True} if _state.fresh_start else {}
    return load_settings(env_file=_state.env_file, **overrides)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine (its errors reach the group's one handler)."""
    return asyncio.run(coro)


def with_tether(action: Callable[[Tether], Awaitable[T]]) -> T:
    """Open a Tether from the environment's settings and run ``action`` with it."""
    config = settings()

    async def body() -> T:
        async with open_tether(config) as tether:
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
def servers_list(
    as_json: JsonOpt = False, limit: LimitOpt = None, after: AfterOpt = None
) -> None:
    """List registered servers (all, or one page with --limit/--after)."""

    async def action(tether: Tether) -> None:
        if limit is None and after is None:
            return render.servers(await tether.servers.list(), as_json=as_json)
        page = await tether.list_servers(limit=limit or 100, after=after)
        render.servers(page.items, as_json=as_json)
        render.next_page(page.next)

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
def servers_remove(name: str, as_json: JsonOpt = False) -> None:
    """Revoke the server's grants and delete it."""

    async def action(tether: Tether) -> None:
        await tether.delete_server(name, actor="cli")
        _done(as_json, f"removed {name}", {"removed": name})

    with_tether(action)


# ---------------------------------------------------------------------- credentials


@credentials_app.command("add")
def credentials_add(
    name: str,
    value: Annotated[str | None, typer.Option(hidden=True)] = None,
    description: str = "",
    as_json: JsonOpt = False,
) -> None:
    """Store a named secret (encrypted at rest; never shown again).

    The value is read from stdin (``… < file`` or a pipe), or typed at a hidden prompt:
    never from the command line, where ``ps`` and the shell history would keep it.
    """
    _refuse_value_argument(value, f"tether credentials add {name} < secret.txt")
    secret = _read_secret()

    async def action(tether: Tether) -> None:
        info = await tether.credentials.create(
            name, secret, description=description, actor="cli"
        )
        _done(as_json, f"stored credential {info.name} ({info.id})", asdict(info))

    with_tether(action)


@credentials_app.command("update")
def credentials_update(
    name: str,
    rename: Annotated[str | None, typer.Option(help="A new name.")] = None,
    description: Annotated[str | None, typer.Option(help="A new description.")] = None,
    new_value: Annotated[
        bool,
        typer.Option(
            "--new-value",
            help="Replace the secret: read from stdin, or a hidden prompt.",
        ),
    ] = False,
    value: Annotated[str | None, typer.Option(hidden=True)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rename, re-describe or replace the value of a credential."""
    _refuse_value_argument(value, f"tether credentials update {name} --new-value")
    if rename is None and description is None and not new_value:
        raise UsageError(
            "nothing to change",
            hint="give --rename, --description or --new-value",
        )
    secret = _read_secret() if new_value else None

    async def action(tether: Tether) -> None:
        info = await tether.credentials.update(
            name, name=rename, value=secret, description=description, actor="cli"
        )
        _done(as_json, f"updated credential {info.name} ({info.id})", asdict(info))

    with_tether(action)


def _refuse_value_argument(value: str | None, example: str) -> None:
    if value is not None:
        raise UsageError(
            "--value is not accepted: a secret on the command line is visible to "
            "other users (ps) and stays in the shell history",
            hint=f"pipe it in (`{example}`) or type it at the prompt",
        )


def _done(as_json: bool, text: str, data: Any) -> None:
    """Print a command's outcome: a line for people, or JSON for machines."""
    if as_json:
        render.emit_json(data)
    else:
        typer.echo(text)


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _read_secret() -> str:
    """The secret from a hidden prompt at a terminal, else all of stdin."""
    if _stdin_is_terminal():
        entered: str = typer.prompt("Value", hide_input=True, err=True)
        secret = entered
    else:
        secret = sys.stdin.read().rstrip("\r\n")  # keeps a PEM key's inner lines
    if not secret.strip():
        raise UsageError(
            "no value was given",
            hint="pipe the secret on stdin or type it at the prompt",
        )
    return secret


@credentials_app.command("list")
def credentials_list(as_json: JsonOpt = False) -> None:
    """List credentials (names only)."""

    async def action(tether: Tether) -> None:
        render.credentials(await tether.credentials.list(), as_json=as_json)

    with_tether(action)


@credentials_app.command("remove")
def credentials_remove(name: str, as_json: JsonOpt = False) -> None:
    """Delete a credential no server uses."""

    async def action(tether: Tether) -> None:
        await tether.credentials.delete(name, actor="cli")
        _done(as_json, f"removed {name}", {"removed": name})

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
        server = await tether.servers.get(name)
        oauth = server.oauth
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
        if follow_redirects:  # the server's network settings, as for every step
            params = await tether.follow_authorization(name, started.authorization_url)
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
            typer.echo(
                f"Waiting up to {wait} s for the browser to come back "
                "(Ctrl-C to stop)…",
                err=True,
            )
            params = await await_callback(
                redirect_uri, wait, server=name, again=f"tether connect {name}"
            )
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
def disconnect(name: str, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke the connection's tokens at the AS and forget them."""

    async def action(tether: Tether) -> None:
        outcomes = await tether.disconnect(name, user=user, actor="cli")
        text = "disconnected" + "".join(f"\n  {line}" for line in outcomes)
        _done(as_json, text, {"disconnected": name, "revocation": list(outcomes)})

    with_tether(action)


@app.command()
def audit(
    name: Annotated[str | None, typer.Argument()] = None,
    limit: int = 50,
    as_json: JsonOpt = False,
    after: AfterOpt = None,
) -> None:
    """Show recent audit events, newest first (secrets masked)."""

    async def action(tether: Tether) -> None:
        page = await tether.audit_page(server_ref=name, limit=limit, after=after)
        render.audit(page.items, as_json=as_json)
        render.next_page(page.next)

    with_tether(action)


@app.command()
def connections(
    name: Annotated[str | None, typer.Argument()] = None,
    limit: int = 100,
    after: AfterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List connections (never a token), one page at a time."""

    async def action(tether: Tether) -> None:
        page = await tether.list_connections(name, limit=limit, after=after)
        render.connections(page.items, as_json=as_json)
        render.next_page(page.next)

    with_tether(action)


# ---------------------------------------------------------------------- operations


@app.command()
def migrate(as_json: JsonOpt = False) -> None:
    """Create or upgrade the database schema."""
    from tether.store.crypto import key_file_exists
    from tether.store.factory import check_database
    from tether.store.migrate import migrate as run_migrate

    config = settings()
    url = config.resolved_database_url()

    async def body() -> None:
        in_use = config.encryption_keys is None and key_file_exists(
            config.resolved_key_file()
        )
        await check_database(
            url, key_file_in_use=in_use, fresh_start=config.fresh_start
        )
        await run_migrate(url)

    run(body())
    _done(as_json, "database is up to date", {"migrated": True})


@keys_app.command("generate")
def keys_generate(as_json: JsonOpt = False) -> None:
    """Print a new random key (for TETHER_ENCRYPTION_KEYS; nothing is stored)."""
    from tether.store.crypto import KeyRing, generate_key

    key = generate_key()
    key_id = KeyRing.from_string(key).primary_key_id
    _done(as_json, key, {"key": key, "key_id": key_id})


@keys_app.command("add")
def keys_add(as_json: JsonOpt = False) -> None:
    """Put a new key in front of the key file's keys (then run `tether keys rotate`)."""
    from tether.store.crypto import add_key_to_file

    config = settings()
    if config.encryption_keys is not None:
        raise UsageError(
            "keys come from TETHER_ENCRYPTION_KEYS, not the key file",
            hint="prepend a new key there (`tether keys generate` prints one), "
            "restart, then run `tether keys rotate`",
        )
    ring = add_key_to_file(config.resolved_key_file())
    _done(
        as_json,
        f"new primary key {ring.primary_key_id}",
        {"primary_key_id": ring.primary_key_id, "key_ids": list(ring.key_ids)},
    )


@keys_app.command("rotate")
def keys_rotate(as_json: JsonOpt = False) -> None:
    """Re-encrypt every stored secret with the newest key."""
    from tether.store.rotate import RotationReport, rotate_keys

    config = settings()
    url = config.resolved_database_url()

    async def body() -> RotationReport:
        return await rotate_keys(url, await key_ring(config))

    report = run(body())
    _done(
        as_json,
        f"re-encrypted {report.total} secrets with key {report.key_id}",
        {"key_id": report.key_id, "reencrypted": dict(report.counts)},
    )


def main() -> None:
    """Entry point of the ``tether`` command."""
    app()


_add_tool_commands()


from tether.cli.probe import probe  # noqa: E402

app.command("probe")(probe)

from tether.cli.serve import register as _register_serve  # noqa: E402

_register_serve(app)

from tether.cli.demo import register as _register_demo  # noqa: E402

_register_demo(app)
