"""Python code highlighted on the server by Pygments, with the token classes the console's ``.source-code`` styles
colour (static/css/sluice.css), so code reads the same on the source page, a history version and a diff, with or
without scripts."""

from __future__ import annotations

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer


def _lexer() -> PythonLexer:
    # stripnl=False: Pygments would otherwise drop leading and trailing blank lines and shift every line number.
    return PythonLexer(stripnl=False)


def source_table(content: str, *, anchors: str = "L") -> Markup:
    """The whole code as a table with linked line numbers (``#L-12``), as the source page shows it."""
    formatter = HtmlFormatter(
        linenos="table", anchorlinenos=True, lineanchors=anchors, cssclass="source-code", wrapcode=True
    )
    return Markup(highlight(content, _lexer(), formatter))  # noqa: S704 - Pygments escapes the source


def highlighted_lines(content: str) -> list[Markup]:
    """Each line of ``content`` (split as ``str.splitlines`` splits it, like the diffs) highlighted on its own.

    The whole text is highlighted at once, so a line inside a docstring is coloured as part of it; Pygments closes
    its spans at each line end, so every line is complete HTML.
    """
    lines = content.splitlines()
    if not lines:
        return []
    html = highlight("\n".join(lines) + "\n", _lexer(), HtmlFormatter(nowrap=True))
    out = html.split("\n")[: len(lines)]
    out += [""] * (len(lines) - len(out))
    return [Markup(line) for line in out]  # noqa: S704 - Pygments escapes the source
