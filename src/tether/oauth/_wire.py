"""Private helpers shared by the ``oauth`` modules: decoding response bodies, URL checks.

Every body that reaches ``oauth/`` was fetched by ``net/`` with a size cap, so these
functions only decide what the bytes *mean*. They never put body text, tokens or secrets
into an error message; they name the URL and what was wrong with the shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from tether.errors import RemoteError

__all__ = [
    "MAX_JSON_DEPTH",
    "JSONTooDeep",
    "decode_form_or_json",
    "decode_json_object",
    "first_str",
    "is_http_url",
    "load_json",
    "looks_like_html",
    "media_type",
]

MAX_JSON_DEPTH: Final = 64
"""Deepest nesting of arrays and objects accepted in a remote JSON document.

OAuth and MCP metadata nest a few levels; Python's parser recurses per level and raises
``RecursionError`` (not ``ValueError``) near 1,000, so depth is checked before parsing."""

# One token per match, scanned left to right: a complete string (skipped, so brackets
# inside strings do not count), an opening or closing bracket, or a lone quote that
# starts an unterminated string (the document is invalid; the parser will say so).
_JSON_TOKENS: Final = re.compile(r'"(?:[^"\\]|\\.)*+"|[\[{]|[\]}]|"')


class JSONTooDeep(ValueError):
    """A JSON document nests deeper than allowed (a ``ValueError``, like bad JSON)."""


def load_json(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses documents nested deeper than ``max_depth``.

    Every JSON document from a remote party goes through this, so hostile nesting
    fails as a ``ValueError`` (which callers already treat as "not valid JSON") instead
    of a ``RecursionError``. The check is one linear regex scan.

    Args:
        data: The document (``bytes`` must be UTF-8, as RFC 8259 §8.1 requires).
        max_depth: Deepest nesting of arrays and objects accepted.

    Returns:
        The decoded value.

    Raises:
        ValueError: Not UTF-8 (``UnicodeDecodeError``), not JSON, or
            :class:`JSONTooDeep`.
    """
    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        lexeme = match.group()
        if lexeme in "[{":
            depth += 1
            if depth > max_depth:
                raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels")
        elif lexeme in "]}":
            depth -= 1
        elif lexeme == '"':
            break  # an unterminated string: json.loads refuses the document
    return json.loads(text)


def media_type(content_type: str | None) -> str:
    """Return the lower-cased media type of a ``Content-Type`` value, without params."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def looks_like_html(body: bytes, content_type: str | None) -> bool:
    """Whether a body is an HTML page (by media type, or a leading doctype/``<html>``)."""
    if media_type(content_type) in ("text/html", "application/xhtml+xml"):
        return True
    head = body.lstrip()[:15].lower()
    return head.startswith((b"<!doctype", b"<html"))


def decode_json_object(
    body: bytes,
    content_type: str | None,
    *,
    url: str,
    error: type[RemoteError],
    what: str,
    step: str,
) -> dict[str, Any]:
    """Decode a JSON object body, tolerating a missing or generic content type.

    Args:
        body: The raw response body.
        content_type: The ``Content-Type`` header, if any.
        url: Where the body came from (named in error messages).
        error: The exception class to raise on failure.
        what: What the body should be, e.g. ``"protected resource metadata"``.
        step: The flow step, for the error.

    Returns:
        The decoded JSON object.

    Raises:
        RemoteError: ``error`` when the body is HTML, not JSON, or not a JSON object.
    """
    if looks_like_html(body, content_type):
        raise error(f"got HTML where JSON {what} was expected", server=url, step=step)
    try:
        value = load_json(body)
    except JSONTooDeep as exc:
        raise error(
            f"got JSON nested deeper than {MAX_JSON_DEPTH} levels ({what})",
            server=url,
            step=step,
        ) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise error(
            f"got a body that is not valid JSON ({what})", server=url, step=step
        ) from exc
    if not isinstance(value, dict):
        raise error(f"got JSON that is not an object ({what})", server=url, step=step)
    return value


def decode_form_or_json(
    body: bytes,
    content_type: str | None,
    *,
    url: str,
    error: type[RemoteError],
    what: str,
    step: str,
) -> dict[str, Any]:
    """Decode a JSON object, or an ``application/x-www-form-urlencoded`` body.

    Some token endpoints (GitHub) answer form-encoded unless asked for JSON (TOK-4).

    Args:
        body: The raw response body.
        content_type: The ``Content-Type`` header, if any.
        url: Where the body came from (named in error messages).
        error: The exception class to raise on failure.
        what: What the body should be.
        step: The flow step, for the error.

    Returns:
        The decoded members; form values are strings.

    Raises:
        RemoteError: ``error`` when the body cannot be decoded.
    """
    if media_type(content_type) == "application/x-www-form-urlencoded":
        try:
            text = body.decode("utf-8")
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
        except (UnicodeDecodeError, ValueError) as exc:
            raise error(
                f"got a form body that cannot be decoded ({what})",
                server=url,
                step=step,
            ) from exc
        return dict(pairs)
    return decode_json_object(
        body, content_type, url=url, error=error, what=what, step=step
    )


def is_http_url(value: str, *, allow_http: bool) -> bool:
    """Whether ``value`` is an absolute ``https`` (or allowed ``http``) URL with a host.

    Userinfo and fragments are refused: neither belongs in an OAuth endpoint.
    """
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    schemes = ("https", "http") if allow_http else ("https",)
    return (
        parts.scheme in schemes
        and bool(parts.hostname)
        and "@" not in parts.netloc
        and not parts.fragment
        and "#" not in value
    )


def first_str(members: Mapping[str, Any], name: str) -> str | None:
    """Return ``members[name]`` when it is a non-empty string, else ``None``."""
    value = members.get(name)
    return value if isinstance(value, str) and value else None
