"""Admin-configured extra parameters for authorization and token requests.

Design-notes R3.6 rule 8; gap G-5; requirements.md AUTHZ-6.

An admin object is overlaid on the defaults; a ``None`` value (JSON ``null``) removes a
default, so ``{"resource": None}`` drops the resource indicator (the ``omit_resource``
override) and ``{"prompt": None}`` drops ``prompt``. Parameters that carry the protocol's
security can never be added, replaced or removed: those keys are refused when the admin
saves them (:func:`check_custom_params`, a field error) and again at merge time
(:func:`merge_params`, a configuration error), compared case-insensitively.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from tether.errors import ConfigurationError, ValidationFailed

__all__ = [
    "PROTECTED_AUTHORIZATION_PARAMS",
    "PROTECTED_TOKEN_PARAMS",
    "ParamKind",
    "check_custom_params",
    "merge_params",
]

ParamKind = Literal["authorization", "token"]

_CLIENT = frozenset(
    {"client_id", "client_secret", "client_assertion", "client_assertion_type"}
)

PROTECTED_AUTHORIZATION_PARAMS: frozenset[str] = _CLIENT | {
    "response_type",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
}
"""RFC 6749 §4.1.1 and RFC 7636 §4.3 parameters no admin value may touch."""

PROTECTED_TOKEN_PARAMS: frozenset[str] = _CLIENT | {
    "grant_type",
    "code",
    "code_verifier",
    "redirect_uri",
    "refresh_token",
}
"""RFC 6749 §4.1.3, §6 and RFC 7636 §4.5 parameters no admin value may touch."""

_PROTECTED: Mapping[ParamKind, frozenset[str]] = {
    "authorization": PROTECTED_AUTHORIZATION_PARAMS,
    "token": PROTECTED_TOKEN_PARAMS,
}
_FIELD: Mapping[ParamKind, str] = {
    "authorization": "authorization_params",
    "token": "token_params",
}


def _refused(custom: Mapping[str, str | None], kind: ParamKind) -> list[str]:
    return sorted(k for k in custom if k.strip().lower() in _PROTECTED[kind])


def check_custom_params(custom: Mapping[str, str | None], *, kind: ParamKind) -> None:
    """Refuse protected keys when an admin saves custom params (G-5).

    Args:
        custom: The admin's object.
        kind: ``authorization`` or ``token``.

    Raises:
        ValidationFailed: A protected key is present; the field error names it.
    """
    refused = _refused(custom, kind)
    if refused:
        field = _FIELD[kind]
        raise ValidationFailed(
            f"{field} may not set or remove {', '.join(refused)}",
            fields={field: f"protected parameter(s): {', '.join(refused)}"},
        )


def merge_params(
    defaults: Mapping[str, str],
    custom: Mapping[str, str | None] | None,
    *,
    kind: ParamKind,
) -> dict[str, str]:
    """Overlay custom params on the defaults; ``None`` removes a key.

    Args:
        defaults: Tether's parameters for the request.
        custom: The admin's object (``None`` or empty leaves the defaults unchanged).
        kind: ``authorization`` or ``token``, selecting the protected set.

    Returns:
        The merged parameters, defaults first, then added keys in the admin's order.

    Raises:
        ConfigurationError: ``custom`` names a protected key (it should have been
            refused at save time).
    """
    if not custom:
        return dict(defaults)
    refused = _refused(custom, kind)
    if refused:
        raise ConfigurationError(
            f"the server's {_FIELD[kind]} try to set or remove protected parameter(s) "
            f"{', '.join(refused)}",
            hint=f"remove {', '.join(refused)} from the server's {_FIELD[kind]}",
            details={"params": refused},
        )
    merged: dict[str, str] = dict(defaults)
    for key, value in custom.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
