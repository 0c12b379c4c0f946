"""Keyset pagination for the store's listings (issue 9).

A listing returns a :class:`Page`: at most ``limit`` records in a stable order and an
opaque cursor for the page after the last one. The cursor holds the sort key of the last
record returned, so the next page starts strictly after it (keyset, not offset): a page
costs the same however deep it is, and records added or removed meanwhile shift nothing.
Orders: servers by (case-folded name, id); connections by (server id, subject); audit
events newest first by id.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from tether.errors import ValidationFailed

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Page",
    "check_limit",
    "decode_cursor",
    "encode_cursor",
    "paged",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

T = TypeVar("T")
Key = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing.

    Attributes:
        items: The records, in the listing's order.
        next: The cursor to pass as ``after`` for the following page; ``None`` when
            this is the last page.
    """

    items: list[T]
    next: str | None = None


def check_limit(limit: int) -> int:
    """``limit`` if it is 1 … :data:`MAX_LIMIT`.

    Raises:
        ValidationFailed: Out of range.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(
            f"limit must be between 1 and {MAX_LIMIT}", fields={"limit": str(limit)}
        )
    return limit


def encode_cursor(key: Key) -> str:
    """An opaque cursor for a sort key."""
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, kinds: Sequence[type]) -> Key:
    """The sort key in a cursor made by :func:`encode_cursor` for this listing.

    Args:
        cursor: The ``after`` value a caller passed.
        kinds: The type of each part of the listing's key (``str`` or ``int``).

    Raises:
        ValidationFailed: Not a cursor of this listing.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        parts = None
    if (
        not isinstance(parts, list)
        or len(parts) != len(kinds)
        or not all(type(part) is kind for part, kind in zip(parts, kinds, strict=True))
    ):
        raise ValidationFailed(
            "the cursor is not one this listing returned",
            fields={"after": "invalid cursor"},
            hint="pass the 'next' value of the previous page",
        )
    return tuple(parts)


def paged(items: Sequence[T], limit: int, key_of: Callable[[T], Key]) -> Page[T]:
    """A page from up to ``limit + 1`` fetched records (one more tells a next exists).

    Args:
        items: The records fetched, in order, at most ``limit + 1``.
        limit: The page size.
        key_of: The sort key of a record.
    """
    if len(items) <= limit:
        return Page(list(items))
    kept = list(items[:limit])
    return Page(kept, encode_cursor(key_of(kept[-1])))
