"""Tests for tether.oauth.callback (CB-1 – CB-5; RFC 9207 §2.4)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from tether.errors import AccessDenied, CallbackRejected, OAuthError, ServerError
from tether.oauth.callback import (
    callback_state,
    parse_callback_query,
    validate_callback,
)

ISS = "https://auth.example.com"
Params = Mapping[str, str | Sequence[str]]


def run(params: Params, *, supported: bool, found: bool = True) -> str:
    return validate_callback(
        params,
        pending_found=found,
        expected_issuer=ISS if found else None,
        iss_parameter_supported=supported,
    )


# CB-2: the four rows of the table, for a success response
@pytest.mark.parametrize(
    ("supported", "params"),
    [
        (True, {"code": "c", "state": "s", "iss": ISS}),  # present → compare, equal
        (False, {"code": "c", "state": "s", "iss": ISS}),  # present → compare, equal
        (False, {"code": "c", "state": "s"}),  # absent, not advertised → proceed
        (True, {"code": ["c"], "state": ["s"], "iss": [ISS]}),  # list-valued params
    ],
)
def test_accepted(supported: bool, params: Params) -> None:
    assert run(params, supported=supported) == "c"


@pytest.mark.parametrize(
    ("supported", "params", "reason"),
    [
        (True, {"code": "c"}, "has none"),  # advertised, absent → reject
        (True, {"code": "c", "iss": "https://evil.example"}, "does not match"),
        (False, {"code": "c", "iss": "https://evil.example"}, "does not match"),
        # CB-3: no normalisation of any kind
        (True, {"code": "c", "iss": f"{ISS}/"}, "does not match"),
        (True, {"code": "c", "iss": "https://AUTH.example.com"}, "does not match"),
        (True, {"code": "c", "iss": "https://auth.example.com:443"}, "does not match"),
        (True, {"code": "c", "iss": "https://auth.example.com%2F"}, "does not match"),
        (True, {"code": "c", "iss": ""}, "does not match"),
    ],
)
def test_iss_rejections(supported: bool, params: Params, reason: str) -> None:
    with pytest.raises(CallbackRejected, match=reason) as info:
        run(params, supported=supported)
    assert info.value.step == "callback"


@pytest.mark.parametrize("supported", [True, False])
def test_iss_mismatch_is_checked_before_error(supported: bool) -> None:
    params = {
        "iss": "https://evil.example",
        "error": "access_denied",
        "error_description": "<script>click here</script>",
    }
    with pytest.raises(CallbackRejected) as info:
        run(params, supported=supported)
    # CB-4: the error fields are neither acted on nor shown
    assert not isinstance(info.value, OAuthError)
    assert "script" not in str(info.value)
    assert "error_description" not in info.value.details


def test_missing_iss_when_advertised_is_checked_before_error() -> None:
    with pytest.raises(CallbackRejected, match="has none"):
        run({"error": "access_denied"}, supported=True)


@pytest.mark.parametrize(
    ("params", "error_class"),
    [
        ({"error": "access_denied", "iss": ISS}, AccessDenied),
        ({"error": "server_error"}, ServerError),
        ({"error": "made_up", "error_uri": "https://e/x"}, OAuthError),
    ],
)
def test_error_after_iss(params: Params, error_class: type[OAuthError]) -> None:
    with pytest.raises(error_class) as info:
        run({**params, "error_description": "nope", "code": "ignored"}, supported=False)
    assert info.value.error == params["error"]
    assert info.value.error_description == "nope"
    assert info.value.step == "callback"
    assert info.value.server == ISS


@pytest.mark.parametrize("params", [{}, {"code": ""}, {"state": "s"}])
def test_missing_code(params: Params) -> None:
    with pytest.raises(CallbackRejected, match="neither a code nor an error"):
        run(params, supported=False)


def test_unknown_state_is_rejected_first() -> None:
    with pytest.raises(CallbackRejected, match="unknown, expired or already used"):
        run({"code": "c", "iss": "https://evil.example"}, supported=True, found=False)


def test_pending_without_issuer_is_rejected() -> None:
    with pytest.raises(CallbackRejected, match="unknown"):
        validate_callback(
            {"code": "c"},
            pending_found=True,
            expected_issuer=None,
            iss_parameter_supported=False,
        )


@pytest.mark.parametrize("name", ["code", "iss", "error"])
def test_repeated_parameters_are_refused(name: str) -> None:
    with pytest.raises(CallbackRejected, match="2 times"):
        run({"code": "c", name: ["a", "b"]}, supported=False)


@pytest.mark.parametrize(
    ("params", "expected"),
    [({"state": "abc"}, "abc"), ({"state": ["abc"]}, "abc")],
)
def test_callback_state(params: Params, expected: str) -> None:
    assert callback_state(params) == expected


@pytest.mark.parametrize("params", [{}, {"state": ""}, {"state": []}])
def test_callback_state_missing(params: Params) -> None:
    with pytest.raises(CallbackRejected):
        callback_state(params)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("code=c&state=s", {"code": "c", "state": "s"}),
        ("iss=https%3A%2F%2Fas&code=a+b", {"iss": "https://as", "code": "a b"}),
        ("code=c1&code=c2&state=s", {"code": ["c1", "c2"], "state": "s"}),
        ("state=s1&code=c&state=s2", {"state": ["s1", "s2"], "code": "c"}),
        ("error=&code=c", {"error": "", "code": "c"}),
        ("", {}),
    ],
)
def test_parse_callback_query_keeps_every_value(
    query: str, expected: dict[str, str | list[str]]
) -> None:
    assert parse_callback_query(query) == expected


@pytest.mark.parametrize(
    "query", ["code=c1&code=c2&state=s&iss=" + ISS, "code=c&state=s1&state=s2"]
)
def test_a_duplicated_code_or_state_in_a_raw_callback_is_refused(query: str) -> None:
    """RFC 6749 §3.1 end to end: parse the raw query, then the hub's two checks."""
    params = parse_callback_query(query)

    def hub_checks() -> str:
        callback_state(params)
        return run(params, supported=True)

    with pytest.raises(CallbackRejected, match=r"2 times \(RFC 6749 §3.1\)"):
        hub_checks()
