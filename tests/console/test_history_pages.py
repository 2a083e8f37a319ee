"""A function's history pages in the console: the versions, one version, a comparison, restore and delete, driven
through the Flask test client as a browser without scripts."""

from __future__ import annotations

import html
import re

import pytest

from tests.conftest import csrf_token
from tests.factories import FILTER, FILTER_STRICT_PRIORITY, SYNTAX_ERROR, make_function, stored_function

EDITED = FILTER.replace('prefix: str = Field(default=">> "', 'prefix: str = Field(default="-> "')
HISTORY = "/admin/functions/history"


# --- helpers ------------------------------------------------------------------------------------------------


def without_csrf_tokens(page: str) -> str:
    return re.sub(r'(name="csrf[-_]token" (?:content|value)=)"[^"]*"', r'\1""', page)


def text_of(response) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", response.get_data(as_text=True)))


def post(client, path, data, *, token_from=HISTORY + "?id=sample_filter"):
    """Post a console form the way a browser does: with the page's CSRF token."""
    return client.post(path, data={"csrf_token": csrf_token(client, token_from), **data})


def save(app, user_id, function_id="sample_filter", **changes) -> str:
    """Save a new version through the service layer (as the editor does) and return its id."""
    from extensions import db
    from models import User
    from services import function_reads, functions

    with app.app_context():
        f = function_reads.get_function(function_id)
        values = {"name": f.name, "content": f.content, "meta": None, **changes}
        f = functions.update_function(db.session.get(User, user_id), function_id, **values)
        return f.version_id


def version_ids(app, function_id="sample_filter") -> list[str]:
    from services import versions

    with app.app_context():
        return [v["id"] for v in versions.list_versions(function_id)]


def break_version(app, version_id):
    """Make a stored version's code one that no longer loads (as a removed package or a new loader would)."""
    from extensions import db
    from models import FunctionVersion

    with app.app_context():
        db.session.get(FunctionVersion, version_id).content = SYNTAX_ERROR
        db.session.commit()


@pytest.fixture
def two_versions(app, admin_id):
    """The sample filter, first saved as FILTER, then with a new prefix, a new name and a change note."""
    make_function(app, admin_id)
    first = version_ids(app)[0]
    second = save(app, admin_id, content=EDITED, name="Arrow Filter", commit_message="Arrow prefix")
    return first, second


# --- access ---------------------------------------------------------------------------------------------------


def _pages(first):
    return [
        f"{HISTORY}?id=sample_filter",
        f"{HISTORY}/version?id=sample_filter&version={first}",
        f"{HISTORY}/compare?id=sample_filter",
        f"{HISTORY}/restore?id=sample_filter&version={first}",
        f"{HISTORY}/delete?id=sample_filter&version={first}",
    ]


def test_history_pages_are_for_admins_only(app, client, user_client, two_versions):
    for path in _pages(two_versions[0]):
        anonymous = client.get(path)
        assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/auth?next=")
        assert user_client.get(path).status_code == 403


def test_a_user_cannot_restore_or_delete(app, user_client, two_versions):
    first, second = two_versions
    for action in ("restore", "delete"):
        response = post(
            user_client,
            f"{HISTORY}/{action}",
            {"id": "sample_filter", "version": first},
            token_from="/settings/valves",
        )
        assert response.status_code == 403
    assert version_ids(app) == [second, first]
    assert stored_function(app, "sample_filter").version_id == second


def test_unknown_functions_and_versions_are_404(admin_client, two_versions):
    first, _ = two_versions
    assert admin_client.get(f"{HISTORY}?id=nope").status_code == 404
    for path in _pages("nope")[1:2] + _pages("nope")[3:]:
        response = admin_client.get(path)
        assert response.status_code == 404 and "Version not found" in text_of(response)
    assert admin_client.get(f"{HISTORY}/compare?id=sample_filter&from=nope").status_code == 404
    assert admin_client.get(f"{HISTORY}?id=sample_filter&page=0").status_code == 404


def test_a_version_of_another_function_is_not_found_here(app, admin_client, admin_id, two_versions):
    make_function(app, admin_id, id="other_filter")
    other = version_ids(app, "other_filter")[0]
    response = admin_client.get(f"{HISTORY}/version?id=sample_filter&version={other}")
    assert response.status_code == 404


