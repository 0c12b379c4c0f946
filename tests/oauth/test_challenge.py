"""Tests for tether.oauth.challenge (PRM-2, RFC 7235 §4.1, RFC 6750 §3, RFC 9728 §5.1)."""

from __future__ import annotations

import pytest

from tether.errors import InvalidResponse
from tether.oauth.challenge import (
    BearerChallenge,
    Challenge,
    bearer_challenge,
    parse_www_authenticate,
)

RM = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"


def ch(scheme: str, token68: str | None = None, **params: str) -> Challenge:
    return Challenge(scheme=scheme, params=params, token68=token68)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ("Bearer", [ch("bearer")]),
        ("bearer  ", [ch("bearer")]),
        ('Bearer realm="mcp"', [ch("bearer", realm="mcp")]),
        (
            f'Bearer resource_metadata="{RM}", scope="files:read files:write"',
            [ch("bearer", resource_metadata=RM, scope="files:read files:write")],
        ),
        # token values, BWS around "=", case-insensitive names
        (
            'BEARER Error = invalid_token ,ERROR_DESCRIPTION="expired"',
            [ch("bearer", error="invalid_token", error_description="expired")],
        ),
        # backslash escapes inside quoted-string (RFC 9110 §5.6.4)
        (
            r'Bearer error_description="say \"hi\" \\ bye"',
            [ch("bearer", error_description='say "hi" \\ bye')],
        ),
        # commas inside quoted strings do not split
        ('Bearer scope="a,b", realm="x"', [ch("bearer", scope="a,b", realm="x")]),
        # several challenges in one value, token68 with padding, empty list elements
        (
            'Basic YWxhZGRpbjpvcGVuc2VzYW1l==, , Bearer realm="r", error=invalid_token',
            [
                ch("basic", token68="YWxhZGRpbjpvcGVuc2VzYW1l=="),
                ch("bearer", realm="r", error="invalid_token"),
            ],
        ),
        (
            'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="x"',
            [
                ch("newauth", realm="apps", type="1", title='Login to "apps"'),
                ch("basic", realm="x"),
            ],
        ),
        # token68 chars that are not tchars
        ("Negotiate a+b/c=", [ch("negotiate", token68="a+b/c=")]),
        ("Negotiate abc, Bearer", [ch("negotiate", token68="abc"), ch("bearer")]),
        # "name=" with no value is a token68, per the grammar
        ("Bearer realm=", [ch("bearer", token68="realm=")]),
        # several header values, in order
        (
            ['Basic realm="a"', 'Bearer scope="mcp"'],
            [ch("basic", realm="a"), ch("bearer", scope="mcp")],
        ),
        ([], []),
        ("", []),
        (" , ", []),
    ],
)
def test_parse_www_authenticate(
    headers: str | list[str], expected: list[Challenge]
) -> None:
    assert list(parse_www_authenticate(headers, strict=True)) == expected


@pytest.mark.parametrize(
    ("header", "lenient", "reason"),
    [
        ('Bearer realm="open', [], "unterminated quoted-string"),
        ('Bearer realm="x\\', [], "backslash at end"),
        ("Bearer a=b, c=", [], "has no value"),
        ('Bearer realm="a", realm="b"', [], "repeated"),
        ('Bearer realm="a" scope="b"', [], "after auth-param"),
        ('Basic realm="a", Bearer realm="b" x', [ch("basic", realm="a")], "after"),
        ('="x"', [], "expected an auth-scheme"),
        ('Bearer"x"', [], "after scheme"),
    ],
)
def test_malformed_headers(header: str, lenient: list[Challenge], reason: str) -> None:
    assert list(parse_www_authenticate(header)) == lenient
    with pytest.raises(InvalidResponse, match=reason) as info:
        parse_www_authenticate(header, strict=True)
    assert info.value.step == "challenge"


def test_lenient_parsing_continues_with_the_next_header_value() -> None:
    headers = ['Basic realm="open', 'Bearer scope="mcp"']
    assert parse_www_authenticate(headers) == (ch("bearer", scope="mcp"),)


def test_challenge_params_are_read_only() -> None:
    (challenge,) = parse_www_authenticate('Bearer realm="x"')
    with pytest.raises(TypeError):
        challenge.params["realm"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            f'Basic realm="x", Bearer error="insufficient_scope", scope="a b", '
            f'resource_metadata="{RM}", error_description="need b", '
            'error_uri="https://e.example/doc", realm="mcp"',
            BearerChallenge(
                realm="mcp",
                scope=("a", "b"),
                error="insufficient_scope",
                error_description="need b",
                error_uri="https://e.example/doc",
                resource_metadata=RM,
            ),
        ),
        ("Bearer", BearerChallenge()),
        (['Basic realm="x"', "Bearer scope=mcp"], BearerChallenge(scope=("mcp",))),
        ('Basic realm="x"', None),
        ("", None),
    ],
)
def test_bearer_challenge_from_headers(
    headers: str | list[str], expected: BearerChallenge | None
) -> None:
    assert bearer_challenge(headers) == expected


def test_bearer_challenge_from_parsed_challenges() -> None:
    parsed = parse_www_authenticate('Basic realm="x", Bearer scope="s"')
    assert bearer_challenge(parsed) == BearerChallenge(scope=("s",))
    assert bearer_challenge([]) is None
