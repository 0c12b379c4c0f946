"""Collision-free, provider-safe names for the tools of several MCP servers.

An LLM sees one flat list of functions; Tether routes each call back to a server and the
tool's original MCP name. The rule follows design-notes R3.15 step 5, tightened by
G-24:

1. Input tools are de-duplicated and sorted by ``(server slug, server name, server id,
   tool name)``, so the same set of tools gives the same names in any input order. Tools
   with a blank name are skipped.
2. Each name is made safe: Unicode is folded to ASCII where it has an ASCII base letter
   (``café`` → ``cafe``), any character outside ``[A-Za-z0-9_-]`` becomes ``_``, a name
   starting with a digit or ``-`` gets a ``_`` prefix, and a name with no letter or digit
   left becomes ``tool_<hash>``. The result matches ``^[A-Za-z_][A-Za-z0-9_-]{0,63}$``.
3. The candidate is the safe name. It becomes ``<server-slug>__<safe name>`` when the safe
   name occurs on more than one server (so no server is privileged by sort order), or
   when it is already taken.
4. While the candidate is taken, ``_2``, ``_3``, … are tried on the prefixed candidate
   (suffixes never pile up).
5. A name longer than 64 characters is cut and given ``_`` plus the first 8 hex digits of
   the SHA-256 of the untruncated text, before any numeric suffix, so two long names that
   share a prefix stay distinct and the result is stable across processes.

"Taken" is **case-insensitive**: reserved names (the host application's own tools) and
assigned names are compared in lower case, as the reference does, because a model that
sees both ``Search`` and ``search`` confuses them.

The slug of a server is its name lower-cased and reduced to ``[a-z0-9_]`` (runs of other
characters become one ``_``; ``My Docs!`` → ``my_docs``), or ``server_<id>`` when nothing
is left.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, NamedTuple

from tether.errors import NotFound

__all__ = [
    "MAX_NAME_LENGTH",
    "NAME_PATTERN",
    "ToolKey",
    "ToolNames",
    "ToolRef",
    "assign_tool_names",
    "safe_name",
    "server_slug",
]

MAX_NAME_LENGTH: Final = 64
NAME_PATTERN: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_HASH_LENGTH: Final = 8
_MAX_SCAN: Final = 1024  # characters of a name folded; longer names are cut and hashed
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")
_NON_SLUG: Final = re.compile(r"[^a-z0-9]+")


class ToolRef(NamedTuple):
    """One tool offered by one server, as input to :func:`assign_tool_names`."""

    server_id: str
    server_name: str
    tool_name: str


class ToolKey(NamedTuple):
    """Where a call goes: the server and the tool's original MCP name."""

    server_id: str
    tool_name: str


@dataclass(frozen=True)
class ToolNames:
    """The two-way mapping between exposed names and ``(server_id, tool_name)``.

    Attributes:
        by_exposed: Exposed name → :class:`ToolKey`, in assignment order.
        by_tool: :class:`ToolKey` → exposed name.
    """

    by_exposed: Mapping[str, ToolKey]
    by_tool: Mapping[ToolKey, str]

    def resolve(self, exposed_name: str) -> ToolKey:
        """Return where a call to ``exposed_name`` goes.

        Args:
            exposed_name: The function name the model called.

        Returns:
            The server id and original tool name.

        Raises:
            NotFound: No tool has this exposed name.
        """
        try:
            return self.by_exposed[exposed_name]
        except KeyError:
            raise NotFound(
                f"no tool is exposed as {exposed_name[:100]!r}", step="tool_call"
            ) from None

    def exposed(self, server_id: str, tool_name: str) -> str:
        """Return the exposed name of a server's tool.

        Args:
            server_id: The server's id.
            tool_name: The tool's original MCP name.

        Returns:
            The name the model sees.

        Raises:
            NotFound: The tool was not part of the assignment.
        """
        try:
            return self.by_tool[ToolKey(server_id, tool_name)]
        except KeyError:
            raise NotFound(
                f"tool {tool_name[:100]!r} of server {server_id!r} has no exposed name",
                step="tool_call",
            ) from None