def text_of_html(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def shown(fragment: str) -> str:
    """What a sighted reader sees: the text without what is there only for screen readers."""
    return text_of_html(re.sub(r'<span class="visually-hidden">[^<]*</span>', "", fragment))


def spoken(fragment: str) -> str:
    """What a screen reader says: the text without what is hidden from it."""
    return text_of_html(re.sub(r'<span aria-hidden="true">[^<]*</span>', "", fragment))


# --- the list -------------------------------------------------------------------------------------------------


def test_the_function_page_links_to_its_history(admin_client, two_versions):
    page = admin_client.get("/admin/functions/edit?id=sample_filter").get_data(as_text=True)
    link = re.search(r'<a class="button" href="([^"]+)" data-testid="history-link">', page)
    assert link and html.unescape(link.group(1)) == f"{HISTORY}?id=sample_filter"
    assert f"{HISTORY}/version?id=sample_filter&amp;version={two_versions[0]}" in page


def test_the_list_shows_every_version_with_author_time_message_and_size(app, admin_client, two_versions):
    first, second = two_versions
    response = admin_client.get(f"{HISTORY}?id=sample_filter")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    rows = re.findall(r'<tr data-testid="version-row" data-version-id="([^"]+)"(.*?)</tr>', page, re.S)
    assert [row[0] for row in rows] == [second, first]
    newest, oldest = (shown(row[1]) for row in rows)
    assert "current" in newest and "Ada Admin" in newest and "Arrow prefix" in newest
    assert "named “Arrow Filter”" in newest  # the rename is told
    assert "+1 −1" in newest and "1 line added, 1 removed" in spoken(rows[0][1])
    lines = len(FILTER.splitlines())
    assert f"+{lines} −0" in oldest and "current" not in oldest
    # Only versions that are not current can be restored or deleted.
    assert 'data-testid="restore-link"' not in rows[0][1] and 'data-testid="delete-link"' not in rows[0][1]
    assert 'data-testid="restore-link"' in rows[1][1] and 'data-testid="delete-link"' in rows[1][1]
    # The comparison offered first is the current version against the previous one.
    assert re.search(rf'name="from" value="{first}" checked', page)
    assert re.search(rf'name="to" value="{second}" checked', page)
    assert f"{HISTORY}/compare?id=sample_filter&amp;from={first}&amp;to={second}" in page


def test_a_long_history_has_pages(app, admin_client, admin_id):
    make_function(app, admin_id)
    for index in range(21):
        save(app, admin_id, name=f"Name {index}")
    first = admin_client.get(f"{HISTORY}?id=sample_filter").get_data(as_text=True)
    assert first.count('data-testid="version-row"') == 20
    assert "Page 1 of 2" in first and f"{HISTORY}?id=sample_filter&amp;page=2" in first
    second = admin_client.get(f"{HISTORY}?id=sample_filter&page=2").get_data(as_text=True)
    assert second.count('data-testid="version-row"') == 2
    # A page past the end shows the last one rather than an empty table. The pages' CSRF tokens differ once the
    # second they are signed in changes, so they are left out of the comparison.
    past_the_end = admin_client.get(f"{HISTORY}?id=sample_filter&page=9").get_data(as_text=True)
    assert without_csrf_tokens(past_the_end) == without_csrf_tokens(second)


# --- one version ----------------------------------------------------------------------------------------------


def test_a_version_opens_read_only_and_highlighted(admin_client, two_versions):
    first, _ = two_versions
    response = admin_client.get(f"{HISTORY}/version?id=sample_filter&version={first}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    code = re.search(r'data-testid="version-code".*?</div>\s*</div>', page, re.S).group(0)
    assert '<span class="k">class</span>' in code  # Pygments' classes, which the source view's styles colour
    assert "&gt;&gt; " in code and "-&gt; " not in code  # this version's code, escaped
    assert 'id="L-1"' in code or 'href="#L-1"' in code
    assert "<form" not in page.split('id="main"')[1] and "<textarea" not in page
    assert re.search(r'data-testid="version-name">Sample Filter<', page)
    assert "Restore…" in page and "Compare with the current version" in page


def test_the_current_version_offers_no_restore_or_delete(admin_client, two_versions):
    _, second = two_versions
    page = admin_client.get(f"{HISTORY}/version?id=sample_filter&version={second}").get_data(as_text=True)
    assert 'data-testid="restore-link"' not in page and 'data-testid="delete-link"' not in page
    assert "Changes from the previous version" in page


# --- compare --------------------------------------------------------------------------------------------------


def diff_lines(page: str) -> list[tuple[str, str]]:
    """(kind, text of the row) for each line of the diff table."""
    rows = re.findall(
        r'<tr class="diff-\w+" data-testid="diff-line" data-kind="(\w+)">(.*?)</tr>', page, re.S
    )
    return [(kind, shown(row)) for kind, row in rows]


def test_compare_defaults_to_the_current_version_against_the_previous(admin_client, two_versions):
    response = admin_client.get(f"{HISTORY}/compare?id=sample_filter")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    lines = diff_lines(page)
    changed = [(kind, text) for kind, text in lines if kind != "same"]
    # Marked by a +/− beside the line number (read out as "removed"/"added"), not only by colour.
    assert changed == [
        ("removed", '14 − prefix : str = Field ( default = ">> " , description = "Text put in front" )'),
        ("added", '14 + prefix : str = Field ( default = "-> " , description = "Text put in front" )'),
    ]
    assert '<span aria-hidden="true">−</span><span class="visually-hidden">removed</span>' in page
    assert '<span aria-hidden="true">+</span><span class="visually-hidden">added</span>' in page
    assert len([kind for kind, _ in lines if kind == "same"]) == 6  # three lines of context each side
    assert '<span class="s2">' in page  # highlighted
    # The name change is summarised apart from the code.
    meta = re.findall(r'data-testid="meta-change" data-path="([^"]+)"(.*?)</tr>', page, re.S)
    assert [path for path, _ in meta] == ["name"]
    assert "Sample Filter" in meta[0][1] and "Arrow Filter" in meta[0][1]
    assert "+1 −1" in shown(page)


def test_compare_any_two_versions_and_swap_them(app, admin_client, admin_id, two_versions):
    first, second = two_versions
    third = save(app, admin_id, meta={"description": "Now described"})
    response = admin_client.get(f"{HISTORY}/compare?id=sample_filter&from={third}&to={first}")
    page = response.get_data(as_text=True)
    kinds = [kind for kind, _ in diff_lines(page) if kind != "same"]
    assert kinds == ["removed", "added"]
    assert [path for path in re.findall(r'data-testid="meta-change" data-path="([^"]+)"', page)] == [
        "name",
        "description",
    ]
    assert re.search(rf'<option value="{third}" selected>', page) and re.search(
        rf'<option value="{first}" selected>', page
    )
    assert f"{HISTORY}/compare?id=sample_filter&amp;from={first}&amp;to={third}" in page  # the swap link
    same = admin_client.get(f"{HISTORY}/compare?id=sample_filter&from={second}&to={second}")
    assert 'data-testid="same-version"' in same.get_data(as_text=True)
    assert 'data-testid="code-unchanged"' in same.get_data(as_text=True)


def test_compare_a_first_version_says_there_is_nothing_before_it(app, admin_client, admin_id):
    make_function(app, admin_id)
    page = admin_client.get(f"{HISTORY}/compare?id=sample_filter").get_data(as_text=True)
    assert 'data-testid="no-previous"' in page and 'data-testid="code-diff"' not in page


def test_compare_tells_when_only_line_endings_differ(app, admin_client, admin_id):
    make_function(app, admin_id)
    save(app, admin_id, content=FILTER.replace("\n", "\r\n"))
    page = admin_client.get(f"{HISTORY}/compare?id=sample_filter").get_data(as_text=True)
    assert 'data-testid="line-endings-only"' in page and 'data-testid="code-diff"' not in page


# --- restore --------------------------------------------------------------------------------------------------


def test_restore_asks_first_and_changes_nothing_until_confirmed(app, admin_client, two_versions):
    first, second = two_versions
    response = admin_client.get(f"{HISTORY}/restore?id=sample_filter&version={first}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'data-testid="restore-form"' in page and 'name="csrf_token"' in page
    assert "+1 −1" in shown(page)  # what the restore would change, against the current version
    assert stored_function(app, "sample_filter").version_id == second


def test_restore_makes_the_version_current_again(app, admin_client, two_versions):
    first, second = two_versions
    response = post(admin_client, f"{HISTORY}/restore", {"id": "sample_filter", "version": first})
    assert response.status_code == 302 and response.headers["Location"] == f"{HISTORY}?id=sample_filter"
    restored = stored_function(app, "sample_filter")
    assert restored.version_id == first and restored.content == FILTER and restored.name == "Sample Filter"
    assert version_ids(app) == [second, first]  # the version that was current stays in the history
    page = admin_client.get(f"{HISTORY}?id=sample_filter").get_data(as_text=True)
    assert "Restored the version of" in page
    assert re.search(rf'data-version-id="{first}" class="is-current"', page)


def test_restore_without_the_csrf_token_is_refused(app, admin_client, two_versions):
    first, second = two_versions
    response = admin_client.post(f"{HISTORY}/restore", data={"id": "sample_filter", "version": first})
    assert response.status_code == 400 and "This form has expired" in text_of(response)
    assert stored_function(app, "sample_filter").version_id == second


def test_a_version_that_no_longer_loads_is_refused_with_the_loaders_message(app, admin_client, two_versions):
    first, second = two_versions
    break_version(app, first)
    before = stored_function(app, "sample_filter")
    response = post(admin_client, f"{HISTORY}/restore", {"id": "sample_filter", "version": first})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    error = text_of_html(re.search(r'data-testid="restore-error".*?</div>', page, re.S).group(0))
    assert "Not restored; nothing changed." in error
    assert "no longer loads" in error and "SyntaxError" in error
    after = stored_function(app, "sample_filter")
    assert (after.version_id, after.content, after.name, after.updated_at) == (
        second,
        before.content,
        before.name,
        before.updated_at,
    )
    assert version_ids(app) == [second, first]


def test_a_restore_refused_for_its_valves_offers_to_drop_them(app, admin_client, admin_id):
    from services import valves

    make_function(app, admin_id, content=FILTER_STRICT_PRIORITY)
    strict = version_ids(app)[0]
    current = save(app, admin_id, content=FILTER)
    with app.app_context():
        valves.update_valves("sample_filter", {"priority": 5})
    refused = post(admin_client, f"{HISTORY}/restore", {"id": "sample_filter", "version": strict})
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert 'name="reset_incompatible_valves"' in page and "Not restored; nothing changed." in page
    assert stored_function(app, "sample_filter").version_id == current
    done = post(
        admin_client,
        f"{HISTORY}/restore",
        {"id": "sample_filter", "version": strict, "reset_incompatible_valves": "on"},
    )
    assert done.status_code == 302
    restored = stored_function(app, "sample_filter")
    assert restored.version_id == strict and "priority" not in (restored.valves or {})


# --- delete ---------------------------------------------------------------------------------------------------


def test_delete_asks_first_then_deletes_the_version(app, admin_client, two_versions):
    first, second = two_versions
    confirm = admin_client.get(f"{HISTORY}/delete?id=sample_filter&version={first}")
    assert confirm.status_code == 200
    assert 'data-testid="confirm-delete-version"' in confirm.get_data(as_text=True)
    assert version_ids(app) == [second, first]
    response = post(admin_client, f"{HISTORY}/delete", {"id": "sample_filter", "version": first})
    assert response.status_code == 302
    assert version_ids(app) == [second]
    assert "Deleted the version of" in text_of(admin_client.get(f"{HISTORY}?id=sample_filter"))


def test_delete_without_the_csrf_token_is_refused(app, admin_client, two_versions):
    first, second = two_versions
    response = admin_client.post(f"{HISTORY}/delete", data={"id": "sample_filter", "version": first})
    assert response.status_code == 400
    assert version_ids(app) == [second, first]


def test_the_current_version_cannot_be_deleted(app, admin_client, two_versions):
    first, second = two_versions
    confirm = admin_client.get(f"{HISTORY}/delete?id=sample_filter&version={second}")
    page = confirm.get_data(as_text=True)
    assert 'data-testid="current-version"' in page and 'data-testid="confirm-delete-version"' not in page
    response = post(admin_client, f"{HISTORY}/delete", {"id": "sample_filter", "version": second})
    assert response.status_code == 400 and "cannot be" in text_of(response)
    assert version_ids(app) == [second, first]


def test_the_size_of_each_change_is_worked_out_once(app, admin_client, two_versions, monkeypatch):
    # Diffing a large function's rewrite takes most of a second: a page opened again must not diff again.
    from services import diffs

    calls = []
    real = diffs.line_changes
    monkeypatch.setattr(diffs, "line_changes", lambda old, new: calls.append(1) or real(old, new))
    first = admin_client.get(f"{HISTORY}?id=sample_filter").get_data(as_text=True)
    assert len(calls) == 2  # each version against the one before it (the first against nothing)
    again = admin_client.get(f"{HISTORY}?id=sample_filter").get_data(as_text=True)
    assert len(calls) == 2
    sizes = r'data-testid="change-size">(.*?)</td>'
    assert re.findall(sizes, first, re.S) == re.findall(sizes, again, re.S)
