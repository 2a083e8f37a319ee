"""Frontmatter: the manifest Open WebUI reads, plus the docstrings it misses (SPEC §4.1)."""

import ast
import logging
import os
import re

import pytest

from loader.frontmatter import parse_frontmatter

TYPICAL = '''"""
title: Example Filter
author: someone
author_url: https://github.com/someone
funding_url: https://github.com/open-webui
version: 0.1.2
license: MIT
description: Adds context to every message.
requirements: requests, pydantic>=2
required_open_webui_version: 0.5.0
"""

from pydantic import BaseModel


class Filter:
    pass
'''


def test_typical_community_header():
    assert parse_frontmatter(TYPICAL) == {
        "title": "Example Filter",
        "author": "someone",
        "author_url": "https://github.com/someone",
        "funding_url": "https://github.com/open-webui",
        "version": "0.1.2",
        "license": "MIT",
        "description": "Adds context to every message.",
        "requirements": "requests, pydantic>=2",
        "required_open_webui_version": "0.5.0",
    }


# Cases where Open WebUI 0.12 reads frontmatter (first line is exactly `"""`): the expected manifests are the
# ones Open WebUI gives for the same text.
OPEN_WEBUI_CASES = [
    pytest.param('"""\ntitle: x\n"""\n', {"title": "x"}, id="minimal"),
    pytest.param('  """  \ntitle: x\n"""', {"title": "x"}, id="opening-line-with-blanks"),
    pytest.param('"""\t\ntitle: x\n"""', {"title": "x"}, id="opening-line-with-tab"),
    pytest.param('"""\n  title:   spaced out   \n"""', {"title": "spaced out"}, id="value-trimmed"),
    pytest.param('"""\ntitle:x\n"""', {"title": "x"}, id="no-space-after-colon"),
    pytest.param('"""\nTitle: x\nAUTHOR: y\n"""', {"Title": "x", "AUTHOR": "y"}, id="key-case-kept"),
    pytest.param(
        '"""\ntitle: a\nversion: 1\ntitle: b\n"""', {"title": "b", "version": "1"}, id="last-duplicate-wins"
    ),
    pytest.param('"""\nFeatures:\n- fast\n"""', {"Features": ""}, id="prose-line-becomes-empty-key"),
    pytest.param('"""\nUsage: call it twice\n"""', {"Usage": "call it twice"}, id="prose-line-with-text"),
    pytest.param('"""\ndescription: >\n  folded text\n"""', {"description": ">"}, id="yaml-folded-marker"),
    pytest.param('"""\nhttps://example.com/page\n"""', {"https": "//example.com/page"}, id="bare-url-line"),
    pytest.param('"""\ntitle: a: b: c\n"""', {"title": "a: b: c"}, id="colons-in-value"),
    pytest.param('"""\nstep1: go\n"""', {}, id="digit-in-key-not-a-key"),
    pytest.param('"""\nauthor-url: x\n"""', {}, id="hyphen-in-key-not-a-key"),
    pytest.param('"""\ntitle : x\n"""', {}, id="space-before-colon-not-a-key"),
    pytest.param('"""\n_private_: x\n"""', {"_private_": "x"}, id="underscores-only-key"),
    pytest.param('"""\n\u212aey: v\n"""', {"\u212aey": "v"}, id="kelvin-sign-folds-to-ascii-like-open-webui"),
    pytest.param('"""\nnaïve: v\n"""', {}, id="other-non-ascii-key-not-a-key"),
    pytest.param('"""\ntitle: Café ☕ 日本語\n"""', {"title": "Café ☕ 日本語"}, id="unicode-value"),
    pytest.param('"""\r\ntitle: x\r\nversion: 2\r\n"""\r\n', {"title": "x", "version": "2"}, id="crlf"),
    pytest.param('"""\rtitle: x\r"""\r', {"title": "x"}, id="cr-only"),
    pytest.param('"""\ntitle: x\nversion: 1"""\n', {"title": "x"}, id="closing-line-not-read"),
    pytest.param(
        '"""\ntitle: x\nsays """ here\nversion: 1\n"""', {"title": "x"}, id="quotes-inside-stop-reading"
    ),
    pytest.param('"""\n"""\ntitle: x\n', {}, id="empty-docstring"),
    pytest.param(
        '"""\ntitle: x\nversion: 1\n', {"title": "x", "version": "1"}, id="unterminated-read-to-end"
    ),
    pytest.param('"""\ntitle: x\n"""\nlater: not frontmatter\n', {"title": "x"}, id="stops-at-closing"),
    pytest.param('"""\n\n\ntitle: x\n\n"""', {"title": "x"}, id="blank-lines-inside"),
    pytest.param('"""\n    title: indented\n"""', {"title": "indented"}, id="indented-key"),
    pytest.param('"""\ntitle: x\u00a0\n"""', {"title": "x"}, id="non-breaking-space-trimmed"),
    pytest.param(
        '"""\nicon_url: data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4=\n"""',
        {"icon_url": "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4="},
        id="data-uri-icon",
    ),
]


