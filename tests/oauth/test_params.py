"""Tests for tether.oauth.params (G-5; design-notes R3.6 rule 8; AUTHZ-6)."""

from __future__ import annotations

import pytest

from tether.errors import ConfigurationError, ValidationFailed
from tether.oauth.params import (
    PROTECTED_AUTHORIZATION_PARAMS,
    PROTECTED_TOKEN_PARAMS,
    ParamKind,
    check_custom_params,
    merge_params,
)

DEFAULTS = {"response_type": "code", "resource": "https://r", "scope": "a"}


@pytest.mark.parametrize(
    ("custom", "expected"),
    [
        (None, DEFAULTS),
        ({}, DEFAULTS),
        ({"resource": None}, {"response_type": "code", "scope": "a"}),
        ({"scope": "b c"}, {**DEFAULTS, "scope": "b c"}),
        ({"audience": "api", "prompt": None}, {**DEFAULTS, "audience": "api"}),
        ({"access_type": "offline"}, {**DEFAULTS, "access_type": "offline"}),
    ],
)
def test_merge(custom: dict[str, str | None] | None, expected: dict[str, str]) -> None:
    assert merge_params(DEFAULTS, custom, kind="authorization") == expected


def test_merge_does_not_mutate_defaults() -> None:
    defaults = {"a": "1"}
    merge_params(defaults, {"a": None}, kind="token")
    assert defaults == {"a": "1"}


AUTHZ_CASES = [(k, "authorization") for k in sorted(PROTECTED_AUTHORIZATION_PARAMS)]
TOKEN_CASES = [(k, "token") for k in sorted(PROTECTED_TOKEN_PARAMS)]


@pytest.mark.parametrize(("key", "kind"), AUTHZ_CASES + TOKEN_CASES)
@pytest.mark.parametrize("value", ["x", None])
def test_protected_keys_are_refused(
    key: str, kind: ParamKind, value: str | None
) -> None:
    field = f"{kind}_params"
    with pytest.raises(ValidationFailed, match=key) as saved:
        check_custom_params({key: value, "ok": "1"}, kind=kind)
    assert key in saved.value.details["fields"][field]
    with pytest.raises(ConfigurationError, match=key) as merged:
        merge_params({}, {key: value}, kind=kind)
    assert merged.value.details == {"params": [key]}


@pytest.mark.parametrize("key", ["STATE", " Code_Challenge "])
def test_protected_keys_compare_case_insensitively(key: str) -> None:
    with pytest.raises(ValidationFailed):
        check_custom_params({key: "x"}, kind="authorization")


@pytest.mark.parametrize(
    ("custom", "kind"),
    [
        ({"resource": None, "scope": "x", "audience": "a"}, "authorization"),
        ({"resource": None, "scope": "x", "audience": "a"}, "token"),
        ({"code": "x"}, "authorization"),  # only protected for token requests
        ({"state": "x"}, "token"),  # only protected for authorization requests
    ],
)
def test_allowed_keys(custom: dict[str, str | None], kind: ParamKind) -> None:
    check_custom_params(custom, kind=kind)
