"""Property: whatever an authorization server sends, only a TetherError escapes.

Covers every ``oauth/`` parser of remote input: ``WWW-Authenticate`` challenges,
protected resource and authorization server metadata (and the ``resource`` check), token,
token exchange, registration and revocation responses, ``Retry-After``, and callback
parameters.
"""

from __future__ import annotations

import contextlib
import unicodedata
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fuzz.strategies import (
    CONTENT_TYPES,
    NASTY_TEXT,
    bodies,
    json_values,
    objects_with,
    scalars,
    texts,
)
from tether.errors import TetherError, clean_text
from tether.oauth._wire import load_json
from tether.oauth.callback import callback_state, validate_callback
from tether.oauth.challenge import bearer_challenge, parse_www_authenticate
from tether.oauth.discovery import (
    Fetched,
    authorization_server_discovery,
    authorization_server_metadata_urls,
    legacy_authorization_server_discovery,
    protected_resource_discovery,
    protected_resource_metadata_urls,
)
from tether.oauth.dpop import (
    dpop_proof,
    dpop_wanted,
    generate_key,
    nonce_challenge,
    token_nonce_error,
)
from tether.oauth.models import (
    check_authorization_server_metadata,
    parse_authorization_server_metadata,
    parse_protected_resource_metadata,
)
from tether.oauth.registration import parse_registration_response
from tether.oauth.resource import check_resource
from tether.oauth.revocation import check_revocation_response, retry_after_seconds
from tether.oauth.token_exchange import ID_JAG_TOKEN_TYPE, parse_id_jag_response
from tether.oauth.tokens import parse_token_response

NOW = datetime(2026, 1, 1, tzinfo=UTC)
URLS = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.sampled_from(
        ["https://as.example", "https://as.example/", "http://127.0.0.1:9"]
    ),
    texts.map(lambda t: "https://as.example/" + t),
    texts.map(lambda t: "https://" + t + "/mcp"),
)
STATUSES = st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 429, 500, 503, 999])

# --------------------------------------------------------------------- challenges

CHALLENGE_ALPHABET = st.sampled_from(
    [
        *list(' \t,="\\='),
        "Bearer",
        "DPoP",
        "Basic",
        "realm",
        "scope",
        "error",
        "resource_metadata",
        "insufficient_scope",
        "é",
        "\r\n",
        "\x00",
    ]
)
HEADERS = st.one_of(
    texts,
    st.lists(CHALLENGE_ALPHABET, max_size=40).map("".join),
    st.lists(
        st.tuples(st.sampled_from(["realm", "scope", "error", "x", ""]), texts)
    ).map(lambda pairs: "Bearer " + ", ".join(f'{k}="{v}"' for k, v in pairs)),
)


@given(st.one_of(HEADERS, st.lists(HEADERS, max_size=4)), st.booleans())
def test_www_authenticate(headers: str | list[str], strict: bool) -> None:
    with contextlib.suppress(TetherError):
        parse_www_authenticate(headers, strict=strict)
    challenge = bearer_challenge(headers)
    if challenge is not None and challenge.resource_metadata is not None:
        with contextlib.suppress(TetherError):
            protected_resource_metadata_urls(
                "https://mcp.example.com/mcp", challenge.resource_metadata
            )


@given(URLS, st.one_of(st.none(), URLS))
def test_metadata_urls(server_url: str, resource_metadata: str | None) -> None:
    with contextlib.suppress(TetherError):
        protected_resource_metadata_urls(server_url, resource_metadata)


# --------------------------------------------------------------------- metadata

PRM = objects_with(
    {
        "resource": URLS,
        "authorization_servers": st.lists(URLS, max_size=3),
        "scopes_supported": st.lists(texts, max_size=3),
        "bearer_methods_supported": st.lists(texts, max_size=3),
    }
)
AS = objects_with(
    {
        "issuer": URLS,
        "authorization_endpoint": URLS,
        "token_endpoint": URLS,
        "registration_endpoint": URLS,
        "revocation_endpoint": URLS,
        "code_challenge_methods_supported": st.lists(
            st.sampled_from(["S256", "plain", ""]), max_size=3
        ),
        "response_types_supported": st.lists(texts, max_size=3),
        "grant_types_supported": st.lists(texts, max_size=3),
        "token_endpoint_auth_methods_supported": st.lists(texts, max_size=3),
        "authorization_response_iss_parameter_supported": scalars,
        "client_id_metadata_document_supported": scalars,
        "dpop_signing_alg_values_supported": st.lists(texts, max_size=3),
    }
)


