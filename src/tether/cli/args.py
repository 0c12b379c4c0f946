"""Parsing of repeated command-line values shared by several commands."""

from __future__ import annotations

from tether.errors import UsageError

__all__ = ["param_pairs"]


def param_pairs(pairs: list[str], removed: list[str]) -> dict[str, str | None]:
    """Turn ``NAME=VALUE`` options and removed names into custom OAuth params.

    A removed name maps to ``None``, which drops a default such as ``resource``.

    Raises:
        UsageError: An option is not ``NAME=VALUE``.
    """
    out: dict[str, str | None] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"'{pair}' is not NAME=VALUE")
        out[key] = value
    out.update(dict.fromkeys(removed))
    return out
