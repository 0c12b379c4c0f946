"""``WWW-Authenticate`` challenges (RFC 7235 §4.1, RFC 6750 §3, RFC 9728 §5.1).

A real auth-param parser, not a regex (PRM-2): several challenges per header value and
several header values, case-insensitive scheme and parameter names, ``token`` and
``quoted-string`` values with backslash escapes (RFC 9110 §5.6.4), and ``token68``
credentials (RFC 7235 §2.1).

Grammar (RFC 7235 §4.1 with RFC 9110 §5.6.1 lists)::

    WWW-Authenticate = 1#challenge
    challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
    auth-param       = token BWS "=" BWS ( token / quoted-string )

Servers send malformed headers in practice, so by default a syntax error ends parsing of
that one header value and keeps the challenges already complete; ``strict=True`` raises
instead. Left out: ``Proxy-Authenticate`` specifics (same grammar, not used by MCP).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tether.errors import InvalidResponse

__all__ = [
    "BearerChallenge",
    "Challenge",
    "bearer_challenge",
    "parse_www_authenticate",
]

_TCHAR = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_TOKEN68 = frozenset(
    "-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_WS = " \t"


class Challenge(BaseModel):
    """One challenge: a scheme with either auth-params or a token68 (RFC 7235 §2.1).

    Attributes:
        scheme: The auth-scheme, lower-cased (scheme names are case-insensitive).
        params: Auth-params with lower-cased names and unescaped values.
        token68: The token68 form, when the challenge uses it instead of params.
    """

    model_config = ConfigDict(frozen=True)

    scheme: str
    params: Mapping[str, str] = Field(default_factory=dict, validate_default=True)
    token68: str | None = None

    @field_validator("params", mode="after")
    @classmethod
    def _read_only(cls, value: Mapping[str, str]) -> Mapping[str, str]:
        return MappingProxyType(dict(value))


class BearerChallenge(BaseModel):
    """The parameters of a ``Bearer`` challenge that Tether acts on.

    Attributes:
        realm: RFC 6750 §3 ``realm``.
        scope: RFC 6750 §3 ``scope``, split on spaces (empty when absent).
        error: RFC 6750 §3.1 ``invalid_request``, ``invalid_token``,
            ``insufficient_scope`` or another code.
        error_description: RFC 6750 §3 ``error_description``; remote text, escape it.
        error_uri: RFC 6750 §3 ``error_uri``.
        resource_metadata: RFC 9728 §5.1 URL of the protected resource metadata.
    """

    model_config = ConfigDict(frozen=True)

    realm: str | None = None
    scope: tuple[str, ...] = ()
    error: str | None = None
    error_description: str | None = None
    error_uri: str | None = None
    resource_metadata: str | None = None


class _SyntaxError(ValueError):
    pass


class _Parser:
    """A cursor over one header value."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.peek() and self.peek() in _WS:
            self.pos += 1

    def skip_list_separators(self) -> None:
        while self.peek() and self.peek() in _WS + ",":
            self.pos += 1

    def run(self, chars: frozenset[str]) -> str:
        start = self.pos
        while self.peek() and self.peek() in chars:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted_string(self) -> str:
        self.pos += 1  # opening quote
        out: list[str] = []
        while True:
            char = self.peek()
            if not char:
                raise _SyntaxError("unterminated quoted-string")
            self.pos += 1
            if char == '"':
                return "".join(out)
            if char == "\\":
                escaped = self.peek()
                if not escaped:
                    raise _SyntaxError("backslash at end of header")
                self.pos += 1
                char = escaped
            out.append(char)

    def at_auth_param(self) -> bool:
        """Look ahead for ``token BWS "="``, without consuming anything."""
        saved = self.pos
        try:
            if not self.run(_TCHAR):
                return False
            self.skip_ws()
            return self.peek() == "="
        finally:
            self.pos = saved

    def at_token68(self) -> bool:
        """Look ahead for ``token68`` followed by the end of the challenge."""
        saved = self.pos
        try:
            if not self.run(_TOKEN68):
                return False
            while self.peek() == "=":
                self.pos += 1
            self.skip_ws()
            return self.peek() in ("", ",")
        finally:
            self.pos = saved

    def auth_param(self) -> tuple[str, str]:
        name = self.run(_TCHAR).lower()
        self.skip_ws()
        self.pos += 1  # "=", guaranteed by at_auth_param()
        self.skip_ws()
        if self.peek() == '"':
            return name, self.quoted_string()
        value = self.run(_TCHAR)
        if not value:
            raise _SyntaxError(f"auth-param {name!r} has no value")
        return name, value

    def challenge(self) -> Challenge:
        scheme = self.run(_TCHAR)
        if not scheme:
            raise _SyntaxError(f"expected an auth-scheme at offset {self.pos}")
        if self.peek() not in ("", ",", *_WS):
            raise _SyntaxError(f"unexpected {self.peek()!r} after scheme {scheme!r}")
        self.skip_ws()
        # A token68 ends the challenge, so it never looks like ``name=value``.
        if self.at_token68():
            token68 = self.run(_TOKEN68) + self.run(frozenset("="))
            return Challenge(scheme=scheme.lower(), token68=token68)
        params: dict[str, str] = {}
        while self.at_auth_param():
            name, value = self.auth_param()
            if name in params:
                # RFC 7235 §2.1: each parameter name MUST only occur once per challenge.
                raise _SyntaxError(f"auth-param {name!r} repeated in one challenge")
            params[name] = value
            self.skip_ws()
            if self.peek() not in ("", ","):
                raise _SyntaxError(f"unexpected {self.peek()!r} after auth-param")
            self.skip_list_separators()
        return Challenge(scheme=scheme.lower(), params=params)

    def challenges(self) -> Iterable[Challenge]:
        self.skip_list_separators()
        while self.peek():
            yield self.challenge()
            self.skip_list_separators()


