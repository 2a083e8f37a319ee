"""The function editor: a failed save keeps what was typed and marks the failing line; the fix saves."""

from __future__ import annotations

import re
import textwrap

import pytest
from playwright.sync_api import expect

from tests.browser.support import LAPTOP, PHONE, shot

FUNCTION_ID = "typed_filter"

CODE = textwrap.dedent(
    '''\
    """
    title: Typed Filter
    description: Written in a real browser.
    """


    class Filter:
        def inlet(self, body: dict) -> dict:
            return body
    '''
)
DEF_LINE = 8  # "    def inlet(self, body: dict) -> dict:"
COMMENT = "  # typed in Chromium"


def editor_text(page) -> str:
    return page.evaluate("document.querySelector('textarea#content').sluiceEditor.getValue()")


def click_end_of_line(page, text: str) -> None:
    """Put the cursor at the end of the editor line that contains ``text``, as a person would."""
    page.locator(".cm-line", has_text=text).click()
    page.keyboard.press("End")


@pytest.mark.browser
def test_a_syntax_error_is_marked_on_its_line_then_the_fix_saves(admin_page, live_server):
    page = admin_page
    page.goto("/admin/functions/create")
    editor = page.locator(".sluice-editor")
    expect(page.locator('.code-field[data-editor-ready="1"]')).to_be_visible()
    expect(editor.locator(".cm-content")).to_have_attribute("contenteditable", "true")
    shot(page, "function-create")

    # Set up the code through the editor's API, then break it with the keyboard: delete the colon of `def`.
    page.evaluate("code => document.querySelector('textarea#content').sluiceEditor.setValue(code)", CODE)
    # The title: and description: lines of the docstring fill the empty name and description; the id follows.
    expect(page.get_by_label("Name")).to_have_value("Typed Filter")
    expect(page.locator("#id")).to_have_value(FUNCTION_ID)
    expect(page.get_by_label("Description")).to_have_value("Written in a real browser.")

    click_end_of_line(page, "return body")
    page.keyboard.type(COMMENT)
    click_end_of_line(page, "def inlet")
    page.keyboard.press("Backspace")
    broken = CODE.replace("-> dict:", "-> dict").replace("return body", "return body" + COMMENT)
    assert editor_text(page) == broken
    expect(page.locator("textarea#content")).to_have_value(broken)  # what the form posts

    # Ctrl+S in the editor saves; the loader refuses the code.
    with page.expect_response(
        lambda r: r.request.method == "POST" and "/admin/functions/create" in r.url
    ) as answer:
        page.keyboard.press("Control+s")
    assert answer.value.status == 400
    error_box = page.get_by_test_id("code-error")
    expect(error_box).to_be_visible()
    expect(error_box).to_contain_text(f"Line {DEF_LINE}")
    expect(error_box).to_contain_text("SyntaxError")
    expect(page.locator('.code-field[data-editor-ready="1"]')).to_be_visible()

    # The failing line is marked in the editor: a red line and an error marker in the gutter.
    marked = editor.locator(".cm-line.cm-sluice-errorLine")
    expect(marked).to_have_count(1)
    expect(marked).to_contain_text("def inlet(self, body: dict) -> dict")
    expect(editor.locator(".cm-gutter .cm-lint-marker-error")).to_have_count(1)
    # Everything typed is kept: code, name, id and description.
    assert editor_text(page) == broken
    expect(page.get_by_label("Name")).to_have_value("Typed Filter")
    expect(page.locator("#id")).to_have_value(FUNCTION_ID)
    expect(page.get_by_label("Description")).to_have_value("Written in a real browser.")
    assert live_server.api("GET", f"/api/v1/functions/id/{FUNCTION_ID}").status_code == 404
    shot(page, "function-create-syntax-error")

    # The box says it once, then where: "Line 8, column N" is a link that puts the editor's cursor there.
    assert error_box.inner_text().count("SyntaxError") == 1
    assert error_box.inner_text().count(f"{DEF_LINE}") == 1
    page.locator("#name").focus()
    page.get_by_test_id("code-error-line").focus()
    page.keyboard.press("Enter")
    expect(editor.locator(".cm-content")).to_be_focused()
    cursor_line = page.evaluate(
        "(() => { const view = document.querySelector('textarea#content').sluiceEditor.view;"
        " return view.state.doc.lineAt(view.state.selection.main.head).number; })()"
    )
    assert cursor_line == DEF_LINE
    expect(editor.locator(".cm-gutter .cm-lint-marker-error")).to_have_count(1)  # not marked a second time

    # Fix the line by typing the colon back, and save with Ctrl+S again.
    click_end_of_line(page, "def inlet")
    page.keyboard.type(":")
    fixed = CODE.replace("return body", "return body" + COMMENT)
    assert editor_text(page) == fixed
    page.keyboard.press("Control+s")

    expect(page).to_have_url(re.compile(rf"/admin/functions/edit\?id={FUNCTION_ID}$"))
    expect(page.locator(".flash-success")).to_have_text("Saved Typed Filter.")
    expect(page.get_by_role("heading", name="Typed Filter", exact=True)).to_be_visible()
    expect(page.locator("#id")).to_have_attribute("readonly", "")
    expect(page.locator('.code-field[data-editor-ready="1"]')).to_be_visible()
    expect(page.locator(".cm-sluice-errorLine")).to_have_count(0)
    assert editor_text(page) == fixed

    stored = live_server.api_json("GET", f"/api/v1/functions/id/{FUNCTION_ID}")
    assert stored["content"] == fixed
    assert stored["name"] == "Typed Filter"
    assert stored["type"] == "filter"
    assert stored["meta"]["description"] == "Written in a real browser."

    shot(page, "function-edit-laptop", LAPTOP)
    shot(page, "function-edit-phone", PHONE)