@given(bodies(PRM), CONTENT_TYPES, URLS, st.sampled_from(["exact", "prefix"]))
def test_protected_resource_metadata(
    body: bytes, content_type: str, expected: str, match: Any
) -> None:
    with contextlib.suppress(TetherError):
        metadata = parse_protected_resource_metadata(
            body, content_type, url="https://mcp.example/.well-known/x"
        )
        check_resource(metadata.resource, expected, match=match)


@given(bodies(AS), CONTENT_TYPES, URLS, st.booleans(), st.booleans())
def test_authorization_server_metadata(
    body: bytes, content_type: str, issuer: str, lenient: bool, slash: bool
) -> None:
    with contextlib.suppress(TetherError):
        metadata = parse_authorization_server_metadata(
            body, content_type, url="https://as.example/.well-known/x"
        )
        check_authorization_server_metadata(
            metadata,
            expected_issuer=issuer,
            allow_missing_pkce_metadata=lenient,
            allow_http=lenient,
            issuer_trailing_slash=slash,
        )


# --------------------------------------------------------------------- tokens

TOKEN = objects_with(
    {
        "access_token": texts,
        "refresh_token": texts,
        "token_type": st.sampled_from(["Bearer", "bearer", "DPoP", "mac", "N_A", ""]),
        "expires_in": st.one_of(scalars, st.sampled_from(NASTY_TEXT)),
        "scope": texts,
        "error": st.one_of(
            texts, st.sampled_from(["invalid_grant", "invalid_refresh_token"])
        ),
        "error_description": texts,
        "error_uri": texts,
        "issued_token_type": st.sampled_from([ID_JAG_TOKEN_TYPE, "x"]),
        "ok": st.booleans(),
    }
)


@given(STATUSES, bodies(TOKEN), CONTENT_TYPES, st.booleans())
def test_token_response(
    status: int, body: bytes, content_type: str, dpop: bool
) -> None:
    with contextlib.suppress(TetherError):
        tokens = parse_token_response(
            status,
            body,
            content_type,
            now=NOW,
            url="https://as.example/token",
            requested_scopes=("a",),
            dpop=dpop,
        )
        token = tokens.access_token.get_secret_value()
        assert token.isascii()
        assert token.isprintable()
        assert " " not in token
        assert len(token) <= 16 * 1024


@given(STATUSES, bodies(TOKEN), CONTENT_TYPES)
def test_token_exchange_response(status: int, body: bytes, content_type: str) -> None:
    with contextlib.suppress(TetherError):
        parse_id_jag_response(status, body, content_type, url="https://idp.example/t")


@given(STATUSES, bodies(TOKEN), CONTENT_TYPES, st.one_of(st.none(), texts))
def test_revocation_response(
    status: int, body: bytes, content_type: str, retry_after: str | None
) -> None:
    with contextlib.suppress(TetherError):
        check_revocation_response(
            status, body, content_type, url="https://as.example/revoke"
        )
    wait = retry_after_seconds(retry_after, now=NOW)
    assert wait is None or 0 <= wait <= 86_400


REGISTRATION = objects_with(
    {
        "client_id": texts,
        "client_secret": texts,
        "token_endpoint_auth_method": st.sampled_from(
            [
                "none",
                "client_secret_post",
                "client_secret_basic",
                "private_key_jwt",
                "x",
            ]
        ),
        "redirect_uris": st.lists(
            st.one_of(texts, st.just("http://127.0.0.1:8470/callback")), max_size=3
        ),
        "client_secret_expires_at": st.one_of(scalars, st.integers()),
        "client_id_issued_at": st.one_of(scalars, st.integers()),
        "error": texts,
        "error_description": texts,
    }
)


@given(
    STATUSES,
    bodies(REGISTRATION),
    CONTENT_TYPES,
    st.sampled_from(["none", "client_secret_post"]),
)
def test_registration_response(
    status: int, body: bytes, content_type: str, method: str
) -> None:
    with contextlib.suppress(TetherError):
        parse_registration_response(
            status,
            body,
            content_type,
            url="https://as.example/register",
            redirect_uri="http://127.0.0.1:8470/callback",
            requested_auth_method=method,
        )


# --------------------------------------------------------------------- callback

