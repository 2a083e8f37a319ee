"""The admin console's functions pages, driven through the Flask test client as a browser without scripts."""

from __future__ import annotations

import html
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import csrf_token
from tests.factories import (
    ACTION,
    FILTER,
    FILTER_STRICT_PRIORITY,
    FUNCTION_MODEL_KEYS,
    ICON_FILTER,
    PIPE,
    SVG_ICON,
    SYNTAX_ERROR,
    make_function,
    stored_function,
)

# --- helpers ------------------------------------------------------------------------------------------------


def post(client, path, data=None, *, token_from="/admin/functions", **kwargs):
    """Post a console form the way a browser does: with the page's CSRF token."""
    data = dict(data or {})
    data.setdefault("csrf_token", csrf_token(client, token_from))
    return client.post(path, data=data, **kwargs)


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def textarea(response, name="content") -> str:
    """What a browser would put in the named textarea (the first newline after the tag is not content)."""
    page = response.get_data(as_text=True)
    match = re.search(rf'<textarea id="{name}" name="{name}"[^>]*>\n(.*?)</textarea>', page, re.S)
    assert match, f"no textarea {name!r}"
    return html.unescape(match.group(1))


def insert_functions(app, user_id, rows):
    """Store functions directly (no loader): enough for pages that only read the list."""
    from extensions import db
    from models import Function

    with app.app_context():
        for index, row in enumerate(rows):
            meta = {"description": row.get("description"), "manifest": row.get("manifest", {})}
            db.session.add(
                Function(
                    id=row["id"],
                    user_id=user_id,
                    name=row.get("name", row["id"]),
                    type=row.get("type", "filter"),
                    content="class Filter:\n    pass\n",
                    meta=meta,
                    valves={},
                    is_active=row.get("active", False),
                    is_global=False,
                    created_at=row.get("created_at", 1_700_000_000 + index),
                    updated_at=row.get("updated_at", 1_700_000_000 + index),
                )
            )
        db.session.commit()


def listed_ids(response) -> list[str]:
    return re.findall(
        r'data-testid="function-row" data-function-id="([^"]+)"', response.get_data(as_text=True)
    )


# --- access ---------------------------------------------------------------------------------------------------

PAGES = [
    "/admin/functions",
    "/admin/functions/create",
    "/admin/functions/edit?id=sample_filter",
    "/admin/functions/source?id=sample_filter",
    "/admin/functions/delete?id=sample_filter",
    "/admin/functions/import",
    "/admin/functions/export",
    "/admin/functions/load-url",
]


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(client, admin_id, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth?next=")


@pytest.mark.parametrize("path", PAGES)
def test_non_admins_get_the_403_page(app, admin_id, user_client, path):
    make_function(app, admin_id)
    response = user_client.get(path)
    assert response.status_code == 403
    assert "Not allowed" in text_of(response)


def test_non_admins_cannot_post_to_console_forms(app, admin_id, user_client):
    make_function(app, admin_id)
    # The 403 page still carries the session's CSRF token, so this is refused for the role, not the token.
    response = post(user_client, "/admin/functions/toggle", {"id": "sample_filter", "state": "on"})
    assert response.status_code == 403
    assert stored_function(app, "sample_filter").is_active is False


def test_forms_without_the_csrf_token_are_refused(app, admin_client, admin_id):
    make_function(app, admin_id)
    response = admin_client.post("/admin/functions/create", data={"name": "X", "content": FILTER})
    assert response.status_code == 400
    assert "This form has expired" in text_of(response)
    response = admin_client.post("/admin/functions/toggle", data={"id": "sample_filter", "state": "on"})
    assert response.status_code == 400
    assert stored_function(app, "sample_filter").is_active is False
    response = admin_client.post("/admin/functions/delete?id=sample_filter", data={"id": "sample_filter"})
    assert response.status_code == 400
    assert stored_function(app, "sample_filter") is not None


# --- list -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/functions", "/settings/keys", "/auth"])
def test_every_page_names_its_icon_so_browsers_do_not_ask_for_favicon_ico(admin_client, client, path):
    page = (client if path == "/auth" else admin_client).get(path).get_data(as_text=True)
    link = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page)
    assert link, "no icon link"
    icon = client.get(link.group(1))
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    icon.close()


def test_the_active_count_is_marked_for_the_switches_to_update(app, admin_client, admin_id):
    insert_functions(app, admin_id, [{"id": "on_one", "active": True}, {"id": "off_one"}, {"id": "off_two"}])
    page = admin_client.get("/admin/functions").get_data(as_text=True)
    assert '<span data-count="active" data-total="3">1</span> active' in page
    assert '<option value="inactive">Inactive (2)</option>' in page


def test_empty_list_offers_the_ways_to_add_a_function(admin_client):
    response = admin_client.get("/admin/functions")
    assert response.status_code == 200
    page = text_of(response)
    assert 'data-testid="empty-state"' in page
    assert "No functions yet" in page
    for path in ("/admin/functions/create", "/admin/functions/import", "/admin/functions/load-url"):
        # Once, in the empty state: the page head's buttons repeated them.
        assert page.count(f'href="{path}"') == 1
    assert 'data-testid="new-function"' not in page and "Export all" not in page


def test_filters_fold_open_only_while_one_applies(app, admin_client, admin_id):
    insert_functions(app, admin_id, [{"id": "folded"}])
    plain = admin_client.get("/admin/functions?sort=name").get_data(as_text=True)
    assert '<details class="filters-panel" data-filters-panel>' in plain
    filtered = admin_client.get("/admin/functions?q=fold&type=filter").get_data(as_text=True)
    assert '<details class="filters-panel" data-filters-panel open>' in filtered
    assert '<span class="badge">2 applied</span>' in filtered


def test_empty_cells_are_marked_for_the_phone_layout(app, admin_client, admin_id):
    insert_functions(app, admin_id, [{"id": "bare", "type": "pipe", "manifest": {}}])
    page = admin_client.get("/admin/functions").get_data(as_text=True)
    row = re.search(r'data-function-id="bare">(.*?)</tr>', page, re.S).group(1)
    empty = re.findall(r'<td data-label="(\w+)"[^>]*class="[^"]*is-empty', row)
    assert empty == ["Version", "Author", "Description", "Global"]