@pytest.mark.browser
def test_tab_indents_inside_the_editor_and_does_not_leave_it(admin_page):
    page = admin_page
    page.goto("/admin/functions/create")
    expect(page.locator('.code-field[data-editor-ready="1"]')).to_be_visible()
    page.evaluate("document.querySelector('textarea#content').sluiceEditor.setValue('x = 1\\n')")
    page.locator(".cm-line", has_text="x = 1").click()
    page.keyboard.press("Home")
    page.keyboard.press("Tab")
    expect(page.locator(".cm-content")).to_be_focused()
    assert editor_text(page) == "    x = 1\n"


# --- name, id and description follow the code's frontmatter until the admin types their own ----------------------

READY = '.code-field[data-editor-ready="1"]'

PASTE = """(code) => {
    const data = new DataTransfer();
    data.setData("text/plain", code);
    document.querySelector(".cm-content").dispatchEvent(
        new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
}"""


def paste_over_everything(page, code: str) -> None:
    """Select all in the editor with the keyboard, then paste ``code`` (a paste event, as the clipboard gives it)."""
    page.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.evaluate(PASTE, code)
    assert editor_text(page) == code


def expect_fields(page, name: str, id: str, description: str) -> None:
    expect(page.get_by_label("Name")).to_have_value(name)
    expect(page.locator("#id")).to_have_value(id)
    expect(page.get_by_label("Description")).to_have_value(description)


STARTER_DESCRIPTION = (
    "Adjusts each request before it reaches the model and each reply before the user sees it."
)


SHEBANG_CODE = '#!/usr/bin/env python\n"""\ntitle: Shebang Func\ndescription: has header\n"""\n\n\nclass Filter:\n    pass\n'


