"""Agent skills served over MCP: listing entries and verifying files (SEP-2640).

The Skills extension (``io.modelcontextprotocol/skills``, declared under the server's
``capabilities.extensions``) lets a server offer *skills*: a ``SKILL.md`` manifest
(YAML frontmatter with at least ``name`` and ``description``, then Markdown
instructions) plus supporting files, all addressed as ``skill://<skill-path>/…``
resources and read with ``resources/read``. ``skills/list`` returns one entry per skill::

    {"uri": "skill://pdf-processing/SKILL.md",
     "frontmatter": {"name": "pdf-processing", "description": "…"},
     "resources": [{"uri": "skill://pdf-processing/SKILL.md",
                    "digest": "sha256:<64 hex>", "size": 312}, …]}

This module is the pure part of the host's side (no I/O): it validates entries and
verifies each file's bytes against its entry (SEP-2640 "Integrity and verification"):

* the byte length must equal ``size`` — checked first, before any hashing, and a
  mismatch is a verification failure on its own;
* the SHA-256 of the raw bytes must equal ``digest``;
* a ``SKILL.md``'s YAML frontmatter, parsed, must equal the entry's ``frontmatter``
  field by field; on any discrepancy the skill must not be loaded.

Files are read only when a skill is loaded (SEP-2640 "Lazy retrieval": not on
connection, listing or approval); that rule lives with the callers in
:mod:`tether.mcp.session` and the hub. Entries that announce more than
:data:`MAX_FILES` files or :data:`MAX_TOTAL_BYTES` bytes (limits servers SHOULD NOT
exceed) are refused before anything is read.

Left out: ``skills/get`` and ``resources/directory/read`` (a host that holds the listing
needs neither), and ``_meta`` keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml

from tether.errors import (
    InvalidResponse,
    SkillVerificationFailed,
    UsageError,
    clean_text,
)

__all__ = [
    "EXTENSION",
    "MANIFEST",
    "MAX_FILES",
    "MAX_TOTAL_BYTES",
    "Skill",
    "SkillEntry",
    "SkillFile",
    "content_bytes",
    "parse_entry",
    "parse_frontmatter",
    "parse_listing",
    "verify_file",
    "verify_manifest",
]

EXTENSION: Final = "io.modelcontextprotocol/skills"
"""The extension identifier under ``capabilities.extensions`` (SEP-2640, SEP-2133)."""
MANIFEST: Final = "SKILL.md"
MAX_FILES: Final = 512
"""Files per skill, ``SKILL.md`` included, beyond which a skill is refused."""
MAX_TOTAL_BYTES: Final = 16 * 1024 * 1024
"""Sum of a skill's file sizes beyond which it is refused (16 MiB)."""

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_SCHEME = "skill://"


@dataclass(frozen=True)
class SkillFile:
    """One file of a skill as its entry lists it.

    Attributes:
        uri: The file's ``skill://`` resource URI.
        digest: ``sha256:`` and the lowercase hex SHA-256 of its raw bytes.
        size: Its length in bytes.
    """

    uri: str
    digest: str
    size: int


