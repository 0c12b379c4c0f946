"""Output of CLI commands: human-readable by default, JSON with ``--json``.

Small functions that tests call directly (design-notes S14). Nothing here prints a
token or secret: the inputs are secret-free views. Text that a remote party chose (an
error description, a tool's output, an issuer) goes through :func:`terminal_text` first,
so escape sequences cannot recolour, retitle or rewrite the operator's terminal. JSON
output needs no such step: ``json.dumps`` escapes every control and non-ASCII character.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import typer

from tether.errors import clean_text
from tether.hub.audit import server_view
from tether.hub.credentials import CredentialInfo
from tether.hub.tether import ConnectionInfo
from tether.store.base import AuditEvent, ServerRecord

__all__ = [
    "MAX_TERMINAL_TEXT",
    "audit",
    "connection",
    "credentials",
    "server",
    "servers",
    "terminal_text",
]

MAX_TERMINAL_TEXT = 2000
"""Longest one-line remote text printed (an error message, a description)."""


def terminal_text(
    value: Any, *, limit: int = MAX_TERMINAL_TEXT, multiline: bool = False
) -> str:
    """Remote text made safe to print: no escape sequences or controls, bounded.

    Args:
        value: The text (anything is converted with :func:`str`).
        limit: Maximum length printed.
        multiline: Keep line breaks and tabs (tool output).

    Returns:
        The cleaned text.
    """
    return clean_text(value, limit=limit, keep_newlines=multiline)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    typer.echo(json.dumps(data, indent=2, default=_default, sort_keys=True))


def server(record: ServerRecord, *, as_json: bool) -> None:
    """One server's settings."""
    view = server_view(record)
    if as_json:
        emit_json(view)
        return
    typer.echo(
        f"{record.name}  {record.url}  auth={record.auth_mode}"
        f"  {'enabled' if record.enabled else 'disabled'}  id={record.id}"
    )
    if record.auth_mode == "oauth":
        oauth = view["oauth"]
        for key in (
            "registration",
            "client_id",
            "scopes",
            "per_user",
            "authorization_params",
            "token_params",
        ):
            if oauth[key]:
                typer.echo(f"  oauth.{key}: {oauth[key]}")


def servers(records: Sequence[ServerRecord], *, as_json: bool) -> None:
    """A list of servers."""
    if as_json:
        emit_json([server_view(r) for r in records])
        return
    if not records:
        typer.echo("no servers; add one with `tether servers add NAME URL`")
    for record in records:
        typer.echo(f"{record.name:24} {record.auth_mode:7} {record.url}")


def credentials(items: Sequence[CredentialInfo], *, as_json: bool) -> None:
    """Credential names (never values)."""
    if as_json:
        emit_json([asdict(i) for i in items])
        return
    for item in items:
        typer.echo(f"{item.name:24} {item.id}  {item.description}")


def connection(info: ConnectionInfo, *, as_json: bool) -> None:
    """A connection's status."""
    if as_json:
        emit_json(info.to_dict())
        return
    typer.echo(f"{info.server_name} [{info.subject}]: {info.status}")
    if info.issuer:
        typer.echo(f"  issuer:        {terminal_text(info.issuer)}")
    if info.scopes:
        typer.echo(f"  scopes:        {terminal_text(' '.join(info.scopes))}")
    if info.required_scopes:
        needs = terminal_text(" ".join(info.required_scopes))
        typer.echo(f"  needs scopes:  {needs} (connect again)")
    if info.expires_at:
        typer.echo(f"  expires at:    {info.expires_at.isoformat()}")
    typer.echo(f"  refresh token: {'yes' if info.has_refresh_token else 'no'}")
    if info.last_error:
        error = terminal_text(info.last_error)
        typer.echo(f"  last error:    {error} [{terminal_text(info.last_error_code)}]")


def connections(items: Sequence[ConnectionInfo], *, as_json: bool) -> None:
    """Connections, one line each (never a token)."""
    if as_json:
        emit_json([info.to_dict() for info in items])
        return
    for info in items:
        expires = info.expires_at.isoformat() if info.expires_at else "-"
        typer.echo(
            f"{info.server_name:24} {info.subject:24} {info.status:14} {expires}"
        )


def next_page(cursor: str | None) -> None:
    """Tell (on stderr, so JSON on stdout stays one document) how to get more."""
    if cursor is not None:
        typer.echo(f"more: pass --after {cursor}", err=True)


def audit(events: Sequence[AuditEvent], *, as_json: bool) -> None:
    """Audit events, newest first."""
    if as_json:
        emit_json([asdict(e) for e in events])
        return
    for event in events:
        detail = f"  {terminal_text(event.detail)}" if event.detail else ""
        typer.echo(
            f"{event.at.isoformat()}  {event.actor or '-':10} {event.action:22} "
            f"{event.target_type}:{event.target_id}{detail}"
        )