@pytest.mark.parametrize(("content", "expected"), OPEN_WEBUI_CASES)
def test_open_webui_readable_files_give_open_webui_manifest(content, expected):
    assert parse_frontmatter(content) == expected


def test_duplicate_key_keeps_first_position():
    manifest = parse_frontmatter('"""\ntitle: a\nversion: 1\ntitle: b\n"""')
    assert list(manifest) == ["title", "version"]


def test_long_data_uri_on_one_line_is_kept_whole():
    icon = "data:image/png;base64," + "A" * 200_000
    assert parse_frontmatter(f'"""\ntitle: x\nicon_url: {icon}\n"""\n')["icon_url"] == icon


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("", id="empty"),
        pytest.param("import os\n\nclass Pipe:\n    pass\n", id="no-docstring"),
        pytest.param("import os\n'''\ntitle: x\n'''\n", id="string-after-code-is-not-a-docstring"),
        pytest.param('x = """\ntitle: x\n"""\n', id="assigned-string"),
        pytest.param('b"""\ntitle: x\n"""\n', id="bytes-literal-is-not-a-docstring"),
        pytest.param('f"""\ntitle: x\n"""\n', id="f-string-is-not-a-docstring"),
        pytest.param('"""title: x"""\n', id="one-line-docstring-closing-line-not-read"),
        pytest.param(None, id="none"),
    ],
)
def test_no_frontmatter(content):
    assert parse_frontmatter(content) == {}


# Tolerances: Open WebUI reads nothing from these files, although each plainly starts with a module docstring.
TOLERANT_CASES = [
    pytest.param('\n\n"""\ntitle: x\n"""\n', {"title": "x"}, id="leading-blank-lines"),
    pytest.param('#!/usr/bin/env python3\n"""\ntitle: x\n"""\n', {"title": "x"}, id="shebang"),
    pytest.param('# -*- coding: utf-8 -*-\n"""\ntitle: x\n"""\n', {"title": "x"}, id="coding-line"),
    pytest.param('# Copyright\n# MIT\n\n"""\ntitle: x\n"""\n', {"title": "x"}, id="comment-header"),
    pytest.param("'''\ntitle: x\nversion: 1\n'''\n", {"title": "x", "version": "1"}, id="single-quotes"),
    pytest.param('"""title: x\nversion: 1\n"""\n', {"title": "x", "version": "1"}, id="key-on-opening-line"),
    pytest.param('""""\ntitle: x\n"""\n', {"title": "x"}, id="four-quotes"),
    pytest.param('r"""\ntitle: x\n"""\n', {"title": "x"}, id="raw-docstring"),
    pytest.param('\ufeff"""\ntitle: x\n"""\n', {"title": "x"}, id="byte-order-mark"),
    pytest.param(
        "'''\ntitle: x\nnote: has \"\"\" inside\n'''\n",
        {"title": "x", "note": 'has """ inside'},
        id="single-quotes-closing-is-single",
    ),
    pytest.param(
        "\r\n#!/usr/bin/env python\r\n'''\r\ntitle: x\r\n'''\r\n", {"title": "x"}, id="tolerant-crlf"
    ),
]


@pytest.mark.parametrize(("content", "expected"), TOLERANT_CASES)
def test_tolerated_docstrings(content, expected):
    assert parse_frontmatter(content) == expected


# Optional cross-check against Open WebUI itself: set SLUICE_OPEN_WEBUI_PLUGIN to the path of an installed
# `open_webui/utils/plugin.py` (the shared OPEN-WEBUI.md notes say how to install it). Its function is executed from that file, not copied.
OPEN_WEBUI_PLUGIN = os.environ.get("SLUICE_OPEN_WEBUI_PLUGIN")


@pytest.mark.skipif(not OPEN_WEBUI_PLUGIN, reason="SLUICE_OPEN_WEBUI_PLUGIN not set")
def test_same_manifest_as_installed_open_webui():
    with open(OPEN_WEBUI_PLUGIN, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    function = next(node for node in tree.body if getattr(node, "name", "") == "extract_frontmatter")
    namespace = {"re": re, "log": logging.getLogger(__name__)}
    exec(compile(ast.Module(body=[function], type_ignores=[]), OPEN_WEBUI_PLUGIN, "exec"), namespace)
    open_webui_extract = namespace["extract_frontmatter"]

    contents = [case.values[0] for case in OPEN_WEBUI_CASES] + [TYPICAL]
    for content in contents:
        assert list(parse_frontmatter(content).items()) == list(open_webui_extract(content).items()), content