PARAM_VALUES = st.one_of(texts, st.lists(texts, max_size=3))
CALLBACK = st.dictionaries(
    st.one_of(
        st.sampled_from(
            ["code", "state", "iss", "error", "error_description", "error_uri"]
        ),
        texts,
    ),
    PARAM_VALUES,
    max_size=6,
)


@given(CALLBACK, st.booleans(), st.one_of(st.none(), URLS), st.booleans())
def test_callback_parameters(
    params: dict[str, Any], found: bool, issuer: str | None, iss_supported: bool
) -> None:
    with contextlib.suppress(TetherError):
        callback_state(params)
    with contextlib.suppress(TetherError):
        validate_callback(
            params,
            pending_found=found,
            expected_issuer=issuer,
            iss_parameter_supported=iss_supported,
        )


# --------------------------------------------------------------------- JSON itself


@given(st.one_of(bodies(json_values()), st.binary(max_size=300)))
def test_load_json_only_raises_value_errors(body: bytes) -> None:
    with contextlib.suppress(ValueError):
        load_json(body)


# --------------------------------------------------------------------- discovery drivers

ANSWERS = st.lists(
    st.builds(
        Fetched,
        status=STATUSES,
        content_type=st.one_of(st.none(), CONTENT_TYPES),
        body=st.one_of(bodies(PRM), bodies(AS)),
    ),
    min_size=1,
    max_size=4,
)


def drive(flow: Generator[str, Fetched, Any], answers: list[Fetched]) -> None:
    """Feed the answers to a discovery driver until it returns or raises."""
    with contextlib.suppress(TetherError, StopIteration):
        next(flow)
        for answer in answers * 3:
            flow.send(answer)


@given(st.one_of(st.none(), URLS), ANSWERS, st.sampled_from(["exact", "prefix"]))
def test_protected_resource_discovery(
    challenged: str | None, answers: list[Fetched], match: Any
) -> None:
    drive(
        protected_resource_discovery(
            "https://mcp.example.com/mcp",
            resource_metadata=challenged,
            resource_match=match,
        ),
        answers,
    )


@given(URLS, ANSWERS, st.booleans())
def test_authorization_server_discovery(
    issuer: str, answers: list[Fetched], lenient: bool
) -> None:
    with contextlib.suppress(TetherError):
        authorization_server_metadata_urls(issuer)
    drive(
        authorization_server_discovery(
            issuer, allow_missing_pkce_metadata=lenient, allow_http=lenient
        ),
        answers,
    )
    drive(legacy_authorization_server_discovery("https://mcp.example.com/mcp"), answers)


# --------------------------------------------------------------------- DPoP

KEY = generate_key()


@given(
    st.lists(HEADERS, max_size=3),
    st.one_of(st.none(), texts),
    st.one_of(json_values(), st.just({"error": "use_dpop_nonce"})),
    st.one_of(json_values(), st.lists(texts, max_size=3)),
    st.sampled_from(["never", "auto", "always"]),
)
def test_dpop_nonces_and_algorithms(
    challenges: list[str], nonce: str | None, members: Any, algs: Any, mode: Any
) -> None:
    with contextlib.suppress(TetherError):
        dpop_wanted(mode, algs, issuer="https://as.example")
    found = [nonce_challenge(challenges, nonce)]
    with contextlib.suppress(TetherError):
        found.append(token_nonce_error(members, nonce, url="https://as.example/t"))
    for value in found:
        if value is not None:  # the nonce goes into a signed proof, as received
            dpop_proof(
                KEY,
                method="POST",
                url="https://as.example/t",
                now=NOW,
                jti=b"\x00" * 16,
                nonce=value,
            )


# --------------------------------------------------------------------- remote text


@given(
    st.one_of(texts, st.lists(st.sampled_from(NASTY_TEXT), max_size=20).map("".join)),
    st.integers(1, 600),
    st.booleans(),
)
def test_clean_text_leaves_nothing_a_terminal_acts_on(
    text: str, limit: int, keep_newlines: bool
) -> None:
    cleaned = clean_text(text, limit=limit, keep_newlines=keep_newlines)
    assert len(cleaned) <= limit
    allowed = "\n\t" if keep_newlines else ""
    assert all(unicodedata.category(c) not in ("Cc",) or c in allowed for c in cleaned)
    assert not any(
        0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 for c in cleaned
    )