def parse_www_authenticate(
    values: str | Iterable[str], *, strict: bool = False
) -> tuple[Challenge, ...]:
    """Parse one or more ``WWW-Authenticate`` header values (RFC 7235 §4.1).

    Args:
        values: One header value, or every value of the header in order (a response may
            carry the header several times).
        strict: Raise on a syntax error instead of keeping what parsed before it.

    Returns:
        The challenges in order of appearance.

    Raises:
        InvalidResponse: With ``strict=True``, when a value is malformed.
    """
    if isinstance(values, str):
        values = (values,)
    found: list[Challenge] = []
    for value in values:
        parser = _Parser(value)
        try:
            for challenge in parser.challenges():
                found.append(challenge)
        except _SyntaxError as exc:
            if strict:
                raise InvalidResponse(
                    f"malformed WWW-Authenticate header: {exc}", step="challenge"
                ) from exc
    return tuple(found)


def bearer_challenge(
    challenges: str | Iterable[str] | Iterable[Challenge],
) -> BearerChallenge | None:
    """Return the first ``Bearer`` challenge's parameters (RFC 6750 §3, RFC 9728 §5.1).

    Args:
        challenges: Parsed challenges, or raw header value(s) to parse leniently.

    Returns:
        The Bearer parameters, or ``None`` when no Bearer challenge is present.
    """
    items = tuple(challenges) if not isinstance(challenges, str) else (challenges,)
    parsed = tuple(c for c in items if isinstance(c, Challenge))
    parsed += parse_www_authenticate(c for c in items if isinstance(c, str))
    for challenge in parsed:
        if challenge.scheme == "bearer":
            params = challenge.params
            return BearerChallenge(
                realm=params.get("realm"),
                scope=tuple(params.get("scope", "").split()),
                error=params.get("error"),
                error_description=params.get("error_description"),
                error_uri=params.get("error_uri"),
                resource_metadata=params.get("resource_metadata"),
            )
    return None
