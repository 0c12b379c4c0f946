"""Rules both backends enforce the same way, and the errors they raise for them."""

from __future__ import annotations

from datetime import UTC, datetime

from tether.errors import NotFound, ValidationFailed
from tether.store.base import Toolset

__all__ = [
    "check_entries",
    "id_taken",
    "name_key",
    "name_taken",
    "server_missing",
    "utc_now",
]


def utc_now() -> datetime:
    """The default clock: aware UTC."""
    return datetime.now(UTC)


def name_key(name: str) -> str:
    """Names of servers, credentials and toolsets are unique case-insensitively."""
    return name.lower()


def name_taken(kind: str, name: str) -> ValidationFailed:
    """The error for a unique-name clash."""
    return ValidationFailed(
        f"a {kind} named {name!r} already exists", fields={"name": "already taken"}
    )


def id_taken(kind: str, record_id: str) -> ValidationFailed:
    """The error for an id clash."""
    return ValidationFailed(
        f"a {kind} with id {record_id!r} already exists", fields={"id": "already taken"}
    )


def server_missing(server_id: str | None = None) -> NotFound:
    """Records keyed by a server need that server to exist (a foreign key in SQL)."""
    which = f"server {server_id!r}" if server_id else "the referenced server"
    return NotFound(f"{which} does not exist", hint="register the server first")


def check_entries(toolset: Toolset) -> None:
    """A server appears at most once in a toolset.

    Raises:
        ValidationFailed: A server is listed twice.
    """
    seen = [e.server_id for e in toolset.entries]
    if len(seen) != len(set(seen)):
        raise ValidationFailed(
            f"toolset {toolset.name!r} lists a server twice",
            fields={"entries": "each server may appear once"},
        )