def assign_tool_names(
    tools: Iterable[ToolRef | tuple[str, str, str]],
    reserved: Iterable[str] = (),
) -> ToolNames:
    """Give every tool a unique, provider-safe name (rule in the module docstring).

    Args:
        tools: ``(server_id, server_name, tool_name)`` triples, in any order.
        reserved: Names the host application uses itself (compared case-insensitively).

    Returns:
        The mapping between exposed names and ``(server_id, tool_name)``.
    """
    refs: list[ToolRef] = []
    seen: set[ToolKey] = set()
    for ref in sorted(map(_as_ref, tools), key=_sort_key):
        key = ToolKey(ref.server_id, ref.tool_name)
        if ref.tool_name.strip() and key not in seen:
            seen.add(key)
            refs.append(ref)
    owners = {(safe_name(r.tool_name).lower(), r.server_id) for r in refs}
    shared = Counter(name for name, _ in owners)
    taken = {name.lower() for name in reserved}
    numbers: dict[str, int] = {}
    by_exposed: dict[str, ToolKey] = {}
    for ref in refs:
        name = _pick(ref, shared[safe_name(ref.tool_name).lower()] > 1, taken, numbers)
        taken.add(name.lower())
        by_exposed[name] = ToolKey(ref.server_id, ref.tool_name)
    by_tool = {key: name for name, key in by_exposed.items()}
    return ToolNames(MappingProxyType(by_exposed), MappingProxyType(by_tool))


def _as_ref(tool: ToolRef | tuple[str, str, str]) -> ToolRef:
    return tool if isinstance(tool, ToolRef) else ToolRef(*tool)


def _sort_key(ref: ToolRef) -> tuple[str, str, str, str]:
    slug = server_slug(ref.server_name, ref.server_id)
    return (slug, ref.server_name, ref.server_id, ref.tool_name)


def _pick(ref: ToolRef, shared: bool, taken: set[str], numbers: dict[str, int]) -> str:
    """The name for ``ref``; ``numbers`` remembers the next suffix to try per base.

    Stems with the same unsuffixed safe name get the same suffixed names (a cut name's
    hash is of the stem, so equal bases mean equal stems). Every suffix below the
    remembered number was taken when tried, and ``taken`` only grows, so resuming
    there gives the names counting from 2 would, in linear rather than quadratic time
    when thousands of names collide.
    """
    candidate = safe_name(ref.tool_name)
    if not shared and candidate.lower() not in taken:
        return candidate
    stem = f"{server_slug(ref.server_name, ref.server_id)}__{ref.tool_name}"
    candidate = safe_name(stem)
    base = candidate.lower()
    number = numbers.get(base, 2)
    while candidate.lower() in taken:
        candidate = safe_name(stem, suffix=f"_{number}")
        number += 1
    numbers[base] = number
    return candidate


def safe_name(name: str, *, suffix: str = "") -> str:
    """Make ``name + suffix`` match :data:`NAME_PATTERN` (G-24).

    Args:
        name: Any text, such as an MCP tool name.
        suffix: An ASCII-safe suffix (``_2``) kept intact when the name is cut.

    Returns:
        A name of at most :data:`MAX_NAME_LENGTH` characters.
    """
    head = name[:_MAX_SCAN]  # the rest only shows through the hash
    text = _UNSAFE.sub("_", _strip_marks(head))
    if not any(c.isalnum() for c in text):
        text = f"tool_{_digest(name)}"
    elif not (text[0].isalpha() or text[0] == "_"):
        text = f"_{text}"
    if len(text) + len(suffix) > MAX_NAME_LENGTH or len(head) < len(name):
        keep = MAX_NAME_LENGTH - len(suffix) - _HASH_LENGTH - 1
        text = f"{text[:keep]}_{_digest(name)}"
    return text + suffix


def server_slug(server_name: str, server_id: str) -> str:
    """Return the prefix used for a server's colliding tools.

    Args:
        server_name: The server's display name.
        server_id: The server's id, used when the name has no usable characters.

    Returns:
        ``[a-z0-9_]`` text such as ``my_docs`` or ``server_42``.
    """
    slug = _NON_SLUG.sub("_", _fold(server_name).lower()).strip("_")
    if slug:
        return slug
    return f"server_{_NON_SLUG.sub('_', _fold(server_id).lower()).strip('_')}"


def _strip_marks(text: str) -> str:
    """Fold accented letters to their base letter (``é`` → ``e``)."""
    if text.isascii():
        return text
    folded = unicodedata.normalize("NFKD", text)
    return "".join(c for c in folded if not unicodedata.combining(c))


def _fold(text: str) -> str:
    return _strip_marks(text).encode("ascii", "ignore").decode()


def _digest(text: str) -> str:
    # surrogatepass: a JSON string may carry a lone surrogate ("\ud800").
    data = text.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:_HASH_LENGTH]
