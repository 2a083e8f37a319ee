"""Read a function's manifest from the `key: value` lines of its module docstring.

Compatibility rule (observed in Open WebUI 0.12.4, `open_webui/utils/plugin.py`, `extract_frontmatter`):

* the content is split with `str.splitlines()`; frontmatter exists only when the first line, stripped of
  whitespace, is exactly three double quotes;
* every following line up to (not including) the first line that contains three double quotes anywhere is
  matched, case-insensitively, against "optional whitespace, a key of letters and underscores, a colon, the
  rest of the line"; the key is kept as written (not lower-cased), the value is the rest of the line with
  surrounding whitespace removed, and a repeated key keeps its first position with its last value;
* lines that do not match are skipped, and a docstring that is never closed is read to the end of the file.

For every file Open WebUI reads, this module gives exactly that manifest. That is why keys have no digits or
hyphens (the product spec also mentions digits, but `step1: …` gives nothing in Open WebUI, so accepting it
would give a different manifest), why prose lines such as `Features:` become empty keys, why
`description: >` gives `>`, and why `https://example.com` on its own line gives a key `https`.

Where Open WebUI silently reads nothing although the file plainly has a module docstring, we read it anyway
with the same line rule. Each tolerance is marked "Tolerance" below.
"""

from __future__ import annotations

import re

# IGNORECASE on a str pattern also lets `[a-z]` match the four non-ASCII letters whose case folds onto ASCII
# (İ, ı, ſ and the Kelvin sign). Open WebUI's pattern behaves the same way, so we keep that on purpose.
_KEY_LINE = re.compile(r"\s*([a-z_]+):(.*)", re.IGNORECASE)

_OPEN_WEBUI_OPENING = '"""'

# Tolerance: a raw or unicode docstring (r\"\"\"…, u'''…) is still the module docstring. Byte strings and
# f-strings are not docstrings in Python, so they are not accepted.
_DOCSTRING_OPENING = re.compile(r"[rRuU]?(\"\"\"|''')")


def parse_frontmatter(content: str) -> dict[str, str]:
    """Return the manifest written in the frontmatter of `content`, or `{}` when it has none."""
    if not isinstance(content, str):
        return {}
    lines = content.splitlines()
    opening = _find_opening(lines)
    if opening is None:
        return {}
    first_body_index, quotes, rest_of_opening_line = opening

    body = lines[first_body_index:]
    if rest_of_opening_line is not None:
        body = [rest_of_opening_line, *body]

    manifest: dict[str, str] = {}
    for line in body:
        # The line holding the closing quotes is never read, even if it starts with `key: value`
        # (Open WebUI stops before it, so `version: 1"""` is not part of its manifest).
        if quotes in line:
            break
        match = _KEY_LINE.match(line)
        if match:
            key, value = match.groups()
            manifest[key] = value.strip()
    return manifest


def _find_opening(lines: list[str]) -> tuple[int, str, str | None] | None:
    """Locate the docstring that holds the frontmatter.

    Returns (index of the first line after the opening line, the closing quotes to look for, the text after
    the opening quotes on the opening line or None when that text is not part of the body), or None.
    """
    if not lines:
        return None
    # Open WebUI's own rule: the whole first line is the opening quotes.
    if lines[0].strip() == _OPEN_WEBUI_OPENING:
        return 1, _OPEN_WEBUI_OPENING, None

    for index, line in enumerate(lines):
        if index == 0:
            # Tolerance: a UTF-8 byte-order mark left by an editor; Python ignores it in a source file.
            line = line.removeprefix("\ufeff")
        stripped = line.strip()
        # Tolerance: blank lines and comments (a shebang, a coding line, a licence header) before the
        # docstring. Python still treats the first string statement after them as the module docstring.
        if not stripped or stripped.startswith("#"):
            continue
        match = _DOCSTRING_OPENING.match(stripped)
        if match is None:
            return None
        # Tolerance: `'''` quotes, and text on the opening line (`"""title: x`, or `""""` whose body starts
        # with a quote): the rest of the opening line is read as the first body line.
        quotes = match.group(1)
        return index + 1, quotes, stripped[match.end() :]
    return None