@pytest.mark.browser
@pytest.mark.parametrize(
    ("code", "fields"),
    [
        pytest.param(
            SHEBANG_CODE, ("Shebang Func", "shebang_func", "has header"), id="shebang-before-docstring"
        ),
        pytest.param(
            "'''\ntitle: Single Quoted\ndescription: in single quotes\n'''\nclass Filter:\n    pass\n",
            ("Single Quoted", "single_quoted", "in single quotes"),
            id="single-quotes",
        ),
        pytest.param(
            '"""\ntitle: Title Only\n"""\nclass Filter:\n    pass\n',
            ("Title Only", "title_only", ""),
            id="no-description",
        ),
        pytest.param("class Filter:\n    pass\n", ("", "", ""), id="no-docstring"),
    ],
)
def test_pasted_code_replaces_the_starters_name_id_and_description(admin_page, code, fields):
    page = admin_page
    page.goto("/admin/functions/create")
    expect(page.locator(READY)).to_be_visible()
    expect_fields(page, "My Filter", "my_filter", STARTER_DESCRIPTION)
    paste_over_everything(page, code)
    expect_fields(page, *fields)


@pytest.mark.browser
def test_pasted_code_is_saved_under_its_own_title_and_what_the_admin_typed_is_kept(admin_page, live_server):
    page = admin_page
    page.goto("/admin/functions/create")
    expect(page.locator(READY)).to_be_visible()
    paste_over_everything(page, SHEBANG_CODE)
    expect_fields(page, "Shebang Func", "shebang_func", "has header")
    page.keyboard.press("Control+s")
    expect(page).to_have_url(re.compile(r"/admin/functions/edit\?id=shebang_func$"))
    stored = live_server.api_json("GET", "/api/v1/functions/id/shebang_func")
    assert (stored["name"], stored["meta"]["description"]) == ("Shebang Func", "has header")

    # A name the admin typed is theirs: new code never overwrites it, and the id still follows it.
    page.goto("/admin/functions/create?template=action")
    expect(page.locator(READY)).to_be_visible()
    page.get_by_label("Name").fill("Typed Name")
    expect(page.locator("#id")).to_have_value("typed_name")
    paste_over_everything(
        page, '"""\ntitle: From Code\ndescription: from code\n"""\nclass Action:\n    pass\n'
    )
    expect_fields(page, "Typed Name", "typed_name", "from code")
    # So is a typed description; emptied, a field follows the code again.
    page.get_by_label("Description").fill("typed too")
    page.get_by_label("Name").fill("")
    paste_over_everything(
        page, '"""\ntitle: Second Code\ndescription: second\n"""\nclass Action:\n    pass\n'
    )
    expect_fields(page, "Second Code", "second_code", "typed too")


@pytest.mark.browser
def test_the_page_reads_frontmatter_as_the_server_does(admin_page):
    from loader import parse_frontmatter
    from tests.loader.test_frontmatter import OPEN_WEBUI_CASES, TOLERANT_CASES

    files = [case.values[0] for case in OPEN_WEBUI_CASES + TOLERANT_CASES]
    files += [
        SHEBANG_CODE,
        "",
        "import os\n'''\ntitle: x\n'''\n",
        'b"""\ntitle: x\n"""\n',
        '"""title: x"""\n',
        '"""\n\x1ctitle: a\x85b\n\u2028"""',  # Python's line breaks and whitespace, not JavaScript's
        '"""\ntitle: x\x1f\n"""',
        '"""\n\ufefftitle: x\n"""',  # a byte-order mark is not whitespace to Python
        '\ufeff\ufeff"""\ntitle: x\n"""',
        '"""\n\u0130\u0131\u017f\u212a: v\n"""',
        '"""\n__proto__: x\nconstructor: y\ntitle: z\n"""',
        "R'''x: 1\n'''",
    ]
    page = admin_page
    page.goto("/admin/functions/create")
    expect(page.locator(READY)).to_be_visible()
    seen = page.evaluate(
        "files => files.map(code => Object.entries(window.SluiceFunctionEditor.frontmatter(code)))", files
    )
    for code, entries in zip(files, seen, strict=True):
        assert [tuple(entry) for entry in entries] == list(parse_frontmatter(code).items()), repr(code)


