"""services.diffs: the console's comparison of two versions agrees with the API's unified diff, line for line."""

from __future__ import annotations

import difflib

import pytest

from services.diffs import MetaChange, code_diff, line_changes, meta_changes
from tests import factories

MARKS = {"same": " ", "added": "+", "removed": "-"}

PAIRS = [
    ("", factories.FILTER),
    (factories.FILTER, ""),
    (factories.FILTER, factories.FILTER.replace(">> ", "-> ")),
    (factories.FILTER, factories.PIPE),
    ("a\nb\nc\n", "a\nc\nd\n"),
    ("\n".join(map(str, range(40))), "\n".join(map(str, range(3, 45)))),
    ("x = 1", "x = 1\n"),
]


def as_unified(old: str, new: str) -> list[str]:
    """The console's hunks written out as a unified diff's body (without the file header)."""
    lines = []
    for hunk in code_diff(old, new).hunks:
        lines.append(hunk.header)
        lines += [MARKS[line.kind] + line.text for line in hunk.lines]
    return lines


@pytest.mark.parametrize("old, new", PAIRS)
def test_hunks_are_the_unified_diffs_the_api_gives(old, new):
    expected = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm=""))[2:]
    assert as_unified(old, new) == expected


@pytest.mark.parametrize("old, new", PAIRS)
def test_line_numbers_point_at_the_lines_shown(old, new):
    old_lines, new_lines = old.splitlines(), new.splitlines()
    for hunk in code_diff(old, new).hunks:
        for line in hunk.lines:
            if line.old_number is not None:
                assert old_lines[line.old_number - 1] == line.text
            if line.new_number is not None:
                assert new_lines[line.new_number - 1] == line.text
            assert (line.kind == "added") == (line.old_number is None)
            assert (line.kind == "removed") == (line.new_number is None)


@pytest.mark.parametrize("old, new", PAIRS)
def test_the_size_of_a_change_counts_the_diffs_lines(old, new):
    diff = code_diff(old, new)
    assert line_changes(old, new) == (diff.added, diff.removed)
    marks = [line[0] for line in as_unified(old, new) if not line.startswith("@@")]
    assert (diff.added, diff.removed) == (marks.count("+"), marks.count("-"))


def test_a_first_version_adds_all_its_lines():
    assert line_changes("", "a\nb\n") == (2, 0)


def test_line_endings_alone_are_told_apart_from_no_change():
    crlf = code_diff("a\nb\n", "a\r\nb\r\n")
    assert crlf.unchanged and crlf.line_endings_only
    same = code_diff("a\nb\n", "a\nb\n")
    assert same.unchanged and not same.line_endings_only


def test_meta_changes_name_each_key_that_differs():
    before = {
        "name": "Old",
        "meta": {"description": "d", "manifest": {"version": "1", "license": "MIT"}, "x": 1},
    }
    after = {
        "name": "New",
        "meta": {"description": "d", "manifest": {"version": "2", "author": "Ada"}, "y": [1]},
    }
    assert meta_changes(before, after) == [
        MetaChange("name", "Old", "New"),
        MetaChange("manifest.author", None, "Ada", "added"),
        MetaChange("manifest.license", "MIT", None, "removed"),
        MetaChange("manifest.version", "1", "2"),
        MetaChange("x", 1, None, "removed"),
        MetaChange("y", None, [1], "added"),
    ]
    assert meta_changes(before, before) == []
    assert meta_changes({"name": "A", "meta": {}}, {"name": "A", "meta": None}) == []
