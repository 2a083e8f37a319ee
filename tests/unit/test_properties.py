"""Property tests (hypothesis) for the parsers that read what strangers write: the frontmatter parser, the import
rewriter, URL rewriting and valves form decoding never crash, and are idempotent where they should be.

hypothesis is a test requirement (requirements-dev.txt); without it these tests are skipped, not failed.
"""

from __future__ import annotations

import ast

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from werkzeug.datastructures import MultiDict  # noqa: E402

from loader.frontmatter import parse_frontmatter  # noqa: E402
from loader.imports import rewrite_imports  # noqa: E402
from services import valves_form as vf  # noqa: E402
from services.url_loader import raw_url, suggest_name  # noqa: E402
from tests.unit.test_valves_form import SCHEMA, untouched_form  # noqa: E402

# Bounded: a few hundred examples each, no deadline (the machine is shared), the same examples on every run.
bounded = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

# Text that looks like what these parsers meet, mixed with anything at all.
LINES = st.sampled_from(
    [
        '"""',
        "'''",
        "title: A function",
        "requirements: requests, numpy>=1",
        "version: 0.1",
        "from utils.misc import get_last_user_message",
        "from apps.webui.models.users import Users",
        "from open_webui.utils.misc import pop_system_message",
        "from config import DATA_DIR",
        "import os",
        "class Filter:",
        "    pass",
        "    def inlet(self, body):",
        "        return body",
        "# from utils import x",
        "\ufeff",
        "",
        "\t",
    ]
)
SOURCES = st.one_of(
    st.text(),
    st.lists(st.one_of(LINES, st.text(max_size=20)), max_size=30).map("\n".join),
    st.lists(LINES, max_size=30).map("\r\n".join),
)


@bounded
@given(SOURCES)
def test_the_frontmatter_parser_never_crashes(content):
    manifest = parse_frontmatter(content)
    assert isinstance(manifest, dict)
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in manifest.items())


@bounded
@given(SOURCES)
def test_the_import_rewriter_never_crashes_is_idempotent_and_keeps_code_valid(content):
    rewritten = rewrite_imports(content)
    assert rewrite_imports(rewritten) == rewritten
    try:
        ast.parse(content.removeprefix("\ufeff"))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return
    ast.parse(rewritten.removeprefix("\ufeff"))  # code that parsed still parses


URL_PARTS = st.sampled_from(
    [
        "https://",
        "http://",
        "github.com/",
        "gist.github.com/",
        "raw.githubusercontent.com/",
        "owner/",
        "repo/",
    ]
    + ["blob/", "tree/", "raw/", "main/", "dir/", "f.py", "?", "#", "%", "[", "]", "@", ":", " ", "//"]
)
URLS = st.one_of(st.text(), st.lists(st.one_of(URL_PARTS, st.text(max_size=5)), max_size=12).map("".join))


@bounded
@given(URLS)
def test_url_rewriting_never_crashes_and_is_idempotent(url):
    try:
        fetched = raw_url(url)
    except ValueError:  # urlsplit refuses some (an unclosed "[" host): the caller answers "not a valid URL"
        return
    assert raw_url(fetched) == fetched
    assert isinstance(suggest_name(url), str)


FIELD_IDS = [view.input_id for view in vf.build_views(vf.describe(SCHEMA), {})]
FORMS = st.lists(
    st.tuples(st.sampled_from(FIELD_IDS + ["unknown", "reset", ""]), st.text(max_size=40)), max_size=40
).map(MultiDict)


@bounded
@given(FORMS)
def test_valves_form_decoding_never_crashes(form):
    submission = vf.parse_submission(vf.describe(SCHEMA), form, {})
    assert isinstance(submission.values, dict) and isinstance(submission.errors, dict)
    assert set(submission.values) <= set(SCHEMA["properties"])


@bounded
@given(FORMS)
def test_a_decoded_form_rendered_again_and_sent_back_untouched_decodes_the_same(form):
    fields = vf.describe(SCHEMA)
    first = vf.parse_submission(fields, form, {})
    if not first.ok:
        return
    again = vf.parse_submission(fields, untouched_form(SCHEMA, first.values), first.values)
    assert again.ok, again.errors
    assert again.values == first.values
