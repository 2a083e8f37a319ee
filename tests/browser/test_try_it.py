"""'Try it' on a function's page: each method kind run from the browser, streaming text, and the failing line."""

from __future__ import annotations

import re
import textwrap

import pytest
from playwright.sync_api import expect

from tests.browser.support import shot

FILTER = textwrap.dedent(
    '''\
    """
    title: Shouting Filter
    """


    class Filter:
        async def inlet(self, body: dict, __event_emitter__) -> dict:
            await __event_emitter__({"type": "status", "data": {"description": "Shouting", "done": True}})
            print("inlet saw", len(body["messages"]), "messages")
            body["messages"][-1]["content"] = body["messages"][-1]["content"].upper()
            return body

        def outlet(self, body: dict) -> dict:
            body["messages"][-1]["content"] += " (checked)"
            return body
    '''
)

PIPE = textwrap.dedent(
    '''\
    """
    title: Slow Words
    """

    import asyncio


    class Pipe:
        async def pipe(self, body: dict, __event_emitter__):
            await __event_emitter__({"type": "status", "data": {"description": "Thinking", "done": False}})
            for word in ("alpha ", "beta ", "gamma"):
                yield word
                await asyncio.sleep(0.6)
    '''
)

ACTION = textwrap.dedent(
    '''\
    """
    title: Count Words
    """


    class Action:
        async def action(self, body: dict, __event_emitter__) -> dict:
            words = len(body["messages"][-1]["content"].split())
            await __event_emitter__({"type": "notification", "data": {"type": "info", "content": f"{words} words"}})
            return {"words": words}
    '''
)

BROKEN = textwrap.dedent(
    '''\
    """
    title: Shouting Filter
    """


    class Filter:
        def inlet(self, body: dict) -> dict:
            print("before the failure")
            return body["no such key"]
    '''
)
BROKEN_LINE = 9


def open_function(page, function_id: str):
    page.goto(f"/admin/functions/edit?id={function_id}")
    expect(page.locator('.code-field[data-editor-ready="1"]')).to_be_visible()
    panel = page.get_by_test_id("try-it")
    expect(panel).to_be_visible()
    return panel


@pytest.mark.browser
def test_filter_inlet_shows_the_body_before_and_after(admin_page, live_server):
    live_server.create_function("shouter_filter", FILTER)
    page = admin_page
    panel = open_function(page, "shouter_filter")
    expect(page.get_by_label("Method")).to_have_value("inlet")
    body = page.get_by_label("Request body (JSON)")
    expect(body).to_have_value(re.compile(r'"metadata"'))
    expect(body).to_have_value(re.compile("What is the tallest mountain in Europe"))
    panel.get_by_role("button", name="Run").click()
    expect(panel.get_by_test_id("try-status")).to_contain_text("Ran inlet in")
    expect(panel.get_by_test_id("try-before")).to_contain_text("What is the tallest mountain in Europe?")
    expect(panel.get_by_test_id("try-after")).to_contain_text("WHAT IS THE TALLEST MOUNTAIN IN EUROPE?")
    expect(panel.locator("[data-testid=try-after] mark.try-changed")).to_have_count(1)
    events = panel.get_by_test_id("try-events").locator("li")
    expect(events).to_have_count(1)
    expect(events.first).to_contain_text("status")
    expect(events.first).to_contain_text("Shouting")
    expect(panel.get_by_test_id("try-output")).to_have_text("inlet saw 2 messages\n")
    shot(page, "try-it-filter")

    # The outlet's sample is a chat with the assistant's answer; the keyboard runs it.
    page.get_by_label("Method").select_option("outlet")
    expect(body).to_have_value(re.compile(r'"role": "assistant"'))
    body.focus()
    page.keyboard.press("Control+Enter")
    expect(panel.get_by_test_id("try-status")).to_contain_text("Ran outlet in")
    expect(panel.get_by_test_id("try-after")).to_contain_text("(checked)")


@pytest.mark.browser
def test_a_streaming_pipe_shows_text_as_it_arrives(admin_page, live_server):
    live_server.create_function("slow_words", PIPE)
    page = admin_page
    panel = open_function(page, "slow_words")
    expect(page.get_by_label("Method")).to_have_value("pipe")
    expect(page.get_by_label("Request body (JSON)")).to_have_value(re.compile(r'"model": "slow_words"'))
    panel.get_by_role("button", name="Run").click()
    text = panel.get_by_test_id("try-text")
    # The first word is shown while the pipe is still running (it sleeps between words).
    expect(text).to_contain_text("alpha")
    expect(panel.get_by_test_id("try-status")).to_contain_text("Running pipe")
    expect(panel.get_by_test_id("try-stop")).to_be_visible()
    expect(panel.get_by_test_id("try-events").locator("li")).to_contain_text("Thinking")
    expect(panel.get_by_test_id("try-status")).to_contain_text("Ran pipe in", timeout=10_000)
    expect(text).to_have_text("alpha beta gamma")
    expect(panel.get_by_test_id("try-stop")).to_be_hidden()

    # Stop ends a run midway: the request is aborted, which cancels the call on the server.
    panel.get_by_role("button", name="Run").click()
    expect(text).to_have_text("alpha ")
    panel.get_by_role("button", name="Stop").click()
    expect(panel.get_by_test_id("try-status")).to_have_text("Stopped.")
    expect(panel.get_by_role("button", name="Run")).to_be_enabled()
    expect(panel.get_by_role("button", name="Run")).to_be_focused()


@pytest.mark.browser
def test_an_action_answers_its_result_and_events(admin_page, live_server):
    live_server.create_function("word_counter", ACTION)
    page = admin_page
    panel = open_function(page, "word_counter")
    expect(page.get_by_label("Method")).to_have_value("action")
    page.get_by_label("Method").focus()
    page.keyboard.press("Control+Enter")
    expect(panel.get_by_test_id("try-status")).to_contain_text("Ran action in")
    expect(panel.get_by_test_id("try-result")).to_contain_text('"words": 23')
    expect(panel.get_by_test_id("try-events").locator("li")).to_contain_text("23 words")


@pytest.mark.browser
def test_unsaved_code_that_fails_marks_its_line_in_the_editor(admin_page, live_server):
    live_server.create_function("failing_filter", FILTER)
    page = admin_page
    panel = open_function(page, "failing_filter")
    page.evaluate("code => document.querySelector('textarea#content').sluiceEditor.setValue(code)", BROKEN)
    panel.get_by_role("button", name="Run").click()
    error = panel.get_by_test_id("try-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("KeyError")
    expect(panel.get_by_test_id("try-status")).to_contain_text("Failed after")
    expect(panel.get_by_test_id("try-output")).to_have_text("before the failure\n")
    expect(panel.get_by_test_id("try-answer")).to_be_hidden()
    marked = page.locator(".sluice-editor .cm-line.cm-sluice-errorLine")
    expect(marked).to_have_count(1)
    expect(marked).to_contain_text('return body["no such key"]')
    link = panel.get_by_test_id("try-error-line")
    expect(link).to_contain_text(f"Line {BROKEN_LINE}")
    link.focus()
    page.keyboard.press("Enter")
    expect(page.locator(".sluice-editor .cm-content")).to_be_focused()
    shot(page, "try-it-failure")
    # The stored code did not change: only the editor's text ran.
    stored = live_server.api_json("GET", "/api/v1/functions/id/failing_filter")
    assert stored["content"] == FILTER
