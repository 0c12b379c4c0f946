"""Tests for tether.mcp.naming: unique, provider-safe tool names."""

from __future__ import annotations

import itertools

import pytest

from tether.errors import NotFound
from tether.mcp.naming import (
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    ToolKey,
    ToolRef,
    assign_tool_names,
    safe_name,
    server_slug,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("search", "search"),
        ("get-issue_2", "get-issue_2"),
        ("Search", "Search"),
        ("files.read", "files_read"),
        ("repo/list", "repo_list"),
        ("a b:c", "a_b_c"),
        ("café_crème", "cafe_creme"),
        ("9lives", "_9lives"),
        ("-flag", "_-flag"),
        ("_private", "_private"),
    ],
)
def test_safe_name(name: str, expected: str) -> None:
    assert safe_name(name) == expected
    assert NAME_PATTERN.match(safe_name(name))


@pytest.mark.parametrize("name", ["検索", "!!!", "...", "🙂", "—", "___", "ß"])
def test_safe_name_without_letters_is_hashed(name: str) -> None:
    result = safe_name(name)
    assert NAME_PATTERN.match(result)
    assert result.startswith("tool_")
    assert len(result) == len("tool_") + 8


def test_safe_name_hashes_differ_for_different_inputs() -> None:
    assert safe_name("検索") != safe_name("翻訳")


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("x" * 100, ""),
        ("x" * 100, "_2"),
        ("é" * 80, "_12"),
        ("x" * 64, ""),
        ("x" * 63, "_2"),
    ],
)
def test_long_names_are_cut_with_a_hash(name: str, suffix: str) -> None:
    result = safe_name(name, suffix=suffix)
    assert len(result) == MAX_NAME_LENGTH
    assert result.endswith(suffix)
    assert NAME_PATTERN.match(result)
    assert result == safe_name(name, suffix=suffix)  # deterministic


def test_name_of_exactly_the_limit_is_kept() -> None:
    assert safe_name("x" * 64) == "x" * 64
    assert safe_name("x" * 62, suffix="_2") == "x" * 62 + "_2"


def test_two_long_names_with_a_common_prefix_differ() -> None:
    first, second = safe_name("x" * 100), safe_name("x" * 99 + "y")
    assert first != second
    assert first[:55] == second[:55]


@pytest.mark.parametrize(
    ("server_name", "server_id", "expected"),
    [
        ("Jira", "1", "jira"),
        ("My Docs!", "1", "my_docs"),
        ("  GitHub -- Enterprise ", "1", "github_enterprise"),
        ("Ünïcödé", "1", "unicode"),
        ("snake_case", "1", "snake_case"),
        ("検索", "42", "server_42"),
        ("", "3F-a", "server_3f_a"),
    ],
)
def test_server_slug(server_name: str, server_id: str, expected: str) -> None:
    assert server_slug(server_name, server_id) == expected


def names(
    *tools: tuple[str, str, str], reserved: tuple[str, ...] = ()
) -> dict[str, ToolKey]:
    return dict(assign_tool_names(tools, reserved).by_exposed)


THREE_SERVERS = (
    ("s1", "Jira", "search"),
    ("s1", "Jira", "create_issue"),
    ("s2", "GitHub", "search"),
    ("s2", "GitHub", "create.issue"),
    ("s2", "GitHub", "list_repos"),
    ("s3", "My Docs!", "search"),
    ("s3", "My Docs!", "read"),
    ("s3", "My Docs!", "List_Repos"),
)


def test_collisions_across_three_servers_and_reserved_names() -> None:
    result = names(*THREE_SERVERS, reserved=("READ", "web_search"))
    assert result == {
        "github__create_issue": ToolKey("s2", "create.issue"),
        "github__list_repos": ToolKey("s2", "list_repos"),
        "github__search": ToolKey("s2", "search"),
        "jira__create_issue": ToolKey("s1", "create_issue"),
        "jira__search": ToolKey("s1", "search"),
        "my_docs__List_Repos": ToolKey("s3", "List_Repos"),
        "my_docs__read": ToolKey("s3", "read"),
        "my_docs__search": ToolKey("s3", "search"),
    }