def test_list_shows_each_functions_facts(app, admin_client, admin_id):
    make_function(app, admin_id, id="sample_filter", name="Sample Filter", meta={"description": "Prefixes"})
    response = admin_client.get("/admin/functions")
    page = text_of(response)
    assert listed_ids(response) == ["sample_filter"]
    assert "Sample Filter" in page
    # On one line (cut with an ellipsis when the column is narrow), the whole id in its title.
    assert '<code class="function-id" title="sample_filter">sample_filter</code>' in page
    assert 'class="badge type-badge type-filter">Filter<' in page
    assert "1.0.0" in page  # manifest version
    assert "Sluice Tests" in page  # manifest author
    assert "Prefixes" in page  # meta.description
    assert "Ada Admin" in page  # creator
    assert "just now" in page
    assert re.search(r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d UTC">', page)
    assert "1 function · 0 active · 1 filter" in " ".join(re.sub(r"<[^>]+>", "", page).split())


def test_the_list_describes_a_function_as_my_valves_does(app, admin_client, admin_id, user_client):
    # The list showed "—" when meta.description was empty, while My valves showed the frontmatter's description.
    insert_functions(
        app,
        admin_id,
        [
            {"id": "from_code", "description": "", "manifest": {"description": "Counts the tokens"}},
            {"id": "given", "description": "Given here", "manifest": {"description": "From the code"}},
        ],
    )
    rows = dict(
        re.findall(
            r'data-function-id="([^"]+)">(.*?)</tr>',
            admin_client.get("/admin/functions").get_data(as_text=True),
            re.S,
        )
    )
    assert '<span class="clamp" title="Counts the tokens">Counts the tokens</span>' in rows["from_code"]
    assert "Given here" in rows["given"] and "From the code" not in rows["given"]
    assert listed_ids(admin_client.get("/admin/functions?q=tokens")) == ["from_code"]


def test_author_is_linked_only_to_web_addresses(app, admin_client, admin_id):
    insert_functions(
        app,
        admin_id,
        [
            {"id": "linked", "manifest": {"author": "Alice", "author_url": "https://alice.example"}},
            {"id": "scripted", "manifest": {"author": "Mallory", "author_url": "javascript:alert(1)"}},
        ],
    )
    page = admin_client.get("/admin/functions").get_data(as_text=True)
    assert (
        '<a href="https://alice.example" rel="noopener noreferrer nofollow" target="_blank">Alice</a>' in page
    )
    assert "javascript:" not in page
    assert "Mallory" in page


def test_switches_show_state_and_global_only_for_filters_and_actions(app, admin_client, admin_id):
    insert_functions(
        app,
        admin_id,
        [{"id": "on_filter", "type": "filter", "active": True}, {"id": "a_pipe", "type": "pipe"}],
    )
    page = admin_client.get("/admin/functions").get_data(as_text=True)
    rows = dict(re.findall(r'data-function-id="([^"]+)">(.*?)</tr>', page, re.S))
    assert 'aria-pressed="true" aria-label="Active: on_filter"' in rows["on_filter"]
    assert 'data-testid="toggle-global"' in rows["on_filter"]
    assert 'aria-pressed="false" aria-label="Active: a_pipe"' in rows["a_pipe"]
    assert 'data-testid="toggle-global"' not in rows["a_pipe"]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("summar", ["summariser"]),  # name, case-insensitive below
        ("SUMMAR", ["summariser"]),
        ("trans_", ["trans_lator"]),  # id; `_` is literal, not a wildcard
        ("shouting", ["shouter"]),  # description in meta
        ("grace", ["trans_lator"]),  # author in the manifest
        ("%", []),  # not a wildcard either
        ("summar grace", []),  # every word must match
        ("translate grace", ["trans_lator"]),
    ],
)
def test_search_covers_name_id_description_and_author(app, admin_client, admin_id, q, expected):
    insert_functions(
        app,
        admin_id,
        [
            {"id": "summariser", "name": "Chat Summariser", "description": "Summaries", "manifest": {}},
            {"id": "trans_lator", "name": "Translate", "manifest": {"author": "Grace Hopper"}},
            {"id": "shouter", "name": "Caps", "description": "Makes everything SHOUTING"},
            {"id": "transxlator", "name": "Other", "manifest": {"author": "Ada"}},
        ],
    )
    response = admin_client.get("/admin/functions", query_string={"q": q})
    assert response.status_code == 200
    assert sorted(listed_ids(response)) == expected
    if not expected:
        assert "No function matches" in text_of(response)


def test_filters_by_type_and_state(app, admin_client, admin_id):
    insert_functions(
        app,
        admin_id,
        [
            {"id": "f_on", "type": "filter", "active": True},
            {"id": "f_off", "type": "filter"},
            {"id": "p_on", "type": "pipe", "active": True},
            {"id": "a_off", "type": "action"},
        ],
    )
    by_type = admin_client.get("/admin/functions?type=filter&sort=id")
    assert listed_ids(by_type) == ["f_off", "f_on"]
    active = admin_client.get("/admin/functions?status=active&sort=id")
    assert listed_ids(active) == ["f_on", "p_on"]
    both = admin_client.get("/admin/functions?status=inactive&type=action")
    assert listed_ids(both) == ["a_off"]
    # Unknown values are ignored rather than failing.
    assert len(listed_ids(admin_client.get("/admin/functions?type=bogus&status=maybe&sort=x&dir=y"))) == 4


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("", ["c_three", "b_two", "a_one"]),  # newest update first by default
        ("sort=name", ["b_two", "a_one", "c_three"]),  # Alpha, beta, Gamma: case-insensitive
        ("sort=name&dir=desc", ["c_three", "a_one", "b_two"]),
        ("sort=id", ["a_one", "b_two", "c_three"]),
        ("sort=type", ["b_two", "c_three", "a_one"]),  # action, filter, pipe
        ("sort=created&dir=asc", ["c_three", "a_one", "b_two"]),
        ("sort=updated&dir=asc", ["a_one", "b_two", "c_three"]),
    ],
)
def test_sorting(app, admin_client, admin_id, args, expected):
    insert_functions(
        app,
        admin_id,
        [
            {"id": "a_one", "name": "beta", "type": "pipe", "created_at": 20, "updated_at": 100},
            {"id": "b_two", "name": "Alpha", "type": "action", "created_at": 30, "updated_at": 200},
            {"id": "c_three", "name": "Gamma", "type": "filter", "created_at": 10, "updated_at": 300},
        ],
    )
    assert listed_ids(admin_client.get(f"/admin/functions?{args}")) == expected


def test_sort_headers_link_to_the_other_direction(app, admin_client, admin_id):
    insert_functions(app, admin_id, [{"id": "one"}])
    page = admin_client.get("/admin/functions?sort=name").get_data(as_text=True)
    assert 'aria-sort="ascending"' in page
    assert 'href="/admin/functions?sort=name&amp;dir=desc"' in page


def test_pagination_is_done_by_the_server(app, admin_client, admin_id):
    insert_functions(app, admin_id, [{"id": f"fn_{n:03d}", "name": f"Function {n:03d}"} for n in range(120)])
    first = admin_client.get("/admin/functions?sort=id")
    assert listed_ids(first) == [f"fn_{n:03d}" for n in range(50)]
    assert "Showing 1–50 of 120" in text_of(first)
    assert 'href="/admin/functions?sort=id&amp;page=2"' in first.get_data(as_text=True)
    last = admin_client.get("/admin/functions?sort=id&page=3")
    assert listed_ids(last) == [f"fn_{n:03d}" for n in range(100, 120)]
    assert "Showing 101–120 of 120" in text_of(last)
    # A page past the end shows the last one.
    assert listed_ids(admin_client.get("/admin/functions?sort=id&page=99")) == listed_ids(last)
    searched = admin_client.get("/admin/functions?q=function 11&sort=id")
    assert listed_ids(searched) == ["fn_011"] + [f"fn_{n:03d}" for n in range(110, 120)]
    assert 'data-testid="pagination"' not in searched.get_data(as_text=True)


@pytest.mark.parametrize("query", ["q=function&", "", "per_page=99999999999999999999&"])
def test_a_huge_page_number_shows_the_last_page(app, admin_client, admin_id, query):
    # It made an OFFSET too large for the database's integers: a 500 (OverflowError on SQLite).
    insert_functions(app, admin_id, [{"id": f"fn_{n:03d}", "name": f"Function {n:03d}"} for n in range(60)])
    response = admin_client.get(f"/admin/functions?{query}sort=id&page=99999999999999999999")
    assert response.status_code == 200
    ids = listed_ids(response)
    assert ids[-1] == "fn_059" and ids[0] in ("fn_000", "fn_050")


def test_page_numbers_are_read_leniently_and_bounded():
    from services.function_search import MAX_PAGE, MAX_PER_PAGE, FunctionQuery

    assert FunctionQuery.from_args({"page": "99999999999999999999"}).page == MAX_PAGE
    assert FunctionQuery.from_args({"page": "-3", "per_page": "0"}).page == 1
    assert FunctionQuery.from_args({"page": "x"}).page == 1
    assert FunctionQuery.from_args({"per_page": "10" * 20}).per_page == MAX_PER_PAGE


# --- toggles --------------------------------------------------------------------------------------------------


