"""The connection status, driven through its events (design-notes S10, RFR-6).

The expectations come from the stated rules (``hub/status.py``'s header, RFR-6 and
design-notes D3.3), not from a copy of the table: lifecycles a connection really goes
through, and properties every (status, event) pair must keep.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import get_args

import pytest

from tether.errors import UsageError
from tether.hub.status import TRANSITIONS, Event, transition
from tether.store.base import ConnectionStatus

STATUSES: tuple[ConnectionStatus, ...] = get_args(ConnectionStatus)
EVENTS: tuple[Event, ...] = get_args(Event)
PAIRS = list(itertools.product(STATUSES, EVENTS))

#: Events that need a grant to exist: only a stored grant can be refreshed, refused by
#: the AS, found unreachable on refresh, or challenged for more scope by the server.
NEEDS_A_GRANT: frozenset[Event] = frozenset(
    {"refreshed", "unreachable", "invalid_grant", "step_up"}
)


def walk(start: ConnectionStatus, events: Iterable[Event]) -> list[ConnectionStatus]:
    """The statuses a connection passes through, one per event."""
    seen: list[ConnectionStatus] = []
    status = start
    for event in events:
        status = transition(status, event)
        seen.append(status)
    return seen


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(STATUSES)


def test_table_mentions_only_known_events_and_statuses() -> None:
    for status, moves in TRANSITIONS.items():
        assert set(moves) <= set(EVENTS), status
        assert set(moves.values()) <= set(STATUSES), status


# ------------------------------------------------------------- lifecycles


def test_a_connection_that_refreshes_through_a_network_outage() -> None:
    """RFR-6: a network failure keeps the tokens, and the next refresh recovers."""
    assert walk(
        "disconnected",
        ["authorized", "refreshed", "unreachable", "unreachable", "refreshed"],
    ) == ["connected", "connected", "refresh_failed", "refresh_failed", "connected"]


def test_a_refused_grant_waits_for_the_user() -> None:
    """RFR-6: ``invalid_grant`` sets ``needs_reauth``; only a new authorization ends it.

    A refresh a peer finished after the grant was declared dead, a network failure or a
    403 does not bring a dead grant back (design-notes D3.3).
    """
    assert walk(
        "connected",
        ["invalid_grant", "refreshed", "unreachable", "step_up", "authorized"],
    ) == ["needs_reauth", "needs_reauth", "needs_reauth", "needs_reauth", "connected"]


def test_a_failure_keeps_the_tokens_for_a_later_refresh() -> None:
    """Rule 2: only invalid_grant, a config change or disconnect drops the tokens."""
    assert walk("connected", ["failed", "refreshed"]) == ["error", "connected"]
    assert walk("connected", ["failed", "unreachable"]) == ["error", "refresh_failed"]
    assert walk("connected", ["failed", "invalid_grant"]) == ["error", "needs_reauth"]


def test_a_first_authorization_that_fails() -> None:
    assert walk("disconnected", ["failed", "authorized"]) == ["error", "connected"]


@pytest.mark.parametrize(
    "history",
    [
        ["authorized"],
        ["authorized", "unreachable"],
        ["authorized", "invalid_grant"],
        ["authorized", "failed"],
        ["failed"],
    ],
)
@pytest.mark.parametrize("event", ["disconnect", "config_changed"])
def test_rule_3_clean_slate_after_any_history(
    history: list[Event], event: Event
) -> None:
    assert walk("disconnected", [*history, event])[-1] == "disconnected"


# ------------------------------------------------ properties of every pair


@pytest.mark.parametrize(("status", "event"), PAIRS)
def test_every_pair_follows_the_rules(status: ConnectionStatus, event: Event) -> None:
    if status == "disconnected" and event in NEEDS_A_GRANT:
        with pytest.raises(UsageError, match="cannot take the event"):
            transition(status, event)
        return
    after = transition(status, event)
    if event in ("disconnect", "config_changed"):  # rule 3: from everywhere
        assert after == "disconnected"
    elif event == "authorized":  # a fresh grant is stored, whatever came before
        assert after == "connected"
    elif event == "invalid_grant":  # RFR-6
        assert after == "needs_reauth"
    elif event == "step_up":  # rule 4: the status stays
        assert after == status
    elif event == "failed":
        assert after == "error"
    elif status == "needs_reauth":  # a dead grant stays dead (D3.3)
        assert after == "needs_reauth"
    elif event == "unreachable":  # rule 2 / RFR-6: tokens kept, retried later
        assert after == "refresh_failed"
    else:
        assert event == "refreshed"
        assert after == "connected"


@pytest.mark.parametrize(("status", "event"), PAIRS)
def test_only_invalid_grant_leads_into_needs_reauth(
    status: ConnectionStatus, event: Event
) -> None:
    """RFR-6: network errors never make the user reconnect."""
    try:
        after = transition(status, event)
    except UsageError:
        return
    if after == "needs_reauth" and status != "needs_reauth":
        assert event == "invalid_grant"


def test_every_status_is_reachable_from_a_new_connection() -> None:
    reached: set[ConnectionStatus] = {"disconnected"}
    frontier: list[ConnectionStatus] = ["disconnected"]
    while frontier:
        status = frontier.pop()
        for event in EVENTS:
            try:
                after = transition(status, event)
            except UsageError:
                continue
            if after not in reached:
                reached.add(after)
                frontier.append(after)
    assert reached == set(STATUSES)


def test_a_refused_event_says_how_to_recover() -> None:
    with pytest.raises(UsageError) as caught:
        transition("disconnected", "refreshed")
    assert caught.value.hint is not None