@pytest.mark.browser
def test_a_docstring_typed_by_hand_gets_its_closing_quotes_on_their_own_line(admin_page):
    page = admin_page
    page.goto("/admin/functions/create")
    expect(page.locator(READY)).to_be_visible()
    page.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    assert editor_text(page) == ""
    page.keyboard.type('"""')
    page.keyboard.press("Enter")
    page.keyboard.type("title: Typed By Hand")
    page.keyboard.press("Enter")
    page.keyboard.type("description: hand typed")
    assert editor_text(page) == '"""\ntitle: Typed By Hand\ndescription: hand typed\n"""'
    expect_fields(page, "Typed By Hand", "typed_by_hand", "hand typed")

    # Indented (a method's docstring), the body and the closing quotes keep the indentation.
    page.keyboard.press("Control+End")
    page.keyboard.press("Enter")
    page.keyboard.type("class Filter:")
    page.keyboard.press("Enter")
    page.keyboard.type("'''")
    page.keyboard.press("Enter")
    page.keyboard.type("doc")
    assert editor_text(page).endswith("\nclass Filter:\n    '''\n    doc\n    '''")


@pytest.mark.browser
def test_leaving_after_a_refused_save_asks_first(admin_page, live_server):
    live_server.create_function("leave_check", CODE.replace("Typed Filter", "Leave Check"))
    page = admin_page
    page.goto("/admin/functions/edit?id=leave_check")
    expect(page.locator(READY)).to_be_visible()
    page.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\nx = = 1")
    with page.expect_response(
        lambda r: r.request.method == "POST" and "/admin/functions/edit" in r.url
    ) as answer:
        page.keyboard.press("Control+s")
    assert answer.value.status == 400
    expect(page.get_by_test_id("code-error")).to_be_visible()
    expect(page.locator(READY)).to_be_visible()
    assert editor_text(page).endswith("x = = 1\n") or editor_text(page).endswith("x = = 1")

    for leave in (
        page.get_by_test_id("source-link"),
        page.get_by_role("link", name="Cancel"),
        page.locator(".breadcrumbs a"),
    ):
        dialogs = []

        def stay(dialog, seen=dialogs):
            seen.append(dialog.type)
            dialog.dismiss()

        page.once("dialog", stay)
        leave.click()
        expect(page.locator(READY)).to_be_visible()
        assert dialogs == ["beforeunload"]
        assert "x = = 1" in editor_text(page)
    assert page.url.endswith("/admin/functions/edit?id=leave_check")


@pytest.mark.browser
def test_the_editor_is_described_by_the_code_fields_help_and_error(admin_page, live_server):
    page = admin_page
    page.goto("/admin/functions/create")
    expect(page.locator(READY)).to_be_visible()
    content = page.locator(".cm-content")
    expect(content).to_have_attribute("aria-describedby", "content-help")
    expect(content).not_to_have_attribute("aria-invalid", "true")

    paste_over_everything(
        page, CODE.replace("Typed Filter", "Described Filter").replace("-> dict:", "-> dict")
    )
    page.keyboard.press("Control+s")
    expect(page.get_by_test_id("code-error")).to_be_visible()
    expect(page.locator(READY)).to_be_visible()
    expect(content).to_have_attribute("aria-describedby", "content-help content-error")
    expect(content).to_have_attribute("aria-invalid", "true")
    # What the screen reader announces for the editor includes the error.
    description = page.evaluate(
        """() => document.querySelector(".cm-content").getAttribute("aria-describedby").split(" ")
            .map(id => document.getElementById(id).textContent.trim()).join(" ")"""
    )
    assert "SyntaxError" in description and "Tab indents" in description

    # Kept in step with the textarea when the page changes it.
    page.evaluate(
        """() => { const t = document.querySelector("textarea#content");
                  t.setAttribute("aria-describedby", "content-help"); t.removeAttribute("aria-invalid"); }"""
    )
    expect(content).to_have_attribute("aria-describedby", "content-help")
    expect(content).not_to_have_attribute("aria-invalid", "true")
    expect(content).to_have_attribute("aria-label", "Code")