@dataclass(frozen=True)
class SkillEntry:
    """A skill as ``skills/list`` describes it; nothing of it has been read yet.

    Attributes:
        uri: The ``SKILL.md`` URI.
        frontmatter: The manifest's frontmatter as the server rendered it.
        files: Every file of the skill, the manifest included.
    """

    uri: str
    frontmatter: Mapping[str, Any]
    files: tuple[SkillFile, ...]

    @property
    def name(self) -> str:
        """The skill's name (``frontmatter.name``, the last segment of its path)."""
        return str(self.frontmatter["name"])

    @property
    def description(self) -> str:
        """When to use the skill (``frontmatter.description``)."""
        return str(self.frontmatter["description"])

    @property
    def manifest(self) -> SkillFile:
        """The ``SKILL.md`` file's listing."""
        return self.file(self.uri)

    @property
    def supporting(self) -> tuple[SkillFile, ...]:
        """The files other than ``SKILL.md``, in listing order."""
        return tuple(f for f in self.files if f.uri != self.uri)

    def file(self, uri: str) -> SkillFile:
        """The listing of one of the skill's files.

        Raises:
            UsageError: The skill lists no such file.
        """
        for listed in self.files:
            if listed.uri == uri:
                return listed
        raise UsageError(f"skill {self.name!r} lists no file {uri!r}")

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready data (``uri``, ``frontmatter``, ``resources``)."""
        return {
            "uri": self.uri,
            "frontmatter": dict(self.frontmatter),
            "resources": [
                {"uri": f.uri, "digest": f.digest, "size": f.size} for f in self.files
            ],
        }


@dataclass(frozen=True)
class Skill:
    """A loaded skill: its ``SKILL.md``, verified against its entry.

    Attributes:
        entry: The listing it was verified against.
        text: The whole ``SKILL.md``.
        body: The instructions after the frontmatter.
    """

    entry: SkillEntry
    text: str
    body: str

    @property
    def name(self) -> str:
        """The skill's name."""
        return self.entry.name


# --------------------------------------------------------------------- entries


def parse_listing(
    raw: object, *, server: str
) -> tuple[list[SkillEntry], list[InvalidResponse]]:
    """The valid entries of one ``skills/list`` page, and why the others were dropped.

    A malformed entry costs only itself: the server's other skills stay usable.

    Raises:
        InvalidResponse: ``skills`` is not a list.
    """
    if not isinstance(raw, list):
        raise InvalidResponse(
            "skills/list returned no 'skills' array", server=server, step="skills/list"
        )
    entries: list[SkillEntry] = []
    problems: list[InvalidResponse] = []
    for item in raw:
        try:
            entries.append(parse_entry(item, server=server))
        except InvalidResponse as exc:
            problems.append(exc)
    return entries, problems


def parse_entry(raw: object, *, server: str) -> SkillEntry:
    """Validate one ``skills/list`` entry (SEP-2640, "Skill entries").

    Raises:
        InvalidResponse: A required field is missing or malformed, the URI's last path
            segment is not ``frontmatter.name``, ``resources`` misses the manifest,
            repeats a file or names one outside the skill, or the skill is larger than
            :data:`MAX_FILES` / :data:`MAX_TOTAL_BYTES`.
    """

    def bad(reason: str) -> InvalidResponse:
        label = raw.get("uri") if isinstance(raw, Mapping) else None
        return InvalidResponse(
            f"skills/list entry {label or '?'}: {reason}",
            server=server,
            step="skills/list",
            details={"uri": label, "reason": reason},
        )

    if not isinstance(raw, Mapping):
        raise bad("not an object")
    uri, frontmatter, resources = (
        raw.get("uri"),
        raw.get("frontmatter"),
        raw.get("resources"),
    )
    # An entry carries uri, frontmatter (name and description required) and resources.
    if not isinstance(uri, str) or not uri.startswith(_SCHEME):
        raise bad("uri must be a skill:// URI")
    if not uri.endswith("/" + MANIFEST) or uri == _SCHEME + MANIFEST:
        raise bad(f"uri must name <skill-path>/{MANIFEST}")
    if not isinstance(frontmatter, Mapping):
        raise bad("frontmatter must be an object")
    for required in ("name", "description"):
        value = frontmatter.get(required)
        if not isinstance(value, str) or not value:
            raise bad(f"frontmatter.{required} is missing or empty")
    # The final <skill-path> segment MUST equal frontmatter.name.
    directory = uri[: -len(MANIFEST) - 1]
    if directory.rsplit("/", 1)[-1] != frontmatter["name"]:
        raise bad("the last segment of the skill path is not frontmatter.name")
    files = _parse_files(resources, uri, directory + "/", bad)
    return SkillEntry(uri=uri, frontmatter=dict(frontmatter), files=files)


