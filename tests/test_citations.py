"""Every ID or section a comment cites resolves inside this repository.

Requirement IDs (``PRM-3``, ``HTTP7-4``, ``G-12``, ranges such as ``CB-1 – CB-5``) and
``Known disagreements #n`` must have a row in ``docs/requirements.md``; ``design-notes``
sections (``D3.3``, ``R3.6``, ``R6.4.3``, ``S7``) must have a heading, or a numbered item
under one, in ``docs/design-notes.md``. Citations of the team's shared documents
(``design.md §n``, ``reference-behaviour §n``, ``style.md example n``, the checklist and
field notes by name) are translated to the same scheme and must resolve too; outside the
paths in :data:`PENDING` they must not appear at all. The scheme is described at the top
of ``docs/requirements.md``. This file itself is not scanned: its strings are the
checker's own test cases.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "docs" / "requirements.md"
NOTES = REPO / "docs" / "design-notes.md"
SCANNED = ("src", "tests")
SUFFIXES = frozenset(
    {".py", ".html", ".mjs", ".js", ".md", ".txt", ".json", ".ini", ".mako"}
)

#: Paths still being edited elsewhere when the citations were moved to this scheme: their
#: shared-doc citations must resolve, but may keep the old document names for now. Remove
#: an entry once its file cites ``design-notes`` / ``requirements.md``.
PENDING: tuple[str, ...] = ()

FAMILIES = "GEN|PRM|ASM|REG|CIMD|RES|SCP|AUTHZ|CB|TOK|RFR|REV|SEC|SSRF|HTTP7|HTTP|TOOL|EXT|DUR|G"
ID = re.compile(rf"(?<![\w-])({FAMILIES})-(\d{{1,3}})\b")
ID_RANGE = re.compile(
    rf"(?<![\w-])({FAMILIES})-(\d{{1,3}})\s*(?:–|…|\.\.\.)\s*(?:\1-)?(\d{{1,3}})\b"
)
DISAGREEMENT = re.compile(
    r"known disagreements\*?,?\s*(#\d+(?:\s*(?:,|and|&)\s*#\d+)*)", re.IGNORECASE
)
NOTE = r"[DRS]\d+(?:\.\d+)*"
NOTES_CITATION = re.compile(
    rf"design-notes(?:\.md)?\s+({NOTE}(?:\s*[,;]\s*{NOTE})*)", re.IGNORECASE
)
#: A dotted ``R6.4.3`` or ``D3.1`` continuing a design-notes citation; the dot keeps it
#: apart from key sizes and algorithm names.
BARE_NOTE = re.compile(r"(?<![\w.§/-])([DR]\d+(?:\.\d+)+)(?![\w.])")

GAP = r",?\s+(?:#\s*)?"  # a space, a newline, perhaps a comment marker
SECTIONS = r"(§\d+(?:\.\d+)*(?:\s*,\s*§\d+(?:\.\d+)*)*)"
LEGACY_SECTION = (
    (re.compile(rf"\bdesign(?:\.md)?{GAP}{SECTIONS}"), "D"),
    (re.compile(rf"\breference(?:[- ]behaviour)?(?:\.md)?{GAP}{SECTIONS}", re.I), "R"),
)
LEGACY_STYLE = re.compile(r"\bstyle(?:\.md)?\s+(?:example|ex\.)\s+(\d+)")
LEGACY_NAME = re.compile(
    r"\bdesign\.md\b|\bdesign\s+§|\breference(?:[- ]behaviour)?(?:\.md)?,?\s+§"
    r"|reference-behaviour|\bstyle\.md\b|\bstyle\s+example\b"
    r"|spec[- ]checklist|field[- ]notes",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Targets:
    """What the two documents define."""

    ids: frozenset[str]
    disagreements: frozenset[int]
    notes: dict[str, str]


def load_targets(requirements: str, notes: str) -> Targets:
    """Parse the IDs of requirements.md and the headings of design-notes.md."""
    ids = frozenset(
        f"{family}-{number}"
        for family, number in re.findall(
            rf"^\|\s*({FAMILIES})-(\d+)\s*\|", requirements, re.MULTILINE
        )
    )
    _, _, tail = requirements.partition("\n## Known disagreements")
    disagreements = frozenset(
        int(n) for n in re.findall(r"^\|\s*#(\d+)\s*\|", tail, re.MULTILINE)
    )
    sections: dict[str, str] = {}
    parts = re.split(rf"^#{{2,4}}\s+({NOTE})\b.*$", notes, flags=re.MULTILINE)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sections[name] = body
    return Targets(ids, disagreements, sections)


def _note_resolves(token: str, targets: Targets) -> bool:
    """``R3.6`` is a heading; ``R6.4.3`` is item 3 of the list under ``R6.4``."""
    if token in targets.notes:
        return True
    parent, _, item = token.rpartition(".")
    body = targets.notes.get(parent)
    return body is not None and re.search(rf"^\s*{item}\.\s", body, re.M) is not None


def _legacy_tokens(text: str) -> Iterator[str]:
    for pattern, prefix in LEGACY_SECTION:
        for match in pattern.finditer(text):
            for number in re.findall(r"§(\d+(?:\.\d+)*)", match.group(1)):
                yield prefix + number
    for match in LEGACY_STYLE.finditer(text):
        yield "S" + match.group(1)


def unresolved(text: str, targets: Targets) -> list[str]:
    """The citations in ``text`` that neither document defines, in order found."""
    missing: list[str] = []
    for family, number in ID.findall(text):
        if f"{family}-{number}" not in targets.ids:
            missing.append(f"{family}-{number}")
    for family, low, high in ID_RANGE.findall(text):
        for number in range(int(low), int(high) + 1):
            if f"{family}-{number}" not in targets.ids:
                missing.append(f"{family}-{number} (in a range)")
    for group in DISAGREEMENT.findall(text):
        for number in re.findall(r"#(\d+)", group):
            if int(number) not in targets.disagreements:
                missing.append(f"Known disagreements #{number}")
    tokens = [
        token
        for group in NOTES_CITATION.findall(text)
        for token in re.findall(NOTE, group)
    ]
    tokens += BARE_NOTE.findall(text)
    tokens += _legacy_tokens(text)
    unique = dict.fromkeys(tokens)  # a bare R6.4 inside "design-notes R6.4" counts once
    missing += [f"design-notes {t}" for t in unique if not _note_resolves(t, targets)]
    return missing


def citations(text: str) -> int:
    """How many citations of either kind ``text`` holds (to keep the scan honest)."""
    notes = NOTES_CITATION.findall(text) + BARE_NOTE.findall(text)
    return len(ID.findall(text)) + len(notes) + len(list(_legacy_tokens(text)))


def legacy_names(text: str) -> list[str]:
    """Mentions of the shared team documents by name."""
    return [" ".join(match.group(0).split()) for match in LEGACY_NAME.finditer(text)]


def _scanned_files() -> Iterator[Path]:
    for root in SCANNED:
        for path in sorted((REPO / root).rglob("*")):
            if (
                path.is_file()
                and path.suffix in SUFFIXES
                and path != Path(__file__).resolve()
                and ".egg-info" not in path.as_posix()
            ):
                yield path


@pytest.fixture(scope="module")
def targets() -> Targets:
    return load_targets(REQUIREMENTS.read_text("utf-8"), NOTES.read_text("utf-8"))


def test_every_citation_resolves(targets: Targets) -> None:
    texts = {path: path.read_text("utf-8") for path in _scanned_files()}
    problems = [
        f"{path.relative_to(REPO)}: {citation}"
        for path, text in texts.items()
        for citation in unresolved(text, targets)
    ]
    assert problems == []
    # The scan saw the code base, not an empty directory: it cites hundreds of IDs.
    assert sum(citations(text) for text in texts.values()) > 500


def test_shared_documents_are_not_cited_by_name() -> None:
    problems = [
        f"{relative}: {name}"
        for path in _scanned_files()
        if not (relative := path.relative_to(REPO).as_posix()).startswith(PENDING)
        for name in legacy_names(path.read_text("utf-8"))
    ]
    assert problems == []


def test_the_documents_define_what_the_code_relies_on(targets: Targets) -> None:
    assert {"PRM-3", "HTTP7-4", "G-29", "EXT-7"} <= targets.ids
    assert set(range(1, 16)) == targets.disagreements
    assert {"D3.3", "R3.6", "R6.4", "S7", "S16"} <= set(targets.notes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PRM-3, CB-2 – CB-4; G-29", []),
        ("PRM-99 is made up", ["PRM-99"]),
        ("HTTP7-40 too", ["HTTP7-40"]),
        (
            "CB-1 – CB-12",
            [
                "CB-12",
                "CB-9 (in a range)",
                "CB-10 (in a range)",
                "CB-11 (in a range)",
                "CB-12 (in a range)",
            ],
        ),
        (
            "*Known disagreements* #3 and known disagreements #4 and #40",
            ["Known disagreements #40"],
        ),
        ("design-notes D3.3, R3.6 rule 8; S7", []),
        ("design-notes D9.9", ["design-notes D9.9"]),
        ("design-notes S99", ["design-notes S99"]),
        ("see R6.4.3 and R6.4.9", ["design-notes R6.4.9"]),
        ("design.md §3.1, §3.3", []),
        ("design.md §3.8", ["design-notes D3.8"]),
        ("reference-behaviour\n    # §7.1", ["design-notes R7.1"]),
        ("style.md example 99", ["design-notes S99"]),
        ("AES-256, SHA-256, P-256, UTF-8, TEST-NET-1, SEP-990, RFC 6749 §5.2", []),
    ],
)
def test_checker(targets: Targets, text: str, expected: list[str]) -> None:
    assert unresolved(text, targets) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(design.md §4; style.md example 12)", ["design.md", "style.md"]),
        ("per spec checklist SSRF-1", ["spec checklist"]),
        ("reference\n  §2.5", ["reference §"]),
        ("design-notes D4; requirements.md; the reference system", []),
    ],
)
def test_legacy_names(text: str, expected: list[str]) -> None:
    assert legacy_names(text) == expected
