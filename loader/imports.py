"""Rewrite old-style Open WebUI imports (`from utils.misc import …`) to the `open_webui` package.

Open WebUI 0.12 (`replace_imports` in `open_webui/utils/plugin.py`) replaces the text `from utils`,
`from apps`, `from main` and `from config` anywhere in the file, so it also changes strings, comments and
other modules (`from configparser import …` becomes `from open_webui.configparser import …`). Here only real
`from X… import …` statements are changed, found with `ast`:

* absolute imports whose first module component is exactly `utils`, `apps`, `main` or `config`, at any depth
  (inside functions, classes, `try` blocks, on a line after `;`), however the statement is spread over lines
  (backslash continuations, parenthesised name lists);
* `import utils.misc` is left alone, as Open WebUI leaves it: rewriting it to `import open_webui.utils.misc`
  would bind the name `open_webui` instead of `utils` and break every later `utils.misc.…` in the module;
* relative imports (`from .utils import x`), other modules (`configparser`, `mainframe`, `utilsx`) and
  imports that already name `open_webui` are untouched, so rewriting twice changes nothing more.

The edit only inserts `open_webui.` in front of the module name: every other character, and so every line
number the loader reports, stays where it was. Source Python cannot parse is returned unchanged; the loader
reports its syntax error.
"""

from __future__ import annotations

import ast
import re

OLD_STYLE_PACKAGES = frozenset({"utils", "apps", "main", "config"})
_PREFIX = "open_webui."

# Cheap pre-check: most files never mention these names as whole words, and then there is nothing to parse.
_MAYBE_OLD_STYLE = re.compile(r"(?<![\w.])(?:utils|apps|main|config)(?!\w)")

# Python's own line breaks. `str.splitlines()` would also split on form feeds, U+2028 and others inside
# string literals, and the line numbers would no longer match the ones `ast` reports.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

# What may stand between `from` and the module name: blanks and backslash continuations.
_GAP_AFTER_FROM = re.compile(r"(?:[ \t\f]|\\(?:\r\n|\r|\n))*")


def rewrite_imports(content: str) -> str:
    """Return `content` with old-style `from utils|apps|main|config…` imports pointed at `open_webui`."""
    if not _MAYBE_OLD_STYLE.search(content):
        return content
    # A byte-order mark is accepted by Python in a source file but not by `ast.parse` on a string.
    bom = "\ufeff" if content.startswith("\ufeff") else ""
    source = content[len(bom) :]
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # ValueError covers null bytes and unencodable surrogates.
        return content

    line_starts = [0] + [match.end() for match in _LINE_BREAK.finditer(source)]
    insert_at = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level != 0 or node.module is None:
            continue
        first_component = node.module.split(".", 1)[0]
        if first_component not in OLD_STYLE_PACKAGES:
            continue
        position = _module_name_position(source, line_starts, node, first_component)
        if position is not None:
            insert_at.append(position)

    if not insert_at:
        return content
    pieces = []
    previous = 0
    for position in sorted(insert_at):
        pieces.append(source[previous:position])
        pieces.append(_PREFIX)
        previous = position
    pieces.append(source[previous:])
    return bom + "".join(pieces)


def _module_name_position(source: str, line_starts: list[int], node: ast.ImportFrom, name: str) -> int | None:
    """Return the offset in `source` where the module name of this `from … import` statement starts."""
    line_start = line_starts[node.lineno - 1]
    line_end = line_starts[node.lineno] if node.lineno < len(line_starts) else len(source)
    # `ast` gives the column as a UTF-8 byte offset; turn it into a character offset.
    line_bytes = source[line_start:line_end].encode("utf-8")
    column = len(line_bytes[: node.col_offset].decode("utf-8"))
    keyword_at = line_start + column
    if not source.startswith("from", keyword_at):
        return None
    gap = _GAP_AFTER_FROM.match(source, keyword_at + len("from"))
    name_at = gap.end()
    # Defensive: only insert when the text is really the name `ast` saw, followed by a non-name character.
    after = name_at + len(name)
    if source[name_at:after] != name or (
        after < len(source) and (source[after].isalnum() or source[after] == "_")
    ):
        return None
    return name_at