def _parse_files(
    resources: object, uri: str, prefix: str, bad: Callable[[str], InvalidResponse]
) -> tuple[SkillFile, ...]:
    """An entry's ``resources``: complete, each file once, within the limits."""
    if not isinstance(resources, list):
        raise bad("resources must be an array")
    files = tuple(_parse_file(item, prefix, bad) for item in resources)
    uris = [f.uri for f in files]
    if uri not in uris:
        raise bad("resources does not list the SKILL.md itself")
    if len(set(uris)) != len(uris):
        raise bad("resources lists a file twice")
    if len(files) > MAX_FILES:
        raise bad(f"{len(files)} files, more than {MAX_FILES}")
    total = sum(f.size for f in files)
    if total > MAX_TOTAL_BYTES:
        raise bad(f"{total} bytes in all, more than {MAX_TOTAL_BYTES}")
    return files


def _parse_file(
    raw: object, prefix: str, bad: Callable[[str], InvalidResponse]
) -> SkillFile:
    """One ``{uri, digest, size}`` triple of an entry's ``resources``."""
    if not isinstance(raw, Mapping):
        raise bad("a resources item is not an object")
    uri, digest, size = raw.get("uri"), raw.get("digest"), raw.get("size")
    if not isinstance(uri, str) or not uri.startswith(prefix) or "/../" in uri:
        raise bad(f"resource {uri!r} is not inside the skill")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise bad(f"resource {uri}: digest must be sha256:<64 lowercase hex>")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise bad(f"resource {uri}: size must be a non-negative integer")
    return SkillFile(uri=uri, digest=digest, size=size)


# --------------------------------------------------------------------- verification


def content_bytes(
    contents: Sequence[Mapping[str, Any]], uri: str, *, server: str
) -> bytes:
    """The raw bytes of ``uri`` in a ``resources/read`` result's ``contents``.

    Text is UTF-8 encoded, a blob base64-decoded: the bytes the digest covers.

    Raises:
        InvalidResponse: No item for ``uri``, or an item with neither text nor blob.
    """
    for item in contents:
        if item.get("uri") != uri:
            continue
        if isinstance(item.get("text"), str):
            return str(item["text"]).encode("utf-8")
        if isinstance(item.get("blob"), str):
            try:
                return base64.b64decode(item["blob"], validate=True)
            except binascii.Error:
                break
        break
    raise InvalidResponse(
        f"resources/read returned no readable content for {uri}",
        server=server,
        step="resources/read",
        details={"uri": uri},
    )


def verify_file(file: SkillFile, content: bytes, *, server: str, skill: str) -> None:
    """Check a file's bytes against its listing: size first, then the digest.

    Raises:
        SkillVerificationFailed: ``reason`` ``size`` or ``digest``; the content must
            not be used.
    """
    # A byte length other than size is a verification failure equivalent to a digest
    # mismatch, whether or not the digest is computed.
    if len(content) != file.size:
        raise _failed(
            f"{len(content)} bytes, the listing says {file.size}",
            "size",
            file.uri,
            server=server,
            skill=skill,
        )
    actual = "sha256:" + hashlib.sha256(content).hexdigest()
    if not hmac.compare_digest(actual, file.digest):
        raise _failed(
            "its SHA-256 digest differs from the listing",
            "digest",
            file.uri,
            server=server,
            skill=skill,
        )


