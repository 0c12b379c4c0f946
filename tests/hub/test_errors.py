"""The exception tree, its codes and mappings (``tether/errors.py``)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import tether.errors as errors_module
from tether.errors import (
    EXIT_CODES,
    HTTP_STATUS,
    AccessDenied,
    AuthorizationRequired,
    BlockedDestination,
    CallbackRejected,
    ConfigurationError,
    DecryptionError,
    DiscoveryError,
    Forbidden,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidResponse,
    InvalidScope,
    InvalidTarget,
    MCPProtocolError,
    NetworkError,
    NotFound,
    OAuthError,
    PermissionDenied,
    RemoteError,
    RequestTimeout,
    ResponseTooLarge,
    ServerError,
    SessionExpired,
    SkillVerificationFailed,
    StepUpRequired,
    StorageError,
    TemporarilyUnavailable,
    TetherError,
    Unauthenticated,
    UnauthorizedClient,
    UnsupportedGrantType,
    UsageError,
    ValidationFailed,
    VersionConflict,
    exit_code,
    http_status,
)


def _all_error_classes() -> list[type[TetherError]]:
    found: list[type[TetherError]] = []
    for name in errors_module.__all__:
        value = getattr(errors_module, name)
        if isinstance(value, type) and issubclass(value, TetherError):
            found.append(value)
    return found


ALL = _all_error_classes()


# ------------------------------------------------------------------ the tree

PARENTS: list[tuple[type[TetherError], type[TetherError]]] = [
    (UsageError, TetherError),
    (NotFound, UsageError),
    (Unauthenticated, UsageError),
    (Forbidden, UsageError),
    (ValidationFailed, UsageError),
    (ConfigurationError, TetherError),
    (AuthorizationRequired, TetherError),
    (StepUpRequired, AuthorizationRequired),
    (CallbackRejected, TetherError),
    (RemoteError, TetherError),
    (DiscoveryError, RemoteError),
    (OAuthError, RemoteError),
    (InvalidResponse, RemoteError),
    (SkillVerificationFailed, InvalidResponse),
    (MCPProtocolError, RemoteError),
    (SessionExpired, MCPProtocolError),
    (PermissionDenied, MCPProtocolError),
    (BlockedDestination, TetherError),
    (NetworkError, TetherError),
    (RequestTimeout, NetworkError),
    (ResponseTooLarge, NetworkError),
    (StorageError, TetherError),
    (VersionConflict, StorageError),
    (DecryptionError, StorageError),
    *[
        (klass, OAuthError)
        for klass in (
            InvalidRequest,
            InvalidClient,
            InvalidGrant,
            UnauthorizedClient,
            UnsupportedGrantType,
            InvalidScope,
            AccessDenied,
            InvalidTarget,
            ServerError,
            TemporarilyUnavailable,
        )
    ],
]


@pytest.mark.parametrize(("child", "parent"), PARENTS)
def test_tree(child: type[TetherError], parent: type[TetherError]) -> None:
    assert child.__bases__ == (parent,)


def test_every_exported_class_is_in_the_tree() -> None:
    assert {child for child, _ in PARENTS} | {TetherError} == set(ALL)


def test_codes_are_unique_and_own() -> None:
    codes = [klass.code for klass in ALL]
    assert len(codes) == len(set(codes)), sorted(codes)
    for klass in ALL:
        assert "code" in vars(klass), f"{klass.__name__} inherits its code"
        assert klass.code
        assert klass.code == klass.code.strip()


def test_exceptions_are_exceptions() -> None:
    assert issubclass(TetherError, Exception)


# ------------------------------------------------------------------ mappings

HTTP_EXPECTED: list[tuple[type[TetherError], int]] = [
    (TetherError, 500),
    (UsageError, 400),
    (NotFound, 404),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (ValidationFailed, 422),
    (ConfigurationError, 409),
    (AuthorizationRequired, 401),
    (StepUpRequired, 403),
    (CallbackRejected, 400),
    (BlockedDestination, 400),
    (RemoteError, 502),
    (DiscoveryError, 502),  # inherited
    (InvalidGrant, 502),  # inherited through OAuthError
    (SessionExpired, 502),  # inherited twice
    (PermissionDenied, 403),
    (NetworkError, 502),
    (RequestTimeout, 504),
    (ResponseTooLarge, 502),  # inherited
    (StorageError, 500),
    (VersionConflict, 409),
    (DecryptionError, 500),  # inherited
]


@pytest.mark.parametrize(("klass", "status"), HTTP_EXPECTED)
def test_http_status(klass: type[TetherError], status: int) -> None:
    assert http_status(klass) == status
    assert http_status(klass("boom")) == status


EXIT_EXPECTED: list[tuple[type[TetherError], int]] = [
    (TetherError, 1),
    (UsageError, 2),
    (NotFound, 2),  # inherited
    (ValidationFailed, 2),
    (ConfigurationError, 3),
    (AuthorizationRequired, 4),
    (StepUpRequired, 4),  # inherited
    (CallbackRejected, 4),
    (BlockedDestination, 5),
    (RemoteError, 6),
    (OAuthError, 6),
    (AccessDenied, 6),
    (MCPProtocolError, 6),
    (NetworkError, 7),
    (RequestTimeout, 7),
    (StorageError, 8),
    (VersionConflict, 8),
    (DecryptionError, 8),
]


@pytest.mark.parametrize(("klass", "code"), EXIT_EXPECTED)
def test_exit_code(klass: type[TetherError], code: int) -> None:
    assert exit_code(klass) == code
    assert exit_code(klass("boom")) == code


@pytest.mark.parametrize("klass", ALL)
def test_every_class_has_a_mapping(klass: type[TetherError]) -> None:
    assert http_status(klass) in {400, 401, 403, 404, 409, 422, 500, 502, 504}
    assert 1 <= exit_code(klass) <= 8


def test_tables_only_hold_tether_errors() -> None:
    for table in (HTTP_STATUS, EXIT_CODES):
        assert all(issubclass(k, TetherError) for k in table)
        assert TetherError in table


def test_lookup_of_a_foreign_subclass_walks_the_mro() -> None:
    class Custom(NotFound):
        code = "test.custom"

    assert http_status(Custom) == 404
    assert exit_code(Custom("x")) == 2


# ------------------------------------------------------------------ text and dict


def test_str_has_step_server_message_and_hint() -> None:
    exc = DiscoveryError(
        "no authorization server", server="Jira", step="discovery", hint="check it"
    )
    assert str(exc) == "[discovery] Jira: no authorization server — check it"
    assert exc.args == (str(exc),)


def test_str_without_optional_parts() -> None:
    assert str(UsageError("plain")) == "plain"


def test_to_dict_minimal() -> None:
    assert NotFound("no server 'x'").to_dict() == {
        "code": "not_found",
        "message": "no server 'x'",
    }


def test_to_dict_full_is_json_safe() -> None:
    exc = ValidationFailed(
        "the server settings are invalid",
        fields={"url": "not https"},
        server="Jira",
        step="save",
        hint="fix it",
        details={"extra": 1},
    )
    out = exc.to_dict()
    assert out == {
        "code": "validation",
        "message": "the server settings are invalid",
        "server": "Jira",
        "step": "save",
        "hint": "fix it",
        "details": {"extra": 1, "fields": {"url": "not https"}},
    }
    assert json.loads(json.dumps(out)) == out


def test_details_are_copied() -> None:
    given = {"a": 1}
    exc = TetherError("x", details=given)
    exc.details["b"] = 2
    assert given == {"a": 1}


# ------------------------------------------------------------------ OAuth errors

REGISTERED: list[tuple[str, type[OAuthError]]] = [
    ("invalid_request", InvalidRequest),
    ("invalid_client", InvalidClient),
    ("invalid_grant", InvalidGrant),
    ("unauthorized_client", UnauthorizedClient),
    ("unsupported_grant_type", UnsupportedGrantType),
    ("invalid_scope", InvalidScope),
    ("access_denied", AccessDenied),
    ("invalid_target", InvalidTarget),
    ("server_error", ServerError),
    ("temporarily_unavailable", TemporarilyUnavailable),
]


@pytest.mark.parametrize(("error", "klass"), REGISTERED)
def test_from_response_picks_the_subclass(error: str, klass: type[OAuthError]) -> None:
    exc = OAuthError.from_response(
        error,
        "the code is gone",
        "https://as.example/e",
        server="https://as.example",
        step="token",
    )
    assert type(exc) is klass
    assert exc.code == f"oauth.{error}"
    assert exc.error == error
    assert exc.error_description == "the code is gone"
    assert exc.error_uri == "https://as.example/e"
    assert (
        exc.message == f"the authorization server answered '{error}': the code is gone"
    )
    assert exc.server == "https://as.example"
    assert exc.step == "token"
    assert exc.details == {
        "error": error,
        "error_description": "the code is gone",
        "error_uri": "https://as.example/e",
    }


def test_from_response_unknown_code_is_a_plain_oauth_error() -> None:
    exc = OAuthError.from_response("slow_down")
    assert type(exc) is OAuthError
    assert exc.code == "oauth.error"
    assert exc.error == "slow_down"
    assert exc.message == "the authorization server answered 'slow_down'"
    assert exc.details == {"error": "slow_down"}


def test_subclass_default_error_code() -> None:
    assert InvalidGrant("dead").error == "invalid_grant"
    assert OAuthError("odd").error == "unknown_error"


def test_registry_holds_exactly_the_rfc_codes() -> None:
    assert OAuthError.registry == dict(REGISTERED)


@pytest.fixture
def registry_snapshot() -> Iterator[None]:
    saved = dict(OAuthError.registry)
    yield
    OAuthError.registry.clear()
    OAuthError.registry.update(saved)


@pytest.mark.usefixtures("registry_snapshot")
def test_subclass_of_a_registered_error_does_not_take_its_code() -> None:
    class ExpiredRefreshToken(InvalidGrant):
        code = "test.expired_refresh_token"

    assert OAuthError.registry["invalid_grant"] is InvalidGrant
    assert type(OAuthError.from_response("invalid_grant")) is InvalidGrant
    assert ExpiredRefreshToken("x").error == "invalid_grant"


@pytest.mark.usefixtures("registry_snapshot")
def test_new_subclass_with_its_own_code_registers() -> None:
    class SlowDown(OAuthError):
        code = "test.slow_down"
        oauth_code = "slow_down"

    assert type(OAuthError.from_response("slow_down")) is SlowDown


SECRET = "s3cr3t-refresh-token-value"


def test_to_dict_of_an_oauth_error_has_no_request_secrets() -> None:
    # The AS's answer is data; the request's secrets are never passed to the error.
    exc = OAuthError.from_response("invalid_grant", "refresh token expired")
    text = json.dumps(exc.to_dict())
    assert SECRET not in text
    assert set(exc.to_dict()) == {"code", "message", "details"}
    assert set(exc.to_dict()["details"]) == {"error", "error_description"}


@pytest.mark.parametrize("klass", ALL)
def test_to_dict_carries_only_the_documented_keys(klass: type[TetherError]) -> None:
    exc = klass("m", server="s", step="t", hint="h")
    out = exc.to_dict()
    assert set(out) <= {"code", "message", "server", "step", "hint", "details"}
    assert out["code"] == klass.code
    json.dumps(out)
