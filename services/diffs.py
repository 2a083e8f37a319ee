"""What changed between two versions of a function: the code line by line, and the name and meta key by key.

Plain values only (no HTML): the console highlights and marks them, the API turns the same comparison into a unified
diff. Lines are split as ``str.splitlines`` splits them, as the API's ``content_diff`` does, so the counts agree.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

CONTEXT_LINES = 3


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "same", "added" or "removed"
    text: str
    old_number: int | None  # 1-based line number in the older code, None for an added line
    new_number: int | None  # 1-based line number in the newer code, None for a removed line


@dataclass(frozen=True)
class Hunk:
    """A run of changes with the unchanged lines around them, as in a unified diff's ``@@`` block."""

    old_start: int
    old_count: int
    new_start: int
    new_count: int
    lines: list[DiffLine]

    @property
    def header(self) -> str:
        """The ``@@`` line a unified diff gives this hunk (a count of one is left out, as there)."""

        def span(start: int, count: int) -> str:
            return str(start) if count == 1 else f"{start},{count}"

        return f"@@ -{span(self.old_start, self.old_count)} +{span(self.new_start, self.new_count)} @@"


@dataclass(frozen=True)
class CodeDiff:
    hunks: list[Hunk]
    added: int
    removed: int
    line_endings_only: bool

    @property
    def unchanged(self) -> bool:
        return not self.hunks


@dataclass(frozen=True)
class MetaChange:
    """One key of the name or meta that differs; ``path`` names it (``name``, ``description``, ``manifest.version``)."""

    path: str
    before: Any
    after: Any
    kind: str = field(default="changed")  # "added", "removed" or "changed"


def _matcher(old_lines: list[str], new_lines: list[str]) -> difflib.SequenceMatcher:
    # The same matcher difflib.unified_diff uses, so these hunks are the API's content_diff.
    return difflib.SequenceMatcher(None, old_lines, new_lines)


def line_changes(old: str, new: str) -> tuple[int, int]:
    """How many lines ``new`` adds and removes compared with ``old``: the size of a change."""
    added = removed = 0
    for tag, i1, i2, j1, j2 in _matcher(old.splitlines(), new.splitlines()).get_opcodes():
        if tag in ("replace", "delete"):
            removed += i2 - i1
        if tag in ("replace", "insert"):
            added += j2 - j1
    return added, removed


def code_diff(old: str, new: str, context: int = CONTEXT_LINES) -> CodeDiff:
    """The changed lines of ``new`` against ``old``, grouped in hunks with ``context`` unchanged lines around."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    hunks: list[Hunk] = []
    added = removed = 0
    for group in _matcher(old_lines, new_lines).get_grouped_opcodes(context):
        lines: list[DiffLine] = []
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for offset in range(i2 - i1):
                    lines.append(DiffLine("same", old_lines[i1 + offset], i1 + offset + 1, j1 + offset + 1))
                continue
            for index in range(i1, i2):
                lines.append(DiffLine("removed", old_lines[index], index + 1, None))
            for index in range(j1, j2):
                lines.append(DiffLine("added", new_lines[index], None, index + 1))
            removed += i2 - i1
            added += j2 - j1
        first, last = group[0], group[-1]
        old_count, new_count = last[2] - first[1], last[4] - first[3]
        hunks.append(
            Hunk(
                # As in a unified diff: an empty side starts at the line before it.
                old_start=first[1] + 1 if old_count else first[1],
                old_count=old_count,
                new_start=first[3] + 1 if new_count else first[3],
                new_count=new_count,
                lines=lines,
            )
        )
    return CodeDiff(hunks, added, removed, line_endings_only=old != new and not hunks)


def _flatten(value: Any, prefix: str, into: dict[str, Any]) -> None:
    if isinstance(value, dict) and (value or not prefix):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), into)
    else:
        into[prefix] = value


def meta_changes(before: dict, after: dict) -> list[MetaChange]:
    """Each name or meta key that differs between two snapshots, nested keys named with dots, in a stable order.

    ``before`` and ``after`` hold ``name`` and ``meta``; meta's keys are shown without the ``meta.`` prefix (they are
    what an admin knows: ``description``, ``manifest.version``).
    """
    changes: list[MetaChange] = []
    if before.get("name") != after.get("name"):
        changes.append(MetaChange("name", before.get("name"), after.get("name")))
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    _flatten(before.get("meta") or {}, "", old)
    _flatten(after.get("meta") or {}, "", new)
    for path in sorted(old.keys() | new.keys()):
        if path not in new:
            changes.append(MetaChange(path, old[path], None, "removed"))
        elif path not in old:
            changes.append(MetaChange(path, None, new[path], "added"))
        elif old[path] != new[path]:
            changes.append(MetaChange(path, old[path], new[path]))
    return changes
