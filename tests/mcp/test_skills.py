"""Skill entries and file verification (SEP-2640), as tables; no I/O."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from tether.errors import InvalidResponse, SkillVerificationFailed, UsageError
from tether.mcp.skills import (
    MAX_TOTAL_BYTES,
    SkillEntry,
    content_bytes,
    parse_entry,
    parse_frontmatter,
    parse_listing,
    verify_file,
    verify_manifest,
)

URI = "skill://pdf-processing/SKILL.md"
FORMS = "skill://pdf-processing/references/FORMS.md"
SKILL_MD = (
    "---\n"
    "name: pdf-processing\n"
    "description: Extract, fill, and assemble PDF documents\n"
    "metadata:\n"
    "  version: '1.0'\n"
    "---\n"
    "\n"
    "Use the forms reference.\n"
)
FRONTMATTER = {
    "name": "pdf-processing",
    "description": "Extract, fill, and assemble PDF documents",
    "metadata": {"version": "1.0"},
}


def digest(content: str | bytes) -> str:
    raw = content.encode() if isinstance(content, str) else content
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def raw_entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "uri": URI,
        "frontmatter": dict(FRONTMATTER),
        "resources": [
            {"uri": URI, "digest": digest(SKILL_MD), "size": len(SKILL_MD.encode())},
            {"uri": FORMS, "digest": digest("forms"), "size": 5},
        ],
    }
    entry.update(changes)
    return entry


def entry() -> SkillEntry:
    return parse_entry(raw_entry(), server="docs")


# --------------------------------------------------------------------- entries


def test_parse_entry() -> None:
    parsed = entry()
    assert parsed.name == "pdf-processing"
    assert parsed.description.startswith("Extract")
    assert parsed.manifest.size == len(SKILL_MD.encode())
    assert [f.uri for f in parsed.supporting] == [FORMS]
    assert parsed.to_dict() == raw_entry()


def _file(uri: str, size: int = 1, dig: str | None = None) -> dict[str, Any]:
    return {"uri": uri, "digest": dig or digest("x"), "size": size}


MANIFEST_FILE = _file(URI)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"uri": "https://x.example/pdf-processing/SKILL.md"}, "skill:// URI"),
        ({"uri": "skill://pdf-processing/README.md"}, "<skill-path>/SKILL.md"),
        ({"uri": "skill://SKILL.md"}, "<skill-path>/SKILL.md"),
        ({"frontmatter": "name: x"}, "frontmatter must be an object"),
        ({"frontmatter": {"name": "pdf-processing"}}, "description is missing"),
        ({"frontmatter": {"name": "", "description": "d"}}, "name is missing"),
        (
            {"frontmatter": {"name": "other", "description": "d"}},
            "not frontmatter.name",
        ),
        ({"resources": None}, "resources must be an array"),
        ({"resources": [_file(FORMS)]}, "does not list the SKILL.md"),
        ({"resources": [MANIFEST_FILE, MANIFEST_FILE]}, "lists a file twice"),
        ({"resources": [MANIFEST_FILE, _file("skill://other/x")]}, "not inside"),
        (
            {"resources": [MANIFEST_FILE, _file("skill://pdf-processing/../x/y")]},
            "not inside",
        ),
        ({"resources": [_file(URI, dig="sha256:ABC")]}, "digest must be"),
        ({"resources": [_file(URI, dig="md5:" + "0" * 32)]}, "digest must be"),
        ({"resources": [_file(URI, size=-1)]}, "size must be"),
        ({"resources": [{**MANIFEST_FILE, "size": True}]}, "size must be"),
        (
            {"resources": [MANIFEST_FILE, _file(FORMS, size=MAX_TOTAL_BYTES)]},
            "bytes in all",
        ),
        (
            {
                "resources": [MANIFEST_FILE]
                + [_file(f"skill://pdf-processing/f{i}") for i in range(512)]
            },
            "513 files",
        ),
    ],
)
def test_parse_entry_refuses(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidResponse) as caught:
        parse_entry(raw_entry(**changes), server="docs")
    assert reason in caught.value.message
    assert caught.value.server == "docs"


def test_parse_listing_keeps_the_valid_entries() -> None:
    bad = raw_entry(frontmatter={"name": "x"})
    entries, problems = parse_listing([raw_entry(), bad, "junk"], server="docs")
    assert [e.name for e in entries] == ["pdf-processing"]
    assert len(problems) == 2


def test_parse_listing_needs_an_array() -> None:
    with pytest.raises(InvalidResponse, match="no 'skills' array"):
        parse_listing(None, server="docs")


def test_entry_file_lookup() -> None:
    assert entry().file(FORMS).size == 5
    with pytest.raises(UsageError, match="lists no file"):
        entry().file("skill://pdf-processing/other.md")


# --------------------------------------------------------------------- verification


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (SKILL_MD.replace("forms", "farms"), "digest"),  # same size, tampered
        (SKILL_MD + "extra bytes\n", "size"),
        (SKILL_MD[:-1], "size"),
    ],
)
def test_verify_manifest_refuses_tampered_bytes(content: str, reason: str) -> None:
    with pytest.raises(SkillVerificationFailed) as caught:
        verify_manifest(entry(), content.encode(), server="docs")
    error = caught.value
    assert error.code == "skill_verification_failed"
    assert error.details == {"skill": "pdf-processing", "uri": URI, "reason": reason}
    assert "pdf-processing" in str(error)
    assert "docs" in str(error)


def test_size_is_checked_before_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_hashing(*_: object) -> None:
        raise AssertionError("hashed an oversized file")

    forms = entry().file(FORMS)
    monkeypatch.setattr("tether.mcp.skills.hashlib.sha256", no_hashing)
    with pytest.raises(SkillVerificationFailed, match="bytes, the listing says 5"):
        verify_file(forms, b"x" * 10_000, server="docs", skill="p")


def test_verify_file_accepts_matching_bytes() -> None:
    verify_file(entry().file(FORMS), b"forms", server="docs", skill="pdf-processing")


def manifest_entry(text: str, frontmatter: dict[str, Any] | None = None) -> SkillEntry:
    """An entry whose digest and size match ``text`` (a consistent, lying server)."""
    raw = raw_entry(
        resources=[{"uri": URI, "digest": digest(text), "size": len(text.encode())}]
    )
    if frontmatter is not None:
        raw["frontmatter"] = frontmatter
    return parse_entry(raw, server="docs")


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        (SKILL_MD.replace("Extract, fill,", "Exfiltrate"), ["description"]),
        (SKILL_MD.replace("'1.0'", "'2.0'"), ["metadata"]),
        (SKILL_MD.replace("metadata:\n  version: '1.0'\n", ""), ["metadata"]),
        (SKILL_MD.replace("---\n\n", "license: MIT\n---\n\n"), ["license"]),
        (SKILL_MD.replace("'1.0'", "1.0"), ["metadata"]),  # a float is not "1.0"
    ],
)
def test_verify_manifest_compares_the_frontmatter(text: str, fields: list[str]) -> None:
    with pytest.raises(SkillVerificationFailed) as caught:
        verify_manifest(manifest_entry(text), text.encode(), server="docs")
    assert caught.value.details["reason"] == "frontmatter"
    assert caught.value.details["fields"] == fields


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("no frontmatter\n", "does not start"),
        ("---\nname: pdf-processing\n", "not closed"),
        ("---\nname: [unclosed\n---\n", "not valid YAML"),
        ("---\n- a list\n---\n", "not a YAML mapping"),
        ("---\n\n---\n", "not a YAML mapping"),
    ],
)
def test_verify_manifest_needs_yaml_frontmatter(text: str, problem: str) -> None:
    with pytest.raises(SkillVerificationFailed, match=problem):
        verify_manifest(manifest_entry(text), text.encode(), server="docs")


def test_verify_manifest_refuses_non_utf8() -> None:
    content = b"---\nname: \xff\n---\n"
    raw = raw_entry(resources=[{"uri": URI, "digest": digest(content), "size": 16}])
    with pytest.raises(SkillVerificationFailed) as caught:
        verify_manifest(parse_entry(raw, server="docs"), content, server="docs")
    assert caught.value.details["reason"] == "frontmatter"


def test_verify_manifest_loads_a_matching_skill() -> None:
    skill = verify_manifest(entry(), SKILL_MD.encode(), server="docs")
    assert skill.name == "pdf-processing"
    assert skill.text == SKILL_MD
    assert skill.body == "\nUse the forms reference.\n"


def test_frontmatter_renders_yaml_scalars_as_json() -> None:
    data, body = parse_frontmatter(
        "---\r\nname: a\r\ndescription: >\r\n  folded\r\n  text\r\n"
        "updated: 2025-01-02\r\n---\r\nbody"
    )
    assert data == {
        "name": "a",
        "description": "folded text\n",
        "updated": "2025-01-02",
    }
    assert body == "body"


# --------------------------------------------------------------------- contents


@pytest.mark.parametrize(
    ("contents", "expected"),
    [
        ([{"uri": URI, "text": "héllo"}], "héllo".encode()),
        ([{"uri": URI, "blob": base64.b64encode(b"\x00\x01").decode()}], b"\x00\x01"),
        ([{"uri": FORMS, "text": "no"}, {"uri": URI, "text": "yes"}], b"yes"),
    ],
)
def test_content_bytes(contents: list[dict[str, Any]], expected: bytes) -> None:
    assert content_bytes(contents, URI, server="docs") == expected


@pytest.mark.parametrize(
    "contents",
    [[], [{"uri": FORMS, "text": "x"}], [{"uri": URI}], [{"uri": URI, "blob": "@@"}]],
)
def test_content_bytes_refuses(contents: list[dict[str, Any]]) -> None:
    with pytest.raises(InvalidResponse, match="no readable content"):
        content_bytes(contents, URI, server="docs")
