"""The connection status table, walked pair by pair (design-notes S10)."""

from __future__ import annotations

import itertools
from typing import get_args

import pytest

from tether.errors import UsageError
from tether.hub.status import TRANSITIONS, Event, transition
from tether.store.base import ConnectionStatus

STATUSES: tuple[ConnectionStatus, ...] = get_args(ConnectionStatus)
EVENTS: tuple[Event, ...] = get_args(Event)


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(STATUSES)


def test_table_mentions_only_known_events_and_statuses() -> None:
    for status, moves in TRANSITIONS.items():
        assert set(moves) <= set(EVENTS), status
        assert set(moves.values()) <= set(STATUSES), status


# The expected outcome of every pair, spelled out so that a change to the table is a
# deliberate change to this test too. ``None`` means the pair is refused.
EXPECTED: dict[ConnectionStatus, dict[Event, ConnectionStatus | None]] = {
    "disconnected": {
        "authorized": "connected",
        "refreshed": None,
        "unreachable": None,
        "invalid_grant": None,
        "step_up": None,
        "failed": "error",
        "disconnect": "disconnected",
        "config_changed": "disconnected",
    },
    "connected": {
        "authorized": "connected",
        "refreshed": "connected",
        "unreachable": "refresh_failed",
        "invalid_grant": "needs_reauth",
        "step_up": "connected",  # rule 4: the status stays
        "failed": "error",
        "disconnect": "disconnected",
        "config_changed": "disconnected",
    },
    "refresh_failed": {
        "authorized": "connected",
        "refreshed": "connected",
        "unreachable": "refresh_failed",
        "invalid_grant": "needs_reauth",
        "step_up": "refresh_failed",
        "failed": "error",
        "disconnect": "disconnected",
        "config_changed": "disconnected",
    },
    "needs_reauth": {
        "authorized": "connected",
        # step-up keeps the tokens: a refresh may still succeed or fail, but only a new
        # authorization grants the missing scope.
        "refreshed": "needs_reauth",
        "unreachable": "needs_reauth",
        "invalid_grant": "needs_reauth",
        "step_up": "needs_reauth",
        "failed": "error",
        "disconnect": "disconnected",
        "config_changed": "disconnected",
    },
    "error": {
        "authorized": "connected",
        # a failure keeps the tokens (rule 2), so a later refresh can recover
        "refreshed": "connected",
        "unreachable": "refresh_failed",
        "invalid_grant": "needs_reauth",
        "step_up": "error",
        "failed": "error",
        "disconnect": "disconnected",
        "config_changed": "disconnected",
    },
}


@pytest.mark.parametrize(("status", "event"), list(itertools.product(STATUSES, EVENTS)))
def test_every_pair_matches_the_spelled_out_table(
    status: ConnectionStatus, event: Event
) -> None:
    expected = EXPECTED[status][event]
    if expected is None:
        with pytest.raises(UsageError):
            transition(status, event)
    else:
        assert transition(status, event) == expected


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("event", ["disconnect", "config_changed"])
def test_rule_3_clean_slate_from_everywhere(
    status: ConnectionStatus, event: Event
) -> None:
    assert transition(status, event) == "disconnected"


@pytest.mark.parametrize("status", STATUSES)
def test_only_invalid_grant_leads_to_needs_reauth(
    status: ConnectionStatus,
) -> None:
    for event, target in TRANSITIONS[status].items():
        if target == "needs_reauth" and status != "needs_reauth":
            assert event == "invalid_grant"


@pytest.mark.parametrize("status", STATUSES)
def test_rule_4_step_up_keeps_the_status(status: ConnectionStatus) -> None:
    if status == "disconnected":
        with pytest.raises(UsageError):
            transition(status, "step_up")
    else:
        assert transition(status, "step_up") == status


@pytest.mark.parametrize("status", STATUSES)
def test_rule_2_network_failure_never_lands_in_a_token_dropping_status(
    status: ConnectionStatus,
) -> None:
    target = TRANSITIONS[status].get("unreachable")
    assert target in (None, "refresh_failed", "needs_reauth")