@pytest.mark.parametrize(
    ("tools", "reserved", "expected"),
    [
        pytest.param(
            [("s1", "Jira", "search")], (), {"search": ("s1", "search")}, id="unique"
        ),
        pytest.param(
            [("s1", "Jira", "search")],
            ("Search",),
            {"jira__search": ("s1", "search")},
            id="reserved-case-insensitive",
        ),
        pytest.param(
            [("s1", "Jira", "search")],
            ("search", "jira__search"),
            {"jira__search_2": ("s1", "search")},
            id="prefixed-also-reserved",
        ),
        pytest.param(
            [("s1", "Jira", "search")],
            ("search", "jira__search", "JIRA__SEARCH_2"),
            {"jira__search_3": ("s1", "search")},
            id="suffixes-do-not-pile-up",
        ),
        pytest.param(
            [("s1", "Jira", "x"), ("s2", "Jira", "x")],
            (),
            {"jira__x": ("s1", "x"), "jira__x_2": ("s2", "x")},
            id="same-server-name",
        ),
        pytest.param(
            [("s1", "A", "a.b"), ("s1", "A", "a/b")],
            (),
            {"a_b": ("s1", "a.b"), "a__a_b": ("s1", "a/b")},
            id="sanitised-collision-on-one-server",
        ),
        pytest.param(
            [("s1", "A", "Get"), ("s1", "A", "get")],
            (),
            {"Get": ("s1", "Get"), "a__get": ("s1", "get")},
            id="case-collision-on-one-server",
        ),
        pytest.param(
            [("s1", "A", "x"), ("s1", "A", "x"), ("s1", "A", " "), ("s1", "A", "")],
            (),
            {"x": ("s1", "x")},
            id="duplicates-and-blanks-dropped",
        ),
        pytest.param(
            [("s1", "検索", "find"), ("s2", "検索", "find")],
            (),
            {"server_s1__find": ("s1", "find"), "server_s2__find": ("s2", "find")},
            id="unicode-server-names",
        ),
    ],
)
def test_assignment_rules(
    tools: list[tuple[str, str, str]],
    reserved: tuple[str, ...],
    expected: dict[str, tuple[str, str]],
) -> None:
    assert names(*tools, reserved=reserved) == expected


def test_hundred_character_name() -> None:
    long = "a" * 100
    result = names(("s1", "Jira", long), ("s2", "Wiki", long))
    assert len(result) == 2
    for exposed, key in result.items():
        assert len(exposed) == MAX_NAME_LENGTH
        assert NAME_PATTERN.match(exposed)
        assert key.tool_name == long
    assert {e[:6] for e in result} == {"jira__", "wiki__"}


def test_long_names_colliding_after_truncation_get_suffixes() -> None:
    long = "a" * 100
    result = assign_tool_names([("s1", "Jira", long), ("s2", "Jira", long)])
    first, second = (
        result.by_tool[ToolKey("s1", long)],
        result.by_tool[ToolKey("s2", long)],
    )
    assert len(first) == len(second) == MAX_NAME_LENGTH
    assert second.endswith("_2")
    assert not first.endswith("_2")


def test_unicode_and_punctuation_names_are_all_valid() -> None:
    tools = [
        ("s1", "Ünïcödé Server", n)
        for n in ["検索", "翻訳", "naïve", "a.b.c", "x/y", "hello world", "🙂", "9x"]
    ]
    result = names(*tools)
    assert len(result) == len(tools)
    assert all(NAME_PATTERN.match(name) for name in result)
    assert {key.tool_name for key in result.values()} == {t[2] for t in tools}


SMALL = (
    ToolRef("s1", "Jira", "search"),
    ToolRef("s2", "GitHub", "search"),
    ToolRef("s2", "GitHub", "Read"),
    ToolRef("s3", "Docs", "read"),
    ToolRef("s3", "Docs", "x" * 70),
)


def test_determinism_under_permutation() -> None:
    expected = assign_tool_names(SMALL, {"read"})
    for order in itertools.permutations(SMALL):
        result = assign_tool_names(order, ["READ"])
        assert result.by_exposed == expected.by_exposed
        assert list(result.by_exposed) == list(expected.by_exposed)


def test_reverse_mapping() -> None:
    result = assign_tool_names(SMALL)
    assert len(result.by_tool) == len(result.by_exposed) == len(SMALL)
    for exposed, key in result.by_exposed.items():
        assert result.by_tool[key] == exposed
        assert result.resolve(exposed) == key
        assert result.exposed(*key) == exposed


def test_lookups_of_unknown_names_raise_not_found() -> None:
    result = assign_tool_names(SMALL)
    with pytest.raises(NotFound, match="no tool is exposed"):
        result.resolve("nope")
    with pytest.raises(NotFound, match="has no exposed name"):
        result.exposed("s1", "nope")


def test_mappings_are_read_only() -> None:
    result = assign_tool_names(SMALL)
    with pytest.raises(TypeError):
        result.by_exposed["x"] = ToolKey("s", "x")  # type: ignore[index]
