"""Connection status as a transition table (design-notes D1; S10).

Rule 1: ``Connection.status`` changes only through :func:`transition`; nothing else
assigns it.
Rule 2: a network failure never discards tokens; only ``invalid_grant``, a configuration
change or ``disconnect`` does (design-notes D3.3).
Rule 3: ``disconnect`` and ``config_changed`` are allowed from every status, so an admin
can always get back to a clean slate.
Rule 4: ``step_up`` records the scopes a 403 ``insufficient_scope`` asked for and keeps
the status: the grant still works for everything else, and one user's call must not
take a shared connection down for everybody (issue 7).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from tether.errors import UsageError
from tether.store.base import ConnectionStatus

__all__ = ["TRANSITIONS", "Event", "transition"]

Event = Literal[
    "authorized",  # a code exchange stored a fresh grant
    "refreshed",  # a refresh stored a fresh grant
    "unreachable",  # the AS could not be reached; tokens kept, retried later
    "invalid_grant",  # the AS refused the refresh token: a user must reconnect
    "step_up",  # the MCP server wants more scope (RFC 6750 §3.1); the status stays
    "failed",  # any other failure (bad response, refresh token required but absent)
    "disconnect",  # an admin or user disconnected
    "config_changed",  # a re-authorization trigger field of the server changed
]

_ALWAYS: Final[Mapping[Event, ConnectionStatus]] = {
    "disconnect": "disconnected",
    "config_changed": "disconnected",
}

TRANSITIONS: Final[Mapping[ConnectionStatus, Mapping[Event, ConnectionStatus]]] = {
    "disconnected": {"authorized": "connected", "failed": "error", **_ALWAYS},
    "connected": {
        "authorized": "connected",
        "refreshed": "connected",
        "unreachable": "refresh_failed",
        "invalid_grant": "needs_reauth",
        "step_up": "connected",
        "failed": "error",
        **_ALWAYS,
    },
    "refresh_failed": {
        "authorized": "connected",
        "refreshed": "connected",
        "unreachable": "refresh_failed",
        "invalid_grant": "needs_reauth",
        "step_up": "refresh_failed",
        "failed": "error",
        **_ALWAYS,
    },
    # Tokens of a dead grant are gone; only a new authorization brings the connection
    # back. A refresh that finishes after a peer marked the grant dead changes nothing.
    "needs_reauth": {
        "authorized": "connected",
        "refreshed": "needs_reauth",
        "unreachable": "needs_reauth",
        "step_up": "needs_reauth",
        "invalid_grant": "needs_reauth",
        "failed": "error",
        **_ALWAYS,
    },
    # A failure keeps the tokens (rule 2), so a later refresh or 403 can still arrive.
    "error": {
        "authorized": "connected",
        "refreshed": "connected",
        "unreachable": "refresh_failed",
        "invalid_grant": "needs_reauth",
        "step_up": "error",
        "failed": "error",
        **_ALWAYS,
    },
}


def transition(status: ConnectionStatus, event: Event) -> ConnectionStatus:
    """Return the status after ``event``.

    Raises:
        UsageError: the event is not allowed in this status.
    """
    allowed = TRANSITIONS[status]
    if event not in allowed:
        raise UsageError(
            f"a connection in status '{status}' cannot take the event '{event}'",
            hint="reconnect the server to start from a clean state",
        )
    return allowed[event]