@pytest.mark.browser
def test_the_id_field_warns_when_a_function_with_that_id_exists(admin_page, live_server):
    live_server.create_function("already_here", CODE.replace("Typed Filter", "Already Here"))
    page = admin_page
    page.goto("/admin/functions/create")
    expect(page.locator(READY)).to_be_visible()
    warning = page.get_by_test_id("id-taken")
    expect(warning).to_be_hidden()
    page.get_by_label("Name").fill("Already Here")  # the id follows the name
    expect(page.locator("#id")).to_have_value("already_here")
    expect(warning).to_be_visible()
    expect(warning.get_by_role("link", name="open it")).to_have_attribute(
        "href", "/admin/functions/edit?id=already_here"
    )
    shot(page, "function-create-id-taken")
    page.locator("#id").fill("already_here_2")
    expect(warning).to_be_hidden()
    page.locator("#id").fill("Already_Here")
    expect(warning).to_be_visible()


@pytest.mark.browser
def test_leaving_typed_code_asks_first_but_a_saved_page_does_not(admin_page, live_server):
    live_server.create_function("leave_typed", CODE.replace("Typed Filter", "Leave Typed"))
    page = admin_page
    page.goto("/admin/functions/edit?id=leave_typed")
    expect(page.locator(READY)).to_be_visible()
    click_end_of_line(page, "return body")
    page.keyboard.type(COMMENT)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.dismiss()))
    page.get_by_test_id("source-link").click()
    expect(page.locator(READY)).to_be_visible()
    assert dialogs == ["beforeunload"]
    assert COMMENT in editor_text(page)

    page.get_by_test_id("save").click()
    expect(page.locator(".flash-success")).to_be_visible()
    page.get_by_test_id("source-link").click()
    expect(page).to_have_url(re.compile(r"/admin/functions/source\?id=leave_typed$"))
    assert dialogs == ["beforeunload"]


@pytest.mark.browser
def test_a_refused_save_brings_its_message_into_view_with_the_focus(admin_page, live_server):
    live_server.create_function("focus_taken", CODE.replace("Typed Filter", "Focus Taken"))
    page = admin_page
    page.goto("/admin/functions/create")
    expect(page.locator(READY)).to_be_visible()
    page.get_by_label("Name").fill("Focus Taken")
    page.get_by_test_id("save").scroll_into_view_if_needed()
    page.get_by_test_id("save").click()
    error = page.locator("#id-error")
    expect(error).to_have_text("A function with this id already exists. Choose another id.")
    expect(error).to_be_focused()
    box = error.bounding_box()
    assert 0 <= box["y"] and box["y"] + box["height"] <= page.viewport_size["height"]


@pytest.mark.browser
def test_checking_a_free_id_makes_no_error_in_the_browser_console(admin_page, live_server):
    live_server.create_function("taken_here", CODE.replace("Typed Filter", "Taken Here"))
    page = admin_page
    console_errors, failed = [], []
    page.on(
        "console", lambda message: console_errors.append(message.text) if message.type == "error" else None
    )
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    page.goto("/admin/functions/create")
    expect(page.locator(READY)).to_be_visible()
    warning = page.get_by_test_id("id-taken")
    with page.expect_response(lambda r: "/admin/functions/id-available?id=free_one_here" in r.url) as checked:
        page.locator("#id").fill("free_one_here")
    assert checked.value.status == 200 and checked.value.json()["available"] is True
    expect(warning).to_be_hidden()
    with page.expect_response(lambda r: "/admin/functions/id-available?id=taken_here" in r.url):
        page.locator("#id").fill("taken_here")
    expect(warning).to_be_visible()
    assert console_errors == [] and failed == []
