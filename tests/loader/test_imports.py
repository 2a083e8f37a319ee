"""Import rewriting: only real `from utils|apps|main|config…` statements change (SPEC §4.2)."""

import ast

import pytest

from loader.imports import rewrite_imports

REWRITTEN = [
    pytest.param("from utils.misc import x\n", "from open_webui.utils.misc import x\n", id="submodule"),
    pytest.param("from utils import misc\n", "from open_webui.utils import misc\n", id="package"),
    pytest.param(
        "from apps.webui.models.users import Users\n",
        "from open_webui.apps.webui.models.users import Users\n",
        id="apps",
    ),
    pytest.param("from main import app\n", "from open_webui.main import app\n", id="main"),
    pytest.param(
        "from config import X as Y\n", "from open_webui.config import X as Y\n", id="config-with-alias"
    ),
    pytest.param("from utils.misc import *\n", "from open_webui.utils.misc import *\n", id="star"),
    pytest.param(
        "from   utils.misc   import x\n", "from   open_webui.utils.misc   import x\n", id="extra-spaces-kept"
    ),
    pytest.param("from\tutils import x\n", "from\topen_webui.utils import x\n", id="tab"),
    pytest.param(
        "def f():\n    from utils.misc import x\n    return x\n",
        "def f():\n    from open_webui.utils.misc import x\n    return x\n",
        id="inside-function",
    ),
    pytest.param(
        "try:\n    from utils.chat import g\nexcept ImportError:\n    g = None\n",
        "try:\n    from open_webui.utils.chat import g\nexcept ImportError:\n    g = None\n",
        id="inside-try",
    ),
    pytest.param(
        "class A:\n    if True:\n        from main import app\n",
        "class A:\n    if True:\n        from open_webui.main import app\n",
        id="nested-blocks",
    ),
    pytest.param(
        "if True: from utils import x\n", "if True: from open_webui.utils import x\n", id="after-colon"
    ),
    pytest.param(
        "import os; from utils import x; from main import y\n",
        "import os; from open_webui.utils import x; from open_webui.main import y\n",
        id="after-semicolons-two-on-one-line",
    ),
    pytest.param(
        "from \\\n    utils.misc import x\n",
        "from \\\n    open_webui.utils.misc import x\n",
        id="backslash-continuation",
    ),
    pytest.param(
        "from utils.misc import (\n    a,\n    b,  # from utils import c\n)\n",
        "from open_webui.utils.misc import (\n    a,\n    b,  # from utils import c\n)\n",
        id="parenthesised-names",
    ),
    pytest.param(
        "from utils.misc import a, \\\n    b\n",
        "from open_webui.utils.misc import a, \\\n    b\n",
        id="continued-names",
    ),
    pytest.param(
        "x = 'é'; from utils import y\n",
        "x = 'é'; from open_webui.utils import y\n",
        id="non-ascii-before-on-line",
    ),
    pytest.param(
        "from utils import x\r\nfrom main import y\r\n",
        "from open_webui.utils import x\r\nfrom open_webui.main import y\r\n",
        id="crlf",
    ),
    pytest.param("from utils import x", "from open_webui.utils import x", id="no-final-newline"),
    pytest.param(
        "\ufefffrom utils import x\n", "\ufefffrom open_webui.utils import x\n", id="byte-order-mark"
    ),
]


@pytest.mark.parametrize(("source", "expected"), REWRITTEN)
def test_real_imports_are_rewritten(source, expected):
    assert rewrite_imports(source) == expected


UNCHANGED = [
    pytest.param("import utils.misc\n", id="plain-import-like-open-webui"),
    pytest.param("import main, config\n", id="plain-import-list"),
    pytest.param("from configparser import ConfigParser\n", id="configparser"),
    pytest.param("from mainframe import x\n", id="mainframe"),
    pytest.param("from utilsx import x\n", id="utilsx"),
    pytest.param("from apps_extra.y import x\n", id="apps-prefix"),
    pytest.param("from .utils import x\n", id="relative"),
    pytest.param("from ..main import x\n", id="relative-parent"),
    pytest.param("from . import utils\n", id="relative-bare"),
    pytest.param("from open_webui.utils.misc import x\n", id="already-rewritten"),
    pytest.param("from mypkg.utils import x\n", id="utils-not-first"),
    pytest.param("# from utils import x\n", id="comment"),
    pytest.param("x = 1  # from utils import x\n", id="trailing-comment"),
    pytest.param('s = "from utils import x"\n', id="string"),
    pytest.param('"""\nUsage: from utils.misc import x\n"""\n', id="docstring"),
    pytest.param("s = f'from main import {name}'\n", id="f-string"),
    pytest.param("s = '''\nfrom config import X\n'''\n", id="triple-quoted-string"),
    pytest.param("def g():\n    yield from main\n", id="yield-from"),
    pytest.param("try:\n    pass\nexcept E as e:\n    raise X from config\n", id="raise-from"),
    pytest.param("main = 1\nconfig = main\n", id="names-only"),
    pytest.param("def broken(:\nfrom utils import x\n", id="syntax-error"),
    pytest.param("from utils import (x\n", id="unterminated-parenthesis"),
    pytest.param("s = 'unterminated\nfrom utils import x\n", id="unterminated-string"),
    pytest.param("from utils import x\x00\n", id="null-byte"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("source", UNCHANGED)
def test_everything_else_is_left_alone(source):
    assert rewrite_imports(source) == source


MIXED = '''"""
title: Mixed
description: from utils import nothing here
"""
import json  # from main import app
from configparser import ConfigParser
from .utils import local
from utils.misc import get_last_user_message
from open_webui.models.users import Users

PROMPT = f"""
from config import {json.dumps("x")}
"""


class Filter:
    def inlet(self, body):
        try:
            from main import app  # noqa
        except ImportError:
            app = None
        return body
'''


def test_mixed_module_only_real_imports_change_and_lines_stay_put():
    result = rewrite_imports(MIXED)
    assert result.count("open_webui.") == MIXED.count("open_webui.") + 2
    assert "from open_webui.utils.misc import get_last_user_message" in result
    assert "            from open_webui.main import app  # noqa" in result
    assert "description: from utils import nothing here" in result
    assert "import json  # from main import app" in result
    assert "from config import {json.dumps" in result
    assert result.splitlines()[7] == "from open_webui.utils.misc import get_last_user_message"
    assert len(result.splitlines()) == len(MIXED.splitlines())
    # Removing what was inserted gives the original back, byte for byte.
    assert (
        result.replace("from open_webui.utils.misc", "from utils.misc").replace(
            "from open_webui.main", "from main"
        )
        == MIXED
    )


def test_rewriting_twice_changes_nothing_more():
    once = rewrite_imports(MIXED)
    assert rewrite_imports(once) == once


def test_ast_positions_unchanged_so_error_lines_match():
    result = rewrite_imports(MIXED)
    before = [
        (node.lineno, node.end_lineno) for node in ast.walk(ast.parse(MIXED)) if isinstance(node, ast.stmt)
    ]
    after = [
        (node.lineno, node.end_lineno) for node in ast.walk(ast.parse(result)) if isinstance(node, ast.stmt)
    ]
    assert before == after


def test_every_old_style_import_is_rewritten_in_a_large_file():
    block = "from utils.misc import a\nimport os\nfrom main import b\nx = 'from config import c'\n"
    source = block * 2000
    result = rewrite_imports(source)
    assert result.count("from open_webui.utils.misc import a") == 2000
    assert result.count("from open_webui.main import b") == 2000
    assert result.count("'from config import c'") == 2000
