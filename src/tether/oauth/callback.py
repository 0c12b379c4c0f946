"""The authorization response at Tether's callback: ``state``, ``iss``, ``error``, ``code``.

RFC 6749 §4.1.2, §4.1.2.1; RFC 9207 §2.4; RFC 9700 §2.1, §4.4; MCP 2026-07-28
*Authorization*; requirements.md CB-1 – CB-5.

Order of checks, each before the next is looked at:

1. ``state`` names a pending authorization that was taken (atomically, by the hub) —
   otherwise nothing else in the response can be trusted (CB-1).
2. The ``iss`` table (CB-2), comparing by simple string equality after form-decoding,
   without case-folding or any normalisation (CB-3; RFC 3986 §6.2.1). There is no
   override:

   ========================================  ============  ==========================
   ``..._iss_parameter_supported``           ``iss``       action
   ========================================  ============  ==========================
   true                                      present       compare with the issuer
   true                                      absent        reject
   false / absent                            present       compare (MCP 2026-07-28)
   false / absent                            absent        proceed
   ========================================  ============  ==========================

   On a mismatch ``error``, ``error_description`` and ``error_uri`` are never read (CB-4).
3. ``error`` → the typed :class:`~tether.errors.OAuthError` for the code (CB-5).
4. ``code`` must be present and non-empty (G-6).

The query parameters arrive already form-decoded, with every value of a repeated
parameter kept (:func:`parse_callback_query`); a parameter given more than once is
refused (RFC 6749 §3.1: MUST NOT be included more than once). A parser that keeps only
one value (``dict(parse_qsl(...))``) would hide the repetition from this check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl

from tether.errors import CallbackRejected, OAuthError

__all__ = [
    "CallbackParams",
    "callback_state",
    "parse_callback_query",
    "validate_callback",
]

CallbackParams = Mapping[str, str | Sequence[str]]


def parse_callback_query(query: str) -> dict[str, str | list[str]]:
    """Form-decode a callback's query string, keeping every value of a repeated name.

    A name given once maps to its value; a name given more than once maps to the list
    of its values, in order, so :func:`validate_callback` can refuse it (RFC 6749 §3.1).

    Args:
        query: The query component, without the ``?``.

    Returns:
        The parameters.
    """
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        values.setdefault(name, []).append(value)
    return {name: v[0] if len(v) == 1 else v for name, v in values.items()}


def _single(params: CallbackParams, name: str) -> str | None:
    value = params.get(name)
    if value is None or isinstance(value, str):
        return value
    if len(value) != 1:
        raise CallbackRejected(
            f"the callback carries {name!r} {len(value)} times (RFC 6749 §3.1)",
            step="callback",
        )
    return value[0]


def callback_state(params: CallbackParams) -> str:
    """Return the ``state`` to look the pending authorization up by (CB-1).

    Args:
        params: The decoded callback query parameters.

    Returns:
        The ``state`` value.

    Raises:
        CallbackRejected: ``state`` is missing, empty or repeated.
    """
    state = _single(params, "state")
    if not state:
        raise CallbackRejected(
            "the callback has no state; start the connection again",
            step="callback",
        )
    return state


def validate_callback(
    params: CallbackParams,
    *,
    pending_found: bool,
    expected_issuer: str | None,
    iss_parameter_supported: bool,
) -> str:
    """Validate an authorization response and return its ``code``.

    Args:
        params: The decoded callback query parameters.
        pending_found: Whether the hub took a pending authorization for ``state`` (and
            it was bound to this user and session, unexpired, unused).
        expected_issuer: The issuer recorded in the pending authorization; ``None``
            only when ``pending_found`` is false.
        iss_parameter_supported: The AS metadata's
            ``authorization_response_iss_parameter_supported``, as recorded.

    Returns:
        The authorization code.

    Raises:
        CallbackRejected: Unknown state, ``iss`` missing or different, or no ``code``.
        OAuthError: The AS returned ``error`` (a subclass per code, e.g.
            :class:`~tether.errors.AccessDenied`), after ``iss`` passed.
    """
    if not pending_found or expected_issuer is None:
        raise CallbackRejected(
            "the callback's state is unknown, expired or already used; "
            "start the connection again",
            step="callback",
        )
    _check_iss(_single(params, "iss"), expected_issuer, iss_parameter_supported)
    error = _single(params, "error")
    if error is not None:
        raise OAuthError.from_response(
            error,
            _single(params, "error_description"),
            _single(params, "error_uri"),
            server=expected_issuer,
            step="callback",
        )
    code = _single(params, "code")
    if not code:
        raise CallbackRejected(
            "the callback has neither a code nor an error (RFC 6749 §4.1.2)",
            server=expected_issuer,
            step="callback",
        )
    return code


def _check_iss(iss: str | None, expected: str, supported: bool) -> None:
    """RFC 9207 §2.4 and MCP 2026-07-28: the table in the module docstring."""
    if iss is None:
        if supported:
            raise CallbackRejected(
                "the authorization server advertises the iss parameter but the "
                "callback has none (RFC 9207 §2.4); the response was discarded",
                server=expected,
                step="callback",
            )
        return
    if iss != expected:
        # CB-4: say nothing about error/error_description; they may be an attacker's.
        raise CallbackRejected(
            "the callback's iss does not match the authorization server the request "
            "was sent to (RFC 9207 §2.4); the response was discarded",
            server=expected,
            step="callback",
            details={"iss": iss},
        )