def parse_frontmatter(text: str) -> tuple[dict[str, Any], str]:
    """Split a ``SKILL.md`` into its YAML frontmatter (as JSON data) and its body.

    Returns:
        The frontmatter mapping (dates and other YAML-only scalars as strings, as a
        server renders them to JSON) and the Markdown after the closing ``---``.

    Raises:
        ValueError: No frontmatter block, invalid YAML, or YAML that is not a mapping.
    """
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip("\r\n") != "---":
        raise ValueError("SKILL.md does not start with a '---' frontmatter block")
    closing = [i for i, line in enumerate(lines) if i and line.rstrip("\r\n") == "---"]
    if not closing:
        raise ValueError("the frontmatter block is not closed with '---'")
    index = closing[0]
    block = "".join(lines[1:index])
    try:
        _check_yaml_shape(block)
        data = yaml.safe_load(block)
    except yaml.YAMLError as exc:
        # PyYAML quotes the offending line: remote text, so cleaned and bounded.
        raise ValueError(
            f"the frontmatter is not valid YAML: {clean_text(exc)}"
        ) from None
    if not isinstance(data, dict):
        raise ValueError("the frontmatter is not a YAML mapping")
    as_json = json.loads(json.dumps(_json_keys(data), default=_scalar))
    return as_json, "".join(lines[index + 1 :])


_MAX_YAML_DEPTH: Final = 32


def _check_yaml_shape(block: str) -> None:
    """Refuse aliases and deep nesting before composing (the parser itself is flat).

    An alias lets a few bytes expand into gigabytes once converted to JSON ("billion
    laughs"), and PyYAML's composer recurses once per nesting level.

    Raises:
        ValueError: An alias, or nesting deeper than :data:`_MAX_YAML_DEPTH`.
        yaml.YAMLError: The block does not parse.
    """
    depth = 0
    for event in yaml.parse(block, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise ValueError("the frontmatter uses a YAML alias, which is not allowed")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > _MAX_YAML_DEPTH:
                raise ValueError(
                    f"the frontmatter nests deeper than {_MAX_YAML_DEPTH} levels"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _json_keys(value: object) -> object:
    """YAML keys that JSON cannot hold (dates, bytes) as strings, as a server sends."""
    if isinstance(value, dict):
        return {
            (
                k
                if isinstance(k, str | int | float | bool) or k is None
                else _scalar(k)
            ): (_json_keys(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_json_keys(v) for v in value]
    return value


def _scalar(value: object) -> str:
    isoformat = getattr(value, "isoformat", None)
    return str(isoformat()) if callable(isoformat) else str(value)


def verify_manifest(entry: SkillEntry, content: bytes, *, server: str) -> Skill:
    """Verify a fetched ``SKILL.md`` against its entry and return the loaded skill.

    Size, then digest (:func:`verify_file`), then the frontmatter: parsed, it must equal
    ``entry.frontmatter`` field by field.

    Raises:
        SkillVerificationFailed: ``reason`` ``size``, ``digest``, ``encoding`` or
            ``frontmatter`` (with the differing ``fields``); the skill must not load.
    """
    verify_file(entry.manifest, content, server=server, skill=entry.name)
    try:
        text = content.decode("utf-8")
        frontmatter, body = parse_frontmatter(text)
    except ValueError as exc:  # UnicodeDecodeError included
        raise _failed(
            str(exc), "frontmatter", entry.uri, server=server, skill=entry.name
        ) from None
    listed = dict(entry.frontmatter)
    fields = sorted(
        key
        for key in listed.keys() | frontmatter.keys()
        if listed.get(key, _MISSING) != frontmatter.get(key, _MISSING)
    )
    if fields:
        raise _failed(
            f"its frontmatter differs from the listing in {', '.join(fields)}",
            "frontmatter",
            entry.uri,
            server=server,
            skill=entry.name,
            fields=fields,
        )
    return Skill(entry=entry, text=text, body=body)


_MISSING: Final = object()


def _failed(
    problem: str,
    reason: str,
    uri: str,
    *,
    server: str,
    skill: str,
    fields: list[str] | None = None,
) -> SkillVerificationFailed:
    details: dict[str, Any] = {"skill": skill, "uri": uri, "reason": reason}
    if fields is not None:
        details["fields"] = fields
    return SkillVerificationFailed(
        f"skill {skill!r} from server {server!r}: {uri} failed verification: "
        f"{problem}; not using it",
        server=server,
        step="resources/read",
        details=details,
        hint="the server's files changed after listing, or were tampered with; "
        "list the skills again, and report it to the server's operator if it stays",
    )