def test_active_switch_form_works_without_scripts(app, admin_client, admin_id):
    make_function(app, admin_id)
    response = post(
        admin_client,
        "/admin/functions/toggle",
        {"id": "sample_filter", "state": "on", "next": "/admin/functions?q=sample"},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/functions?q=sample"
    assert stored_function(app, "sample_filter").is_active is True
    # The form names the wanted state, so submitting it twice does not switch the function back off.
    post(admin_client, "/admin/functions/toggle", {"id": "sample_filter", "state": "on"})
    assert stored_function(app, "sample_filter").is_active is True
    page = admin_client.get("/admin/functions")
    assert "Sample Filter is switched on." in text_of(page)
    post(admin_client, "/admin/functions/toggle", {"id": "sample_filter", "state": "off"})
    assert stored_function(app, "sample_filter").is_active is False


def test_global_switch_form_and_safe_redirect(app, admin_client, admin_id):
    make_function(app, admin_id)
    response = post(
        admin_client,
        "/admin/functions/toggle-global",
        {"id": "sample_filter", "state": "on", "next": "https://evil.example/"},
    )
    assert response.headers["Location"] == "/admin/functions"
    assert stored_function(app, "sample_filter").is_global is True


def test_toggle_of_a_missing_function_is_404(admin_client):
    response = post(admin_client, "/admin/functions/toggle", {"id": "nope", "state": "on"})
    assert response.status_code == 404


def test_the_api_toggle_the_scripts_call_accepts_the_pages_csrf_token(app, admin_client, admin_id):
    make_function(app, admin_id)
    token = csrf_token(admin_client, "/admin/functions")
    refused = admin_client.post("/api/v1/functions/id/sample_filter/toggle")
    assert refused.status_code == 403
    response = admin_client.post("/api/v1/functions/id/sample_filter/toggle", headers={"X-CSRFToken": token})
    assert response.status_code == 200
    assert response.get_json()["is_active"] is True


# --- create ---------------------------------------------------------------------------------------------------


def test_create_page_offers_three_starters_that_load(admin_client):
    page = admin_client.get("/admin/functions/create").get_data(as_text=True)
    for kind in ("filter", "action", "pipe"):
        assert f'data-starter="{kind}"' in page
    assert 'id="starter-sources"' in page
    assert "sluice-editor.js" in page
    assert 'name="content"' in page and "required" not in re.search(r"<textarea[^>]*>", page).group(0)
    action_page = text_of(admin_client.get("/admin/functions/create?template=action"))
    assert "class Action:" in action_page


@pytest.mark.parametrize("kind", ["filter", "action", "pipe"])
def test_each_starter_template_saves_as_its_type(app, admin_client, kind):
    from blueprints.admin.functions import starter

    with app.test_request_context():
        code = starter(kind)
    assert "class Valves(BaseModel)" in code and "class UserValves(BaseModel)" in code
    response = post(admin_client, "/admin/functions/create", {"name": "", "id": "", "content": code})
    assert response.status_code == 302, text_of(response)
    f = stored_function(app, f"my_{kind}")
    assert f.type == kind
    assert f.name == f"My {kind.title()}"  # from the frontmatter title
    assert f.meta["description"]
    assert f.user_valves_schema is not None


def test_create_success_redirects_to_the_edit_page(app, admin_client):
    response = post(
        admin_client,
        "/admin/functions/create",
        {
            "name": "Sample Filter",
            "id": "",
            "description": "Mine",
            "content": FILTER.replace("\n", "\r\n"),
            "commit_message": "first",
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/functions/edit?id=sample_filter"
    f = stored_function(app, "sample_filter")
    assert f.content == FILTER  # browsers' CRLF line endings are not stored
    assert f.meta["description"] == "Mine"
    assert f.is_active is False
    page = text_of(admin_client.get(response.headers["Location"]))
    assert "Saved Sample Filter." in page


def test_failed_create_keeps_everything_and_points_at_the_line(app, admin_client):
    response = post(
        admin_client,
        "/admin/functions/create",
        {
            "name": "Broken <One>",
            "id": "broken",
            "description": "keeps me",
            "content": SYNTAX_ERROR,
            "commit_message": "wip",
        },
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert textarea(response) == SYNTAX_ERROR  # the typed code, exactly
    assert 'value="Broken &lt;One&gt;"' in page
    assert 'value="keeps me"' in page and 'value="wip"' in page and 'value="broken"' in page
    assert "SyntaxError" in page
    assert 'data-error-line="2"' in page  # for the editor's markErrorLine
    # The message once (the service's "(line 2)" is not repeated), then a link to the code: "Line 2, column N".
    box = re.search(r'<div class="code-error".*?</div>', page, re.S).group(0)
    assert "<strong>SyntaxError: expected &#39;:&#39;</strong>" in box
    assert "(line 2)" not in box and box.count("SyntaxError") == 1
    assert re.search(r'<a class="code-error-line" href="#content" [^>]*>Line 2, column \d+</a>', box)
    assert re.search(
        r'data-error-line="2" data-error-message="SyntaxError: expected &#39;:&#39;" data-error-column="\d+"',
        page,
    )
    assert stored_function(app, "broken") is None


def test_create_refuses_a_taken_or_malformed_id_next_to_the_id_field(app, admin_client, admin_id):
    make_function(app, admin_id)
    taken = post(
        admin_client, "/admin/functions/create", {"name": "X", "id": "sample_filter", "content": PIPE}
    )
    assert taken.status_code == 400
    page = text_of(taken)
    # The console speaks in its own voice; Open WebUI's wording stays the API's (SPEC §3).
    assert re.search(r'id="id-error"[^>]*>A function with this id already exists\. Choose another id\.', page)
    assert "Uh-oh" not in page
    assert "class Pipe:" in page
    malformed = post(
        admin_client, "/admin/functions/create", {"name": "X", "id": "has space", "content": PIPE}
    )
    assert malformed.status_code == 400
    assert "An id may hold only letters, digits and underscores" in text_of(malformed)
    assert "Only alphanumeric" not in text_of(malformed)


def test_create_needs_a_name_and_code(admin_client):
    code_without_title = "class Pipe:\n    def pipe(self, body):\n        return ''\n"
    response = post(admin_client, "/admin/functions/create", {"name": "", "content": code_without_title})
    assert response.status_code == 400
    assert "Give the function a name" in text_of(response)
    response = post(admin_client, "/admin/functions/create", {"name": "Empty", "content": "   "})
    assert response.status_code == 400
    assert "The function has no code yet." in text_of(response)


def test_server_derives_the_id_from_the_name(app, admin_client):
    response = post(admin_client, "/admin/functions/create", {"name": "Échos & Co. 2!", "content": PIPE})
    assert response.status_code == 302
    assert stored_function(app, "echos_co_2") is not None


# --- edit, clone, source --------------------------------------------------------------------------------------


def test_edit_page_shows_the_function_with_a_read_only_id(app, admin_client, admin_id):
    make_function(app, admin_id, id="echo", content=PIPE, name="Echo")
    response = admin_client.get("/admin/functions/edit?id=echo")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert re.search(r'<input id="id" name="id" type="text" value="echo"\s+readonly', page)
    assert "class Pipe:" in html.unescape(page)
    assert 'href="/admin/functions/valves?id=echo"' in page
    assert 'href="/admin/functions/source?id=echo"' in page
    assert 'href="/admin/functions/export?id=echo"' in page
    assert re.search(r'data-testid="version-count">1 version<', page)
    # PIPE's manifest has `requirements: requests`, which is installed.
    assert 'data-testid="requirements"' in page and "requests" in page and "installed" in page


@pytest.mark.parametrize(
    ("kind", "content", "switches"), [("filter", FILTER, ["active", "global"]), ("pipe", PIPE, ["active"])]
)
def test_edit_page_has_the_lists_switches(app, admin_client, admin_id, kind, content, switches):
    make_function(app, admin_id, id="switched", content=content, active=True)
    page = admin_client.get("/admin/functions/edit?id=switched").get_data(as_text=True)
    found = re.findall(
        r'<form class="switch-form" method="post"\s+action="([^"]+)"\s+data-switch="(\w+)"', page
    )
    assert [name for _, name in found] == switches
    assert 'aria-pressed="true" aria-label="Active: Switched"' in page
    # Without scripts, the switch posts to the list's form and comes back to this page.
    response = post(
        admin_client,
        found[0][0],
        {"id": "switched", "state": "off", "next": "/admin/functions/edit?id=switched"},
        token_from="/admin/functions/edit?id=switched",
    )
    assert response.status_code == 302 and response.headers["Location"] == "/admin/functions/edit?id=switched"
    assert stored_function(app, "switched").is_active is False


@pytest.mark.parametrize(
    "path",
    [
        "/admin/functions",
        "/admin/functions/create",
        "/admin/functions/edit?id=sample_filter",
        "/admin/functions/source?id=sample_filter",
        "/admin/functions/valves?id=sample_filter",
        "/admin/functions/import",
    ],
)
def test_functions_is_the_current_menu_entry_on_every_functions_page(app, admin_client, admin_id, path):
    make_function(app, admin_id)
    page = admin_client.get(path).get_data(as_text=True)
    nav = re.search(r'<nav aria-label="Main">.*?</nav>', page, re.S).group(0)
    assert re.findall(r'<a href="([^"]+)" aria-current="(\w+)"', nav) == [
        ("/admin/functions", "page" if path == "/admin/functions" else "true")
    ]


def test_the_valves_page_shows_the_type_as_the_list_does(app, admin_client, admin_id):
    make_function(app, admin_id)
    page = admin_client.get("/admin/functions/valves?id=sample_filter").get_data(as_text=True)
    assert '<span class="badge type-badge type-filter">Filter</span>' in page


def test_edit_saves_and_never_changes_the_id(app, admin_client, admin_id):
    make_function(app, admin_id)
    response = post(
        admin_client,
        "/admin/functions/edit?id=sample_filter",
        {
            "id": "hijack",
            "name": "Renamed",
            "description": "New words",
            "content": FILTER + "\n# more\n",
            "commit_message": "Say more",
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/functions/edit?id=sample_filter"
    f = stored_function(app, "sample_filter")
    assert (f.name, f.meta["description"]) == ("Renamed", "New words")
    assert f.content.endswith("# more\n")
    assert stored_function(app, "hijack") is None
    page = admin_client.get("/admin/functions/edit?id=sample_filter").get_data(as_text=True)
    assert "2 versions" in page
    history = re.search(r'data-testid="history">(.*?)</section>', page, re.S).group(1)
    newest, oldest = re.findall(r"<li.*?</li>", history, re.S)
    assert "Say more" in newest and "current" in newest and "Ada Admin" in newest
    assert "current" not in oldest


def test_failed_edit_keeps_the_typed_code_and_the_stored_function(app, admin_client, admin_id):
    make_function(app, admin_id, active=True)
    response = post(
        admin_client,
        "/admin/functions/edit?id=sample_filter",
        {"name": "Sample Filter", "content": SYNTAX_ERROR},
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert textarea(response) == SYNTAX_ERROR
    assert 'data-error-line="2"' in page
    f = stored_function(app, "sample_filter")
    assert f.content == FILTER and f.is_active is True


def test_incompatible_valves_can_be_dropped_from_the_form(app, admin_client, admin_id):
    make_function(app, admin_id)
    with app.app_context():
        from services import valves

        valves.update_valves("sample_filter", {"priority": 5, "prefix": "!"})
    data = {"name": "Sample Filter", "content": FILTER_STRICT_PRIORITY}
    refused = post(admin_client, "/admin/functions/edit?id=sample_filter", data)
    assert refused.status_code == 400
    page = text_of(refused)
    assert "The valves stored for this function do not fit the new code: priority" in page
    assert "Current Valves" not in page  # Open WebUI's wording is the API's, not the console's
    # The way out is in the error box at the top of the form, not below the editor.
    box = re.search(r'<div class="form-error incompatible-valves".*?</div>\s*</div>', page, re.S).group(0)
    assert "do not fit the new code" in box and 'name="reset_incompatible_valves"' in box
    assert page.index('name="reset_incompatible_valves"') < page.index('id="content"')
    assert page.count('name="reset_incompatible_valves"') == 1
    saved = post(
        admin_client, "/admin/functions/edit?id=sample_filter", {**data, "reset_incompatible_valves": "on"}
    )
    assert saved.status_code == 302
    assert stored_function(app, "sample_filter").valves == {"prefix": "!"}


def test_clone_opens_the_create_page_prefilled(app, admin_client, admin_id):
    make_function(app, admin_id, meta={"description": "Original"})
    response = admin_client.get("/admin/functions/create?clone=sample_filter")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'value="Sample Filter (copy)"' in page
    assert 'value="sample_filter_copy"' in page
    assert 'value="Original"' in page
    assert "class Filter:" in html.unescape(page)
    assert stored_function(app, "sample_filter_copy") is None  # nothing stored until saved
    assert admin_client.get("/admin/functions/create?clone=missing").status_code == 404


def test_unknown_function_pages_are_404(admin_client):
    for path in ("/admin/functions/edit?id=nope", "/admin/functions/source?id=nope", "/admin/functions/edit"):
        response = admin_client.get(path)
        assert response.status_code == 404
        assert "Page not found" in text_of(response)


def test_source_view_is_highlighted_with_line_numbers_and_a_marked_line(app, admin_client, admin_id):
    make_function(app, admin_id)
    response = admin_client.get("/admin/functions/source?id=sample_filter&line=3")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'class="source-code"' in page
    assert re.search(r'<a href="#L-1">\s*1</a>', page)
    assert '<span class="kn">from</span>' in page
    assert page.count('class="hll"') == 1
    assert re.search(r'<a id="L-3" name="L-3"></a><span class="hll">', page)
    assert "Go to line 3" in page


def test_source_view_numbers_every_line_of_code_that_starts_and_ends_with_blank_lines(
    app, admin_client, admin_id
):
    # Pygments drops leading and trailing blank lines unless told not to: line 3 then showed as line 1, and the
    # header counted lines that were not shown.
    make_function(app, admin_id, content="\n\n" + FILTER + "\n\n")
    lines = ("\n\n" + FILTER + "\n\n").split("\n")[:-1]
    response = admin_client.get("/admin/functions/source?id=sample_filter&line=3")
    page = response.get_data(as_text=True)
    assert f"· {len(lines)} lines ·" in page
    assert len(re.findall(r'<a href="#L-\d+">\s*\d+</a>', page)) == len(lines)
    assert lines[2].startswith('"""')
    assert re.search(r'<a id="L-3" name="L-3"></a><span class="hll"><span class="sd">"""</span>', page)


def test_source_view_ignores_a_line_past_the_end(app, admin_client, admin_id):
    make_function(app, admin_id)
    page = admin_client.get("/admin/functions/source?id=sample_filter&line=99999999999999999999").get_data(
        as_text=True
    )
    assert 'class="hll"' not in page and "is marked" not in page


# --- delete ---------------------------------------------------------------------------------------------------


def test_delete_asks_for_confirmation_then_deletes(app, admin_client, admin_id):
    make_function(app, admin_id)
    confirm = admin_client.get("/admin/functions/delete?id=sample_filter&next=/admin/functions?page=2")
    assert confirm.status_code == 200
    page = text_of(confirm)
    assert "Delete Sample Filter?" in page
    assert 'data-testid="confirm-delete"' in page
    assert stored_function(app, "sample_filter") is not None  # looking is not deleting
    response = post(
        admin_client,
        "/admin/functions/delete?id=sample_filter",
        {"id": "sample_filter", "next": "/admin/functions"},
    )
    assert response.status_code == 302
    assert stored_function(app, "sample_filter") is None
    assert "Deleted Sample Filter." in text_of(admin_client.get("/admin/functions"))
    again = post(admin_client, "/admin/functions/delete?id=sample_filter", {"id": "sample_filter"})
    assert again.status_code == 404


def test_list_rows_link_to_each_action(app, admin_client, admin_id):
    make_function(app, admin_id)
    page = admin_client.get("/admin/functions").get_data(as_text=True)
    assert 'href="/admin/functions/edit?id=sample_filter"' in page
    assert 'href="/admin/functions/valves?id=sample_filter"' in page
    assert 'href="/admin/functions/create?clone=sample_filter"' in page
    assert 'href="/admin/functions/export?id=sample_filter"' in page
    assert re.search(
        r'href="/admin/functions/delete\?id=sample_filter&amp;next=[^"]*"\s+data-confirm-delete', page
    )


# --- export ---------------------------------------------------------------------------------------------------


def test_export_all_downloads_function_models(app, admin_client, admin_id):
    make_function(app, admin_id)
    make_function(app, admin_id, id="echo", content=PIPE, name="Echo")
    response = admin_client.get("/admin/functions/export")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert re.fullmatch(
        r'attachment; filename="functions-export-\d{4}-\d\d-\d\d\.json"',
        response.headers["Content-Disposition"],
    )
    items = json.loads(response.get_data(as_text=True))
    assert sorted(item["id"] for item in items) == ["echo", "sample_filter"]
    assert all(list(item) == FUNCTION_MODEL_KEYS for item in items)
    with_valves = json.loads(
        admin_client.get("/admin/functions/export?include_valves=1").get_data(as_text=True)
    )
    assert list(with_valves[0]).index("valves") == FUNCTION_MODEL_KEYS.index("meta") + 1


def test_the_list_offers_exports_with_valves(app, admin_client, admin_id):
    make_function(app, admin_id)
    page = html.unescape(admin_client.get("/admin/functions").get_data(as_text=True))
    everything = re.search(r'href="([^"]+)"[^>]*data-testid="export-all-with-valves"', page, re.S).group(1)
    one = re.search(r'href="([^"]+)"[^>]*data-testid="export-one-with-valves"', page, re.S).group(1)
    for url in (everything, one):
        items = json.loads(admin_client.get(url).get_data(as_text=True))
        assert "valves" in items[0], url


def test_export_one(app, admin_client, admin_id):
    make_function(app, admin_id)
    make_function(app, admin_id, id="echo", content=PIPE, name="Echo")
    response = admin_client.get("/admin/functions/export?id=echo")
    assert "function-echo-export-" in response.headers["Content-Disposition"]
    items = json.loads(response.get_data(as_text=True))
    assert len(items) == 1 and list(items[0]) == FUNCTION_MODEL_KEYS
    assert items[0]["content"] == PIPE
    assert admin_client.get("/admin/functions/export?id=missing").status_code == 404


# --- import ---------------------------------------------------------------------------------------------------


def upload(client, payload, filename="functions-export.json"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return post(
        client,
        "/admin/functions/import",
        {"file": (io.BytesIO(body), filename)},
        content_type="multipart/form-data",
    )


def preview_token(preview) -> str:
    return re.search(
        r'<input type="hidden" name="token" value="([^"]+)">', preview.get_data(as_text=True)
    ).group(1)


def apply_payload(client, preview, chosen=None, extra=None):
    page = preview.get_data(as_text=True)
    if chosen is None:  # what a browser sends: the ticked boxes
        chosen = re.findall(r'name="item" value="(\d+)" id="item-\d+" checked', page)
    body = {"token": preview_token(preview), "item": chosen, **(extra or {})}
    return post(client, "/admin/functions/import/apply", body)


def test_import_previews_then_creates_and_updates(app, admin_client, admin_id):
    make_function(app, admin_id, active=True)
    export = [
        {
            "id": "sample_filter",
            "name": "Filter v2",
            "type": "filter",
            "content": FILTER,
            "meta": {"description": "v2"},
        },
        {"id": "Echo", "name": "Echo", "type": "pipe", "content": PIPE, "meta": {}},
    ]
    preview = upload(admin_client, export)
    assert preview.status_code == 200
    page = text_of(preview)
    assert "2 items — 1 to create, 1 to update." in " ".join(page.split())
    assert re.findall(r'data-testid="import-item" data-action="(\w+)"', page) == ["update", "create"]
    assert "replaces “Sample Filter”" in page
    assert stored_function(app, "echo") is None  # a preview changes nothing

    results = apply_payload(admin_client, preview)
    assert results.status_code == 200
    assert re.findall(r'data-testid="import-result" data-status="(\w+)"', results.get_data(as_text=True)) == [
        "updated",
        "created",
    ]
    updated = stored_function(app, "sample_filter")
    assert (updated.name, updated.meta["description"], updated.is_active) == ("Filter v2", "v2", True)
    created = stored_function(app, "echo")
    assert created.type == "pipe" and created.is_active is False


def test_import_accepts_the_community_format_and_reports_each_item(app, admin_client):
    community = [
        {"id": "x1", "userId": "someone", "function": {"id": "good_one", "name": "Good", "content": ACTION}},
        {"id": "x2", "function": {"id": "bad_code", "name": "Bad", "content": SYNTAX_ERROR}},
        {"id": "x3", "function": {"id": "bad id!", "name": "Nope", "content": ACTION}},
        {"id": "x4", "function": {"id": "good_one", "name": "Twice", "content": ACTION}},
    ]
    preview = upload(admin_client, community)
    page = text_of(preview)
    assert "(community format)" in page
    assert 'class="badge type-badge type-action">Action<' in page  # the preview loaded the code
    assert "Its code does not load: SyntaxError" in page
    assert "Its id may hold only letters, digits and underscores" in page
    assert "Item 1 of the file has the same id" in page
    assert "1 of them has code that does not load, so it is not ticked." in " ".join(page.split())
    assert re.findall(r'name="item" value="(\d+)" id="item-\d+" checked', page) == ["0"]
    results = apply_payload(admin_client, preview, chosen=["0", "1"])  # the admin ticks it anyway
    page = text_of(results)
    statuses = re.findall(r'data-testid="import-result" data-status="(\w+)"', page)
    assert statuses == ["created", "failed", "skipped", "skipped"]
    assert "SyntaxError" in page
    assert stored_function(app, "good_one").type == "action"
    assert stored_function(app, "bad_code") is None
    assert "Imported 1 function; 1 failed." in page
    # Items the file cannot give are never offered, even when asked for.
    forced = apply_payload(admin_client, upload(admin_client, community), chosen=["2", "3"])
    assert re.findall(r'data-status="(\w+)"', forced.get_data(as_text=True)) == ["skipped"] * 4


def test_import_only_applies_the_chosen_items(app, admin_client):
    export = [
        {"id": "first", "name": "First", "content": ACTION, "meta": {}},
        {"id": "second", "name": "Second", "content": ACTION, "meta": {}},
    ]
    results = apply_payload(admin_client, upload(admin_client, export), chosen=["1"])
    assert re.findall(r'data-status="(\w+)"', results.get_data(as_text=True)) == ["skipped", "created"]
    assert stored_function(app, "first") is None and stored_function(app, "second") is not None


def test_an_export_file_round_trips_through_import(app, admin_client, admin_id):
    make_function(app, admin_id)
    exported = admin_client.get("/admin/functions/export").get_data()
    post(admin_client, "/admin/functions/delete?id=sample_filter", {"id": "sample_filter"})
    results = apply_payload(admin_client, upload(admin_client, exported))
    assert 'data-status="created"' in results.get_data(as_text=True)
    assert stored_function(app, "sample_filter").content == FILTER


@pytest.mark.parametrize("app_config", [{"SLUICE_MAX_CONCURRENT_LOADS": 1}])
def test_a_busy_loader_is_not_reported_as_broken_code(app, admin_client, app_config, monkeypatch):
    from services import loading

    monkeypatch.setattr(loading, "LOAD_SLOT_WAIT_SECONDS", 0.05)
    with app.app_context():
        slots = loading._load_slots()
    assert slots.acquire(timeout=1)
    try:
        page = text_of(upload(admin_client, [{"id": "fine", "name": "Fine", "content": ACTION}]))
    finally:
        slots.release()
    assert "could not be checked now because Sluice is busy" in page
    assert "does not load" not in page


def test_an_item_with_text_no_database_can_store_fails_alone(app, admin_client):
    export = [
        {"id": "broken", "name": "Broken \\ud800", "content": ACTION, "meta": {}},
        {"id": "fine", "name": "Fine", "content": ACTION, "meta": {"note": "ok"}},
        {"id": "bad\\ud800id", "name": "Bad id", "content": ACTION, "type": "\\ud800"},
    ]
    body = json.dumps(export).replace("\\\\ud800", "\\ud800").encode()
    results = apply_payload(admin_client, upload(admin_client, body))
    page = text_of(results)
    assert re.findall(r'data-status="(\w+)"', page) == ["skipped", "created", "skipped"]
    assert "Its name must not contain a lone surrogate" in page
    assert stored_function(app, "broken") is None and stored_function(app, "fine") is not None


def test_the_preview_never_sends_the_files_secrets_back(app, admin_client, admin_id):
    make_function(app, admin_id)
    set_valves(app, "sample_filter", {"api_key": "sk-TOPSECRET-999"})
    exported = admin_client.get("/admin/functions/export?include_valves=1").get_data()
    assert b"sk-TOPSECRET-999" in exported  # the file itself has it: it is the admin's backup
    preview = upload(admin_client, exported)
    assert "sk-TOPSECRET-999" not in preview.get_data(as_text=True)
    results = apply_payload(admin_client, preview, extra={"restore_settings": "1"})
    assert "sk-TOPSECRET-999" not in results.get_data(as_text=True)
    assert stored_function(app, "sample_filter").valves["api_key"] == "sk-TOPSECRET-999"


def test_a_preview_imports_once_and_only_for_its_admin(app, admin_client, admin_id):
    from tests.conftest import _make_user, sign_in

    preview = upload(admin_client, [{"id": "once", "name": "Once", "content": ACTION, "meta": {}}])
    other_admin = app.test_client()
    _make_user(app, "second@example.com", "Second Admin", "admin")
    sign_in(other_admin, "second@example.com")
    stolen = post(
        other_admin, "/admin/functions/import/apply", {"token": preview_token(preview), "item": ["0"]}
    )
    assert stolen.status_code == 400
    assert "This preview is no longer available" in text_of(stolen)
    assert stored_function(app, "once") is None

    assert 'data-status="created"' in apply_payload(admin_client, preview).get_data(as_text=True)
    again = apply_payload(admin_client, preview)
    assert again.status_code == 400 and "This preview is no longer available" in text_of(again)


def set_valves(app, function_id, values):
    from services import valves

    with app.app_context():
        valves.update_valves(function_id, values)


def test_import_restores_valves_and_switches_from_an_export_with_valves(app, admin_client, admin_id):
    make_function(app, admin_id, active=True, is_global=True)
    make_function(app, admin_id, id="echo", content=PIPE, name="Echo")
    set_valves(app, "sample_filter", {"priority": 7, "api_key": "sk-secret"})
    exported = admin_client.get("/admin/functions/export?include_valves=1").get_data()
    for function_id in ("sample_filter", "echo"):
        post(admin_client, f"/admin/functions/delete?id={function_id}", {"id": function_id})

    preview = upload(admin_client, exported)
    page = text_of(preview)
    assert 'data-testid="import-restore-settings"' in page
    assert "Saved in the file: 2 valves, active, global" in page
    assert "Saved in the file: no valves, inactive, not global" in page
    results = apply_payload(admin_client, preview, extra={"restore_settings": "1"})
    assert text_of(results).count("Restored from the file:") == 2

    restored = stored_function(app, "sample_filter")
    assert restored.valves == {"priority": 7, "api_key": "sk-secret"}
    assert (restored.is_active, restored.is_global) == (True, True)
    echo = stored_function(app, "echo")
    assert (echo.valves, echo.is_active, echo.is_global) == ({}, False, False)


def test_import_leaves_settings_alone_unless_asked(app, admin_client, admin_id):
    make_function(app, admin_id)
    set_valves(app, "sample_filter", {"priority": 3})
    export = [
        {
            "id": "sample_filter",
            "name": "Sample",
            "content": FILTER,
            "meta": {},
            "valves": {"priority": 9},
            "is_active": True,
            "is_global": True,
        }
    ]
    results = apply_payload(admin_client, upload(admin_client, export))  # the box left unticked
    assert "Restored from the file" not in text_of(results)
    kept = stored_function(app, "sample_filter")
    assert (kept.valves, kept.is_active, kept.is_global) == ({"priority": 3}, False, False)


def test_import_clears_valves_the_file_says_are_empty(app, admin_client, admin_id):
    make_function(app, admin_id)
    set_valves(app, "sample_filter", {"priority": 3})
    export = [{"id": "sample_filter", "name": "Sample", "content": FILTER, "meta": {}, "valves": {}}]
    apply_payload(admin_client, upload(admin_client, export), extra={"restore_settings": "1"})
    assert stored_function(app, "sample_filter").valves == {}


def test_valves_the_code_rejects_are_reported_and_the_function_stays_off(app, admin_client, admin_id):
    make_function(app, admin_id, active=True)
    make_function(app, admin_id, id="other", active=False)
    bad = {"priority": "not a number"}
    export = [
        {
            "id": "sample_filter",
            "name": "Sample",
            "content": FILTER,
            "meta": {},
            "valves": bad,
            "is_active": True,
        },
        {"id": "other", "name": "Other", "content": FILTER, "meta": {}, "valves": bad, "is_active": True},
        {"id": "fresh", "name": "Fresh", "content": FILTER, "meta": {}, "valves": bad, "is_active": True},
    ]
    results = apply_payload(admin_client, upload(admin_client, export), extra={"restore_settings": "1"})
    page = text_of(results)
    # "other" is identical here: its code is left alone, its settings are still restored (and refused).
    assert re.findall(r'data-status="(\w+)"', page) == ["updated", "unchanged", "created"]
    assert page.count("its valves were not restored (Invalid valves: priority: Input should be") == 3
    assert page.count("It was switched off.") == 2
    for function_id in ("sample_filter", "other", "fresh"):
        function = stored_function(app, function_id)
        assert (function.valves, function.is_active) == ({}, False), function_id


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "The file is empty."),
        (
            b"{not json",
            "The file is not valid JSON: Expecting property name enclosed in double quotes (line 1",
        ),
        (b"\xff\xfe\x00", "The file is not UTF-8 text"),
        (b'{"hello": "world"}', "The file does not hold a list of functions."),
        (b"[]", "The file holds no functions."),
        (b'[{"id": "a", "valves": {"x": NaN}}]', "The file is not valid JSON: NaN is not a JSON value"),
    ],
)
def test_import_explains_a_bad_file(admin_client, payload, message):
    response = upload(admin_client, payload)
    assert response.status_code == 400
    page = text_of(response)
    assert message in page
    assert 'id="file-error"' in page


# --- load from URL --------------------------------------------------------------------------------------------


@pytest.fixture
def code_server():
    """A local web server that serves FILTER at /filters/shouter.py and 404 elsewhere."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/filters/shouter.py":
                body = FILTER.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/x-python")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("app_config", [{"SLUICE_ALLOW_PRIVATE_URLS": True}])
def test_load_from_url_opens_the_editor_prefilled(app, admin_client, code_server):
    assert admin_client.get("/admin/functions/load-url").status_code == 200
    response = post(admin_client, "/admin/functions/load-url", {"url": f"{code_server}/filters/shouter.py"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'data-testid="loaded-from"' in page
    assert textarea(response) == FILTER
    assert 'value="Sample Filter"' in page  # the frontmatter title
    assert 'value="sample_filter"' in page
    assert 'action="/admin/functions/create"' in page
    assert stored_function(app, "sample_filter") is None  # nothing stored until saved

    missing = post(admin_client, "/admin/functions/load-url", {"url": f"{code_server}/nothing.py"})
    assert missing.status_code == 400
    assert 'id="url-error"' in missing.get_data(as_text=True)


def test_load_from_url_refuses_internal_addresses_by_default(admin_client, code_server):
    response = post(admin_client, "/admin/functions/load-url", {"url": f"{code_server}/filters/shouter.py"})
    assert response.status_code == 400
    assert 'id="url-error"' in response.get_data(as_text=True)
    empty = post(admin_client, "/admin/functions/load-url", {"url": ""})
    assert "Enter the address of a Python file" in text_of(empty)


# --- small helpers --------------------------------------------------------------------------------------------


def test_relative_time_reads_naturally():
    from blueprints.admin.functions import slugify
    from web.filters import relative_time

    assert relative_time(1000, now=1030) == "just now"
    assert relative_time(1000, now=1000 + 60) == "1 minute ago"
    assert relative_time(1000, now=1000 + 7200) == "2 hours ago"
    assert relative_time(1000, now=1000 + 86400 * 3) == "3 days ago"
    assert relative_time(0) == "never"
    assert slugify("  My Filter: v2!  ") == "my_filter_v2"
    assert slugify("x" * 70) == "x" * 64
    assert slugify("Crème brûlée – Ω") == "creme_brulee"


def test_nul_characters_in_the_form_are_refused_not_a_500(admin_client):
    """PostgreSQL cannot store NUL; the page says so beside the form instead of failing."""
    token = csrf_token(admin_client, "/admin/functions/create")
    for field, value in (("name", "Bad\x00Name"), ("content", 'class Filter:\n    x = "\x00"\n')):
        form = {
            "csrf_token": token,
            "name": "Nul test",
            "id": "nul_test",
            "description": "",
            "content": "class Filter:\n    pass\n",
        }
        form[field] = value
        response = admin_client.post("/admin/functions/create", data=form)
        assert response.status_code in (400, 422), (field, response.status_code)
        assert b"NUL character" in response.data
    assert admin_client.get("/api/v1/functions/id/nul_test").status_code == 404


# --- name, id and description follow the code until the admin chooses them (a browser without scripts) --------

SHEBANG_FILTER = '#!/usr/bin/env python\n"""\ntitle: Shebang Func\ndescription: has header\n"""\n\n\nclass Filter:\n    pass\n'


def form_fields(response) -> dict[str, str]:
    """What a browser without scripts posts back from an editor page, untouched: every field's name and value."""
    page = response.get_data(as_text=True)
    fields = {}
    for tag in re.findall(r"<input [^>]*>", page):
        name, value = re.search(r' name="([^"]*)"', tag), re.search(r' value="([^"]*)"', tag)
        if name and 'type="checkbox"' not in tag:
            fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
    fields["content"] = textarea(response)
    return fields


def test_code_pasted_over_a_starter_is_saved_under_its_own_title_without_scripts(app, admin_client):
    fields = form_fields(admin_client.get("/admin/functions/create"))
    # The starter's name, id and description are shown before saving...
    assert (fields["name"], fields["id"]) == ("My Filter", "my_filter")
    assert fields["description"].startswith("Adjusts each request")
    # ...but code pasted over it is saved under its own frontmatter (here after a shebang line).
    fields["content"] = SHEBANG_FILTER
    response = admin_client.post("/admin/functions/create", data=fields)
    assert response.status_code == 302, text_of(response)
    assert response.headers["Location"] == "/admin/functions/edit?id=shebang_func"
    f = stored_function(app, "shebang_func")
    assert (f.name, f.meta["description"]) == ("Shebang Func", "has header")
    assert stored_function(app, "my_filter") is None


@pytest.mark.parametrize(
    ("content", "name", "description"),
    [
        pytest.param(
            "'''\ntitle: Single\ndescription: quoted\n'''\nclass Filter:\n    pass\n", "Single", "quoted"
        ),
        pytest.param('"""\ntitle: Title Only\n"""\nclass Filter:\n    pass\n', "Title Only", ""),
    ],
)
def test_a_starter_field_the_code_does_not_set_is_not_saved(app, admin_client, content, name, description):
    fields = form_fields(admin_client.get("/admin/functions/create?template=pipe"))
    fields["content"] = content
    assert admin_client.post("/admin/functions/create", data=fields).status_code == 302
    from blueprints.admin.functions import slugify

    f = stored_function(app, slugify(name))
    assert (f.name, f.meta["description"] or "") == (name, description)


def test_code_without_a_title_asks_for_a_name_rather_than_taking_the_starters(app, admin_client):
    fields = form_fields(admin_client.get("/admin/functions/create"))
    fields["content"] = "class Filter:\n    pass\n"
    response = admin_client.post("/admin/functions/create", data=fields)
    assert response.status_code == 400
    assert "Give the function a name" in text_of(response)
    shown = form_fields(response)
    assert (shown["name"], shown["id"], shown["description"]) == ("", "", "")
    assert stored_function(app, "my_filter") is None


def test_what_the_admin_typed_is_kept_and_the_id_follows_a_typed_name(app, admin_client):
    fields = form_fields(admin_client.get("/admin/functions/create"))
    fields.update(name="Typed Name", content=SHEBANG_FILTER)
    assert admin_client.post("/admin/functions/create", data=fields).status_code == 302
    f = stored_function(app, "typed_name")
    assert (f.name, f.meta["description"]) == ("Typed Name", "has header")

    fields = form_fields(admin_client.get("/admin/functions/create"))
    fields.update(
        id="chosen_id", description="typed", content=SHEBANG_FILTER.replace("Shebang Func", "Other")
    )
    assert admin_client.post("/admin/functions/create", data=fields).status_code == 302
    f = stored_function(app, "chosen_id")
    assert (f.name, f.meta["description"]) == ("Other", "typed")


def test_after_a_refused_save_the_filled_in_fields_still_follow_the_code(app, admin_client):
    fields = form_fields(admin_client.get("/admin/functions/create"))
    fields["content"] += "\nx = (\n"
    refused = admin_client.post("/admin/functions/create", data=fields)
    assert refused.status_code == 400
    fields = form_fields(refused)
    assert (fields["name"], fields["id"]) == ("My Filter", "my_filter")  # shown, still marked as filled in
    fields["content"] = SHEBANG_FILTER
    assert admin_client.post("/admin/functions/create", data=fields).status_code == 302
    assert stored_function(app, "shebang_func") is not None and stored_function(app, "my_filter") is None


def test_a_refused_save_is_marked_unsaved_for_the_page(app, admin_client, admin_id):
    make_function(app, admin_id)
    form_tag = r'<form method="post" class="card function-form"[^>]*>'
    assert "data-unsaved" not in re.search(
        form_tag, text_of(admin_client.get("/admin/functions/edit?id=sample_filter"))
    ).group(0)
    fields = form_fields(admin_client.get("/admin/functions/edit?id=sample_filter"))
    fields["content"] += "\nx = (\n"
    refused = admin_client.post("/admin/functions/edit?id=sample_filter", data=fields)
    assert refused.status_code == 400
    assert 'data-unsaved="1"' in re.search(form_tag, text_of(refused)).group(0)


@pytest.mark.parametrize("app_config", [{"SLUICE_ALLOW_PRIVATE_URLS": True}])
def test_load_from_url_warns_of_a_taken_id_and_keeps_its_address_after_a_refused_save(
    app, admin_client, admin_id, code_server
):
    url = f"{code_server}/filters/shouter.py"
    fresh = post(admin_client, "/admin/functions/load-url", {"url": url})
    assert 'data-testid="id-taken" hidden' in fresh.get_data(as_text=True)  # nothing called sample_filter yet

    make_function(app, admin_id)  # sample_filter, the id the loaded code's title gives
    loaded = post(admin_client, "/admin/functions/load-url", {"url": url})
    page = loaded.get_data(as_text=True)
    warning = re.search(r'<span class="id-taken" data-testid="id-taken"[^>]*>(.*?)</span>', page, re.S)
    assert warning and "hidden" not in warning.group(0)
    assert "already exists" in warning.group(
        1
    ) and 'href="/admin/functions/edit?id=sample_filter"' in warning.group(1)
    assert "id-help" in re.search(r'<input id="id"[^>]*>', page).group(0)  # read with the field

    refused = admin_client.post("/admin/functions/create", data=form_fields(loaded))
    assert refused.status_code == 400
    page = text_of(refused)
    assert re.search(r'id="id-error"[^>]*>A function with this id already exists', page)
    assert f'Loaded from <a href="{url}"' in page
    assert 'data-testid="id-taken" hidden' in page  # the error says it; the warning does not repeat it

    fields = form_fields(refused)
    fields.update(id="shouter", loaded_from="javascript:alert(1)")
    mine = admin_client.post("/admin/functions/create", data=fields | {"content": SYNTAX_ERROR})
    assert mine.status_code == 400
    assert "javascript:" not in mine.get_data(as_text=True)  # only web addresses are linked


def test_a_refused_save_of_a_clone_still_says_what_it_copies(app, admin_client, admin_id):
    make_function(app, admin_id)
    fields = form_fields(admin_client.get("/admin/functions/create?clone=sample_filter"))
    assert (fields["cloned_from"], fields["id"]) == ("sample_filter", "sample_filter_copy")
    fields["content"] = SYNTAX_ERROR
    refused = admin_client.post("/admin/functions/create", data=fields)
    assert refused.status_code == 400
    assert "A copy of <code>sample_filter</code>" in refused.get_data(as_text=True)


def test_the_id_check_always_answers_200_with_whether_the_id_is_free(
    app, admin_client, admin_id, user_client
):
    make_function(app, admin_id)
    for asked, answer in (
        ("sample_filter", {"id": "sample_filter", "valid": True, "available": False}),
        ("Sample_Filter", {"id": "sample_filter", "valid": True, "available": False}),
        ("free_id", {"id": "free_id", "valid": True, "available": True}),
        ("no spaces", {"id": "no spaces", "valid": False, "available": False}),
    ):
        response = admin_client.get("/admin/functions/id-available", query_string={"id": asked})
        assert response.status_code == 200 and response.get_json() == answer
    assert user_client.get("/admin/functions/id-available?id=x").status_code in (302, 403)


def test_an_identical_function_is_unchanged_and_left_alone_by_import(app, admin_client, admin_id):
    make_function(app, admin_id, meta={"description": "Same"})
    make_function(app, admin_id, id="other_filter", name="Other", meta={})
    before = stored_function(app, "sample_filter")
    stamps, version = (before.updated_at, before.created_at), before.version_id
    export = admin_client.get("/admin/functions/export").get_json()
    for item in export:
        if item["id"] == "other_filter":
            item["name"] = "Other, renamed"
    export.append({"id": "brand_new", "name": "Brand New", "content": PIPE, "meta": {}})
    preview = upload(admin_client, export)
    page = text_of(preview)
    rows = re.findall(r'data-testid="import-item" data-action="(\w+)" data-changes="([\w ]*)"', page)
    by_id = dict(zip([item["id"] for item in export], rows, strict=True))
    assert by_id == {
        "sample_filter": ("unchanged", ""),
        "other_filter": ("update", "name"),
        "brand_new": ("create", ""),
    }
    assert "1 already the same here" in " ".join(page.split())
    # Unchanged is offered, not ticked; ticked anyway, it is still left alone (no version, no new timestamp).
    index = str(next(i for i, item in enumerate(export) if item["id"] == "sample_filter"))
    chosen = [*re.findall(r'name="item" value="(\d+)" id="item-\d+" checked', page), index]
    results = apply_payload(admin_client, preview, chosen=chosen)
    statuses = re.findall(r'data-status="(\w+)"', results.get_data(as_text=True))
    assert dict(zip([item["id"] for item in export], statuses, strict=True)) == {
        "sample_filter": "unchanged",
        "other_filter": "updated",
        "brand_new": "created",
    }
    after = stored_function(app, "sample_filter")
    assert (after.updated_at, after.created_at) == stamps and after.version_id == version


def test_importing_nothing_chosen_is_refused_with_the_preview_kept(app, admin_client, admin_id):
    preview = upload(admin_client, [{"id": "echo", "name": "Echo", "content": PIPE, "meta": {}}])
    refused = apply_payload(admin_client, preview, chosen=[])
    assert refused.status_code == 400
    assert "Nothing was imported: tick at least one function." in text_of(refused)
    assert stored_function(app, "echo") is None
    # The same preview can still be imported.
    assert apply_payload(admin_client, refused, chosen=["0"]).status_code == 200
    assert stored_function(app, "echo") is not None


def test_a_function_without_valves_offers_no_valves_link(app, admin_client, admin_id):
    make_function(app, admin_id, id="plain_action", content=ACTION, name="Plain Action")  # no Valves class
    make_function(app, admin_id)  # FILTER has a Valves class
    plain = admin_client.get("/admin/functions/edit?id=plain_action").get_data(as_text=True)
    assert 'data-testid="valves-link"' not in plain
    valved = admin_client.get("/admin/functions/edit?id=sample_filter").get_data(as_text=True)
    assert 'data-testid="valves-link"' in valved
    listing = admin_client.get("/admin/functions").get_data(as_text=True)
    row = re.search(r'<tr id="function-plain_action".*?</tr>', listing, re.S).group(0)
    assert "valves-link" not in row


@pytest.mark.parametrize(
    ("icon", "shown"),
    [
        ("data:image/png;base64,iVBORw0KGgo=", True),
        ("data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=", True),
        ("https://example.com/icon.png", True),
        ("http://example.com/icon.png", False),
        ("javascript:alert(1)", False),
        ("data:text/html;base64,PHNjcmlwdD4=", False),
        ('https://example.com/x" onerror="alert(1)', False),
    ],
)
def test_only_safe_icon_urls_are_shown(icon, shown):
    from services.function_meta import icon_url

    assert (icon_url({"manifest": {"icon_url": icon}}) == icon) is shown
    assert (icon_url({"icon_url": icon}) == icon) is shown
    assert (icon_url({}, icon) == icon) is shown  # the icon the code names (`self.icon`)


def test_the_frontmatters_icon_comes_first_then_the_codes_then_metas():
    from services.function_meta import icon_url

    front, code, given = (f"https://{name}.example/icon.png" for name in ("front", "code", "given"))
    assert icon_url({"manifest": {"icon_url": front}, "icon_url": given}, code) == front
    assert icon_url({"icon_url": given}, code) == code
    assert icon_url({"icon_url": given}, None) == given
    assert icon_url(None, code) == code
    # One that is not safe to show is passed over for the next.
    assert icon_url({"manifest": {"icon_url": "javascript:alert(1)"}, "icon_url": given}, code) == code
    assert icon_url({"icon_url": given}, "javascript:alert(1)") == given


def icon_sources(page: str) -> list[str]:
    """The addresses of the function icons on a page, as a browser reads them."""
    return [html.unescape(src) for src in re.findall(r'<img class="function-icon" src="([^"]*)"', page)]


def list_row(client, function_id: str) -> str:
    listing = client.get("/admin/functions").get_data(as_text=True)
    return re.search(rf'<tr id="function-{function_id}".*?</tr>', listing, re.S).group(0)


def test_the_icon_the_code_names_is_shown_in_the_list_and_on_its_pages(app, admin_client, admin_id):
    make_function(app, admin_id, id="icon_filter", content=ICON_FILTER, name="Icon Filter", active=True)
    make_function(app, admin_id)  # names no icon
    stored = stored_function(app, "icon_filter")
    assert stored.icon == SVG_ICON
    assert "icon" not in stored.meta and "icon" not in stored.meta["manifest"]  # meta mirrors the frontmatter

    assert icon_sources(list_row(admin_client, "icon_filter")) == [SVG_ICON]
    assert icon_sources(list_row(admin_client, "sample_filter")) == []
    for path in (
        "/admin/functions/edit?id=icon_filter",
        "/admin/functions/valves?id=icon_filter",
        "/settings/valves?id=icon_filter",
    ):
        page = admin_client.get(path)
        assert page.status_code == 200, path
        assert SVG_ICON in icon_sources(page.get_data(as_text=True)), path


INLINE_SVG = 'data:image/svg+xml,<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'


@pytest.mark.parametrize(
    ("expression", "stored", "shown"),
    [
        ("'javascript:alert(1)'", "javascript:alert(1)", None),
        ("'data:text/html;base64,PHNjcmlwdD4='", "data:text/html;base64,PHNjcmlwdD4=", None),
        ("'http://example.com/icon.png'", "http://example.com/icon.png", None),
        # Shown, but only as an <img> whose address is escaped: no SVG markup of it lands in the page.
        (repr(INLINE_SVG), INLINE_SVG, INLINE_SVG),
        ('"data:image/png;base64," + "A" * (256 * 1024)', None, None),  # too long for the loader to report
        ("42", None, None),
        ("['https://example.com/icon.png']", None, None),
        # No database could store these: the icon is dropped, the save goes through.
        ("'data:image/svg+xml,<svg/>\\x00'", None, None),
        ("'https://example.com/\\ud800.png'", None, None),
    ],
)
def test_a_hostile_icon_is_never_shown_and_never_breaks_a_save(
    app, admin_client, admin_id, expression, stored, shown
):
    content = (
        "class Filter:\n"
        "    def __init__(self):\n"
        f"        self.icon = {expression}\n\n"
        "    def inlet(self, body: dict) -> dict:\n"
        "        return body\n"
    )
    make_function(app, admin_id, id="hostile_icon", content=content, name="Hostile Icon")
    assert stored_function(app, "hostile_icon").icon == stored

    row = list_row(admin_client, "hostile_icon")
    assert icon_sources(row) == ([shown] if shown else [])
    assert "javascript:" not in row and "<svg" not in row and "<script" not in row
    editor = admin_client.get("/admin/functions/edit?id=hostile_icon")
    assert editor.status_code == 200
    page = editor.get_data(as_text=True)
    assert icon_sources(page) == ([shown] if shown else [])
    assert "<script>alert" not in page and 'onload="alert' not in page
