"""Every statement the API and the console send finds its rows through an index: none reads a whole table that
grows with use, except where it must read every row, or takes the first rows in an index's order and stops (the
allow-list below names each, with the reason).

How: one busy instance per database (accounts, keys, functions with history, user valves, a long audit trail,
sign-in failures, staged imports), every route and page driven through it while the engine records each statement
with its parameters, then each distinct statement explained on that database. SQLite's EXPLAIN QUERY PLAN says
SCAN for a table (or a whole index) read from end to end, where SEARCH finds rows by an index. PostgreSQL is asked
with sequential scans, hash joins and merge joins switched off, so that it takes an index wherever one can serve
(on small tables it rightly prefers reading them whole, which would prove nothing); a scan node it still leaves
without an index condition reads the table, or a whole index, from end to end. The filters the trail is searched by
are chosen rare, as they are in a long trail, so that a plan walking everything to find them would show.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import event, text

from tests.conftest import BACKENDS, PASSWORD, _truncate_postgres, bearer, csrf_token, make_app, sign_in
from tests.console.html_forms import read_form
from tests.factories import ACTION, FILTER, PIPE, TOGGLE_FILTER, form

# Every table Sluice writes grows with use; only Alembic's bookkeeping does not.
GROWING = {
    "users",
    "api_keys",
    "functions",
    "function_versions",
    "user_valves",
    "audit_log",
    "sign_in_failures",
    "staged_imports",
}


@dataclass(frozen=True)
class Allowance:
    """Statements (matched by ``pattern``, on the SQL with its whitespace folded) that may read ``table`` whole.

    ``stops_early``: the statement takes the first rows (LIMIT) in some order; it may walk the table only through an
    index that gives that order, stopping once it has them, never read every row and sort them.
    """

    table: str
    pattern: str
    reason: str
    stops_early: bool = False

    def matches(self, sql: str) -> bool:
        return re.search(self.pattern, folded(sql)) is not None


ALLOWED = [
    # --- every row, by contract ----------------------------------------------------------------------------------
    Allowance(
        "functions",
        r"^SELECT (key_owner\.\w+, )*functions\.version_id, functions\.id, .* FROM "
        r"(\(SELECT api_keys\..*\) AS key_owner LEFT OUTER JOIN )?functions .*ORDER BY functions\.updated_at DESC, "
        r"functions\.id$",
        "GET / and GET /list answer every function (a user's GET / every active one): unpaginated by contract;"
        " GET / with an API key joins them to the key's row",
    ),
    Allowance(
        "functions",
        r"^SELECT functions\.id, functions\.version_id, .* FROM functions( ORDER BY functions\.created_at, "
        r"functions\.id)?$",
        "an export answers every function",
    ),
    Allowance(
        "functions",
        r"^SELECT functions\.id FROM functions$",
        "a sync deletes every stored function it does not list: it reads every id, from an index (never the rows;"
        " the functions it lists are read by id)",
    ),
    Allowance(
        "functions",
        r" FROM functions .*WHERE .*lower\(functions\.name\) LIKE ",
        "the console's search looks for words inside names, ids, descriptions and authors: no b-tree index finds a"
        " substring, so a search reads every function once (its page and its count)",
    ),
    Allowance(
        "functions",
        r"^SELECT (count\(\*\) AS count_1|functions\.type, count\(\*\) AS count_1) FROM functions"
        r"( GROUP BY functions\.type)?$",
        "the console's list says how many functions there are, and of each type: a count reads every entry of an"
        " index (never the rows)",
    ),
    Allowance(
        "users",
        r"^SELECT count\(\*\) AS count_1, coalesce\(sum\(CASE WHEN \(users\.role = .* FROM users$",
        "the users page says how many accounts there are, how many wait for approval and how many match its"
        " search: one pass over the table for all three",
    ),
    Allowance(
        "users",
        r"^SELECT users\.id, .* FROM users WHERE .*lower\(users\.name\) LIKE .* ORDER BY users\.created_at, "
        r"users\.email LIMIT ",
        "the users page's search looks for words inside names and emails: no b-tree index finds a substring, so a"
        " search reads every account once",
    ),
    Allowance(
        "audit_log",
        r"^SELECT count\(\*\) AS count_1 FROM audit_log$",
        "the trail says how many entries match; unfiltered, that is all of them, counted from an index",
    ),
    # --- the first rows in an index's order ----------------------------------------------------------------------
    Allowance(
        "functions",
        r"^SELECT functions\.id, functions\.name, .* FROM functions LEFT OUTER JOIN users ON users\.id = "
        r"functions\.user_id (WHERE (?!.* LIKE ).* )?ORDER BY .* LIMIT ",
        "the console's list shows one page in the chosen sort, read through that sort's index and stopped at the"
        " page's end; its filters (four types, two states) each keep a large share of the functions, so passing"
        " over the others on the way beats sorting all that match",
        stops_early=True,
    ),
    Allowance(
        "audit_log",
        r"^SELECT audit_log\.id, .* FROM audit_log ORDER BY audit_log\.created_at DESC, audit_log\.id DESC LIMIT ",
        "the unfiltered trail: one page, newest first, read backwards through ix_audit_log_time",
        stops_early=True,
    ),
    Allowance(
        "functions",
        r"^SELECT functions\.id FROM functions ORDER BY functions\.id LIMIT ",
        "the audit filter suggests the first 1,000 function ids, in order",
        stops_early=True,
    ),
    Allowance(
        "users",
        r"^SELECT users\.id, .* FROM users WHERE users\.role (!=|=) \S+ ORDER BY users\.created_at, users\.email "
        r"LIMIT ",
        "the users page lists accounts a page at a time (those waiting for approval, then the others, or one"
        " role's), read through ix_users_created_at_email and stopped at the page's end",
        stops_early=True,
    ),
    Allowance(
        "users",
        r"^SELECT users\.email FROM users ORDER BY users\.email LIMIT ",
        "the audit filter suggests the first 1,000 account emails, in order",
        stops_early=True,
    ),
    Allowance(
        "users",
        r"^SELECT users\.id FROM users LIMIT ",
        "the sign-in page asks whether any account exists (else it creates the first admin): the first row answers",
        stops_early=True,
    ),
]

# The pages that must read one page of rows in an index's order, sorting nothing (issue 13: the audit filters and
# the history lists).
IN_INDEX_ORDER = {
    "audit_log": {"audit.audit_log", "api_audit.audit_log", "api_audit_legacy.audit_log"},
    "function_versions": {
        "history.versions_list",
        "history.version_view",
        "history.restore",
        "history.delete",
        "api_functions.history",
        "api_functions.history_entry",
        "api_functions_legacy.history",
        "api_functions_legacy.history_entry",
    },
}


def folded(sql: str) -> str:
    return " ".join(sql.split())


def stops_early(statement: Statement) -> bool:
    """Whether ``statement`` takes its first rows under an allowance that lets it walk a table in an index's order."""
    return " LIMIT " in folded(statement.sql) and any(
        allowance.stops_early and allowance.matches(statement.sql) for allowance in ALLOWED
    )


def in_index_order(statement: Statement) -> str | None:
    """The table whose page ``statement`` reads, when it is one of those that must come in an index's order."""
    sql = folded(statement.sql)
    for table, endpoints in IN_INDEX_ORDER.items():
        if statement.endpoint in endpoints and f" FROM {table} " in sql and " LIMIT " in sql:
            return table
    return None


@dataclass
class Statement:
    sql: str
    parameters: object
    endpoint: str

    @property
    def key(self) -> tuple[str, str]:
        return self.sql, repr(self.parameters)


@dataclass
class Scan:
    """A table read whole by one statement, as its plan says."""

    table: str
    detail: str
    # Through an index in the statement's order, nothing read in full before the first row comes.
    ordered: bool


@dataclass
class Plan:
    scans: list[Scan]
    sorts: bool  # some step reads all its input before answering (a sort, a grouping, a window)
    text: str


@dataclass
class Run:
    backend: str
    statements: list[Statement] = field(default_factory=list)
    routes: set[tuple[str, str]] = field(default_factory=set)
    visited: set[tuple[str, str]] = field(default_factory=set)
    plans: dict[tuple[str, str], Plan] = field(default_factory=dict)
    ordered_plans: dict[tuple[str, str], Plan] = field(
        default_factory=dict
    )  # those of in_index_order statements


# --- a busy instance ------------------------------------------------------------------------------------------

START = 1_760_000_000  # the bulk rows' first timestamp (2025-10-09)
HOUR = 3600
ENTRIES = 3000  # one audit entry an hour, from START on: 125 days


def day(hours: int) -> str:
    from services.audit import day_text

    return day_text(START + hours * HOUR)


@dataclass
class Busy:
    admin: str
    user: str
    pending: str
    keys: dict[str, str]
    versions: list[str]  # sample_filter's, newest first


def fill(app) -> Busy:
    """Accounts, keys, functions with history and user valves, a long audit trail, sign-in failures, staged
    imports: the few functions the routes run are stored through the services (their code loaded), the bulk
    directly."""
    from extensions import db
    from models import (
        ApiKey,
        AuditEntry,
        Function,
        FunctionVersion,
        SignInFailures,
        StagedImport,
        User,
        UserValves,
    )
    from services import accounts, functions, valves
    from services.audit import ACTIONS

    with app.app_context():
        admin = accounts.create_user("Ada Admin", "admin@example.com", PASSWORD, role="admin")
        user = accounts.create_user("Uma User", "user@example.com", PASSWORD, role="user")
        other = accounts.create_user("Otto Other", "other@example.com", PASSWORD, role="user")
        pending = accounts.create_user("Pat Pending", "pending@example.com", PASSWORD, role="pending")
        keys = {
            "admin": accounts.create_api_key(admin, "admin")[1],
            "user": accounts.create_api_key(user, "user")[1],
            "other": accounts.create_api_key(other, "other")[1],
            "connection": accounts.create_api_key(admin, "open webui", connection=True)[1],
        }
        for fid, content in (("sample_filter", FILTER), ("echo", PIPE), ("sample_action", ACTION)):
            functions.create_function(
                admin, id=fid, name=fid.replace("_", " ").title(), content=content, meta={}
            )
            functions.set_switches(fid, is_active=True, is_global=fid != "echo")
        functions.create_function(admin, id="toggler", name="Toggler", content=TOGGLE_FILTER, meta={})
        for n in range(1, 6):
            functions.update_function(
                admin,
                "sample_filter",
                name="Sample Filter",
                content=FILTER.replace(">> ", f">{n}> "),
                meta={},
                commit_message=f"prefix {n}",
            )
        valves.update_user_valves(user, "sample_filter", {"max_turns": 7})
        valves.update_user_valves(other, "sample_filter", {"enabled": False})

        people = [
            User(name=f"Person {n}", email=f"person{n}@example.com", role="user", password_hash="x")
            for n in range(60)
        ]
        db.session.add_all(people)
        db.session.flush()
        for n, person in enumerate(people):
            db.session.add(ApiKey(user_id=person.id, name="ci", key_hash=f"{n:064x}", prefix="sk-x"))
        schema = {"type": "object", "properties": {"shout": {"type": "boolean", "default": False}}}
        for n in range(300):
            fid = f"bulk_{n:03d}"
            db.session.add(
                Function(
                    id=fid,
                    user_id=admin.id if n % 3 else people[n % 60].id,
                    name=f"Bulk {n}",
                    type=("filter", "pipe", "action")[n % 3],
                    content=f"class Filter:\n    pass  # {n}\n",
                    meta={"description": f"number {n}", "manifest": {"author": "Ada"}},
                    valves={},
                    is_active=n % 2 == 0,
                    user_valves_schema=schema,
                    created_at=START + n,
                    updated_at=START + 2 * n,
                )
            )
            db.session.flush()
            for v in range(3):
                db.session.add(
                    FunctionVersion(
                        function_id=fid, user_id=admin.id, name=fid, content="x", created_at=START + v
                    )
                )
            for person in people[n % 10 :: 10]:
                db.session.add(UserValves(user_id=person.id, function_id=fid, valves={"shout": True}))
        actions = list(ACTIONS)
        for n in range(ENTRIES):
            person = people[n % 60]
            db.session.add(
                AuditEntry(
                    created_at=START + n * HOUR,
                    actor_id=person.id,
                    actor_email=person.email,
                    actor_name=person.name,
                    face="api_key",
                    action=actions[n % len(actions)],
                    target_kind="function",
                    target_id=f"bulk_{n % 300:03d}",
                    details={},
                )
            )
        for n in range(50):
            db.session.add(SignInFailures(email_hash=f"{n:064x}", failures=n % 5, updated_at=START + n))
        for n in range(10):
            db.session.add(
                StagedImport(id=f"staged-{n}", user_id=admin.id, payload="[]", created_at=START + n)
            )
        db.session.commit()
        versions = list(
            db.session.scalars(
                db.select(FunctionVersion.id)
                .where(FunctionVersion.function_id == "sample_filter")
                .order_by(FunctionVersion.created_at.desc(), FunctionVersion.id.desc())
            )
        )
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("ANALYZE"))
            db.session.commit()
        return Busy(admin.id, user.id, pending.id, keys, versions)


# --- driving every route and page -----------------------------------------------------------------------------


class Caller:
    """One client; each call checks the answer's status, so that no route is passed by an early refusal."""

    def __init__(self, client, key: str | None = None):
        self.client = client
        self.headers = bearer(key) if key else {}

    def __call__(self, method: str, path: str, expect: int = 200, **kw):
        response = self.client.open(path, method=method, headers=self.headers, **kw)
        assert response.status_code == expect, (method, path, response.status_code, response.get_data()[:300])
        return response

    def form(self, path: str, data: dict, expect: int = 302, token_from: str = "/settings/keys", **kw):
        """Post a console form as a browser does: with the page's CSRF token."""
        data = {"csrf_token": csrf_token(self.client, token_from), **data}
        return self("POST", path, expect, data=data, **kw)


def browser(app, email: str) -> Caller:
    client = app.test_client()
    assert sign_in(client, email).status_code == 302
    return Caller(client)


CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": False}

# Rare values, as a filter's are in a long trail: one account of 60, one function of 300, one action of 19, a
# couple of days out of 125.
RARE_ACTOR = "person7@example.com"
RARE_FUNCTION = "bulk_007"
RARE_ACTION = "function.valves_changed"


def drive_api(app, busy: Busy, prefix: str, made: str) -> None:
    """Every route of the functions API and the audit API under one prefix."""
    admin = Caller(app.test_client(), busy.keys["admin"])
    user = Caller(app.test_client(), busy.keys["user"])
    p = prefix + "/functions"
    for path in ("/", "/list", "/export", "/export?include_valves=true"):
        admin("GET", p + path)
    user("GET", p + "/")
    admin("POST", p + "/create", json=form(id=made, name="Made", content=FILTER))
    admin("GET", f"{p}/id/{made}")
    admin("POST", f"{p}/id/{made}/update", json=form(name="Made again", content=FILTER.replace(">> ", "!! ")))
    admin("POST", f"{p}/id/{made}/toggle")
    admin("POST", f"{p}/id/{made}/toggle/global")
    admin("GET", f"{p}/id/sample_filter/valves")
    admin("GET", f"{p}/id/sample_filter/valves/spec")
    admin("POST", f"{p}/id/sample_filter/valves/update", json={"priority": 3})
    user("GET", f"{p}/id/sample_filter/valves/user")
    user("GET", f"{p}/id/sample_filter/valves/user/spec")
    user("POST", f"{p}/id/sample_filter/valves/user/update", json={"max_turns": 5})
    v = busy.versions
    admin("GET", f"{p}/id/sample_filter/history")
    admin("GET", f"{p}/id/sample_filter/history?page=2")
    admin("GET", f"{p}/id/sample_filter/history/{v[2]}")
    admin("GET", f"{p}/id/sample_filter/history/diff?from_id={v[3]}&to_id={v[1]}")
    made_versions = [version["id"] for version in admin("GET", f"{p}/id/{made}/history").get_json()]
    admin("POST", f"{p}/id/{made}/update/version", json={"version_id": made_versions[-1]})
    admin("DELETE", f"{p}/id/{made}/history/{made_versions[0]}")
    admin("GET", f"{p}/id/echo/requirements")
    admin("POST", f"{p}/id/echo/requirements/install", 403)
    admin("POST", f"{p}/requirements/install", 403, json={"content": PIPE})
    admin("GET", f"{p}/requirements/jobs/20260101T000000-abcdef12", 404)
    user("POST", f"{p}/id/sample_filter/run", json={"method": "inlet", "body": CHAT})
    admin("POST", f"{p}/load/url", 400, json={"url": "http://127.0.0.1/function.py"})
    everything = admin("GET", p + "/export?include_valves=true").get_json()
    admin("POST", p + "/sync?dry_run=true", json={"functions": everything})
    admin("POST", p + "/sync", json={"functions": everything})
    admin("DELETE", f"{p}/id/{made}/delete")

    early, late, middle = START + 40 * HOUR, START + (ENTRIES - 40) * HOUR, START + 1500 * HOUR
    for query in (
        "",
        "?page=3&per_page=20",
        f"?function={RARE_FUNCTION}",
        f"?function={RARE_FUNCTION}&page=2&per_page=2",
        f"?user={busy.user}",
        f"?user={RARE_ACTOR}",
        f"?action={RARE_ACTION}",
        f"?action={RARE_ACTION}&page=2&per_page=20",
        f"?since={late}",
        f"?until={early}",
        f"?until={early}&page=2&per_page=10",
        f"?since={middle}&until={middle + 40 * HOUR}",
        f"?function={RARE_FUNCTION}&user={RARE_ACTOR}&action={RARE_ACTION}",
        f"?user={RARE_ACTOR}&since={middle}&until={middle + 400 * HOUR}",
        f"?action={RARE_ACTION}&until={middle}&page=2&per_page=5",
        f"?function={RARE_FUNCTION}&since={middle}",
    ):
        admin("GET", prefix + "/audit" + query)


def drive_console(app, busy: Busy) -> None:
    """Every console page and form, as a visitor, a pending account, an admin and a user."""
    anonymous = Caller(app.test_client())
    anonymous("GET", "/health")
    anonymous("GET", "/", 302)
    anonymous("GET", "/auth")
    anonymous.form("/auth", {"email": "admin@example.com", "password": "wrong"}, 400, token_from="/auth")
    anonymous.form("/auth", {"email": "nobody@example.com", "password": "wrong"}, 400, token_from="/auth")
    for path in ("/api/docs", "/api/openapi.json", "/openapi.json"):
        anonymous("GET", path)
    anonymous("GET", "/auth/signup")
    anonymous.form(
        "/auth/signup",
        {"name": "New Person", "email": "new@example.com", "password": PASSWORD},
        token_from="/auth/signup",
    )

    pending = browser(app, "pending@example.com")
    pending("GET", "/pending")

    admin = browser(app, "admin@example.com")
    admin("GET", "/", 302)
    for query in (
        "",
        "?page=2",
        "?q=bulk&sort=name",
        "?q=ada&page=2",
        "?type=action&status=active",
        "?type=filter&sort=updated&dir=asc&page=2",
        "?status=inactive&sort=created",
        "?sort=name",
        "?sort=name&dir=desc&page=3",
        "?sort=id&page=2",
        "?sort=type&dir=desc",
        "?sort=created&dir=asc&page=2",
    ):
        admin("GET", "/admin/functions" + query)
    admin("GET", "/admin/functions/create?template=pipe")
    admin("GET", "/admin/functions/create?clone=sample_filter")
    admin("GET", "/admin/functions/id-available?id=new_one")
    created = read_form(admin("GET", "/admin/functions/create").data, "function-form")
    created["id"], created["name"], created["content"] = "console_made", "Console Made", FILTER
    admin("POST", "/admin/functions/create", 302, data=created)
    edited = read_form(admin("GET", "/admin/functions/edit?id=console_made").data, "function-form")
    edited["content"], edited["commit_message"] = FILTER.replace(">> ", "~~ "), "tilde"
    admin("POST", "/admin/functions/edit?id=console_made", 302, data=edited)
    admin("GET", "/admin/functions/source?id=sample_filter")
    for switch in ("toggle", "toggle-global"):
        admin.form(
            f"/admin/functions/{switch}", {"id": "console_made", "state": "on"}, token_from="/admin/functions"
        )
    page = admin("GET", "/admin/functions/valves?id=sample_filter")
    admin("POST", "/admin/functions/valves?id=sample_filter", 302, data=read_form(page.data, "valves-form"))
    for query in ("", "?include_valves=1", "?id=echo"):
        admin("GET", "/admin/functions/export" + query)
    admin("GET", "/admin/functions/import")
    exported = admin("GET", "/admin/functions/export?include_valves=1").get_json()
    exported.append(form(id="imported", name="Imported", content=FILTER))
    preview = admin.form(
        "/admin/functions/import",
        {"file": (io.BytesIO(json.dumps(exported).encode()), "functions-export.json")},
        200,
        token_from="/admin/functions/import",
        content_type="multipart/form-data",
    )
    admin("POST", "/admin/functions/import/apply", data=read_form(preview.data, "import-apply-form"))
    admin("GET", "/admin/functions/load-url")
    admin.form(
        "/admin/functions/load-url",
        {"url": "http://127.0.0.1/f.py"},
        400,
        token_from="/admin/functions/load-url",
    )
    admin.form(
        "/admin/functions/requirements/install", {"id": "echo"}, token_from="/admin/functions/edit?id=echo"
    )

    v = busy.versions
    history = "/admin/functions/history"
    admin("GET", f"{history}?id=sample_filter")
    admin("GET", f"{history}?id=sample_filter&page=2")
    admin("GET", f"{history}/version?id=sample_filter&version={v[2]}")
    admin("GET", f"{history}/compare?id=sample_filter")
    admin("GET", f"{history}/compare?id=sample_filter&from={v[4]}&to={v[1]}")
    for step, version in (("restore", v[3]), ("delete", v[4])):
        admin("GET", f"{history}/{step}?id=sample_filter&version={version}")
        admin.form(f"{history}/{step}?id=sample_filter&version={version}", {}, token_from="/admin/functions")

    admin("GET", "/admin/functions/delete?id=console_made")
    admin.form("/admin/functions/delete", {"id": "console_made"}, token_from="/admin/functions")

    for query in (
        "",
        "?page=2&per_page=2",
        "?role=pending",
        "?role=user&page=2&per_page=1",
        "?q=person+example",
    ):
        admin("GET", f"/admin/users{query}")
    admin.form(
        "/admin/users",
        {"name": "Made Person", "email": "made@example.com", "password": PASSWORD, "role": "user"},
        token_from="/admin/users",
    )
    admin.form(f"/admin/users/{busy.pending}/approve", {}, token_from="/admin/users")
    admin.form(f"/admin/users/{busy.pending}/role", {"role": "admin"}, token_from="/admin/users")
    admin.form(f"/admin/users/{busy.pending}/delete", {}, token_from="/admin/users")

    for query in (
        "",
        "?page=3",
        f"?function={RARE_FUNCTION}",
        f"?user={RARE_ACTOR}",
        f"?user={busy.user}",
        f"?action={RARE_ACTION}",
        f"?action={RARE_ACTION}&page=2&per_page=20",
        f"?from={day(ENTRIES - 30)}",
        f"?to={day(30)}",
        f"?to={day(30)}&page=2&per_page=10",
        f"?from={day(1500)}&to={day(1530)}",
        f"?function={RARE_FUNCTION}&user={RARE_ACTOR}&action={RARE_ACTION}",
        f"?user={RARE_ACTOR}&from={day(1500)}&to={day(1900)}",
        f"?action={RARE_ACTION}&to={day(1500)}&page=2&per_page=5",
    ):
        admin("GET", "/admin/audit" + query)

    admin("GET", "/settings/keys")
    admin.form("/settings/keys", {"name": "laptop"}, 200)
    made = re.search(rb'action="/settings/keys/([^/"]+)/revoke"', admin("GET", "/settings/keys").data)
    admin.form(f"/settings/keys/{made.group(1).decode()}/revoke", {})
    admin.form("/auth/signout", {})

    user = browser(app, "user@example.com")
    user("GET", "/", 302)
    user("GET", "/settings/valves")
    page = user("GET", "/settings/valves?id=sample_filter")
    user("POST", "/settings/valves?id=sample_filter", 302, data=read_form(page.data, "valves-form"))


def drive_gateway(app, busy: Busy) -> None:
    """The OpenAI-compatible gateway and the Pipelines routes, with a user's key and a connection key."""
    user = Caller(app.test_client(), busy.keys["user"])
    connection = Caller(app.test_client(), busy.keys["connection"])
    admin = Caller(app.test_client(), busy.keys["admin"])
    named = {"id": "x", "email": "other@example.com", "name": "Otto", "role": "user"}
    unknown = {"id": "y", "email": "stranger@example.com", "name": "S", "role": "user"}
    user("GET", "/v1/models")
    connection("GET", "/v1/models")
    admin("GET", "/v1/pipelines")
    user("POST", "/v1/chat/completions", json=CHAT)
    connection("POST", "/v1/chat/completions", json={**CHAT, "user": named})
    connection("POST", "/v1/chat/completions", json={**CHAT, "user": unknown})
    for phase in ("inlet", "outlet"):
        connection("POST", f"/v1/sample_filter/filter/{phase}", json={"user": named, "body": CHAT})
    admin("GET", "/v1/sample_filter/valves")
    admin("GET", "/v1/sample_filter/valves/spec")
    admin("POST", "/v1/sample_filter/valves/update", json={"priority": 2})


# --- recording and explaining ---------------------------------------------------------------------------------


def record(app, run: Run):
    """Listen on the engine (each statement with its parameters) and on requests (which routes ran); answers the
    function that stops listening."""
    from flask import has_request_context, request, request_finished

    from extensions import db

    def on_statement(_conn, _cursor, statement, parameters, _context, executemany):
        if executemany and isinstance(parameters, list) and parameters:
            parameters = parameters[0]  # one row's parameters explain the statement
        endpoint = (request.endpoint or "?") if has_request_context() else "?"
        run.statements.append(Statement(statement, parameters, endpoint))

    def on_finished(_sender, response, **_):
        run.visited.add((request.endpoint, request.method))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on_statement)
    request_finished.connect(on_finished, app)

    def stop():
        event.remove(engine, "before_cursor_execute", on_statement)
        request_finished.disconnect(on_finished, app)

    return stop


EXPLAINED = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.I)


def explain(app, run: Run) -> None:
    """Each distinct statement, with its parameters, explained once as the database would run it."""
    from extensions import db

    with app.app_context(), db.engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        explained = _postgres_plan if postgres else _sqlite_plan
        if postgres:
            # Only for this transaction: an index is taken wherever one can serve.
            for setting in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin"):
                conn.exec_driver_sql(f"SET LOCAL {setting} = off")
        for statement in run.statements:
            if EXPLAINED.match(statement.sql) and statement.key not in run.plans:
                run.plans[statement.key] = explained(conn, statement)
        if postgres:
            # A page of a few matches is rightly fetched by a bitmap and sorted, which says nothing about whether an
            # index gives the order; without sorts and bitmaps, a sort left in the plan means that none does.
            for setting in ("enable_sort", "enable_bitmapscan"):
                conn.exec_driver_sql(f"SET LOCAL {setting} = off")
        for statement in run.statements:
            if (
                in_index_order(statement) or stops_early(statement)
            ) and statement.key not in run.ordered_plans:
                run.ordered_plans[statement.key] = explained(conn, statement)
        conn.rollback()


def _driver_rows(conn, sql: str, parameters) -> list:
    """Run ``sql`` on the driver's own cursor, with the parameters exactly as the engine sent them."""
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(sql, parameters) if parameters else cursor.execute(sql)
        return cursor.fetchall()
    finally:
        cursor.close()


def _sqlite_plan(conn, statement: Statement) -> Plan:
    details = [
        row[3] for row in _driver_rows(conn, "EXPLAIN QUERY PLAN " + statement.sql, statement.parameters)
    ]
    sorts = any(detail.startswith("USE TEMP B-TREE") for detail in details)
    scans = []
    for detail in details:
        match = re.match(r"(SCAN|SEARCH) (\w+)", detail)
        # An automatic index is one SQLite builds for this statement alone, by reading the whole table.
        if (
            match
            and (match.group(1) == "SCAN" or "AUTOMATIC" in detail)
            and _table(match.group(2)) in GROWING
        ):
            scans.append(Scan(_table(match.group(2)), detail, ordered=not sorts))
    return Plan(scans, sorts, "\n".join(details))


def _postgres_plan(conn, statement: Statement) -> Plan:
    plan = _driver_rows(conn, "EXPLAIN (FORMAT JSON) " + statement.sql, statement.parameters)[0][0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    scans: list[Scan] = []
    lines: list[str] = []
    kinds: set[str] = set()
    whole_input = {"Sort", "Incremental Sort", "Aggregate", "WindowAgg", "Materialize", "Hash"}

    def walk(node: dict, depth: int, read_whole_above: bool) -> None:
        kind, relation = node["Node Type"], node.get("Relation Name")
        detail = " ".join(
            part
            for part in (
                kind,
                node.get("Scan Direction", "") if kind.startswith("Index") else "",
                f"on {relation}" if relation else "",
                f"using {node['Index Name']}" if "Index Name" in node else "",
                f"({node['Index Cond']})" if "Index Cond" in node else "",
                f"filtering {node['Filter']}" if "Filter" in node else "",
            )
            if part
        )
        lines.append("  " * depth + detail)
        kinds.add(kind)
        no_condition = (
            kind == "Seq Scan"
            or (kind in ("Index Scan", "Index Only Scan") and "Index Cond" not in node)
            or (kind == "Bitmap Heap Scan" and _whole_bitmap(node["Plans"][0]))
        )
        if relation in GROWING and no_condition:
            ordered = kind in ("Index Scan", "Index Only Scan") and not read_whole_above
            scans.append(Scan(relation, detail, ordered=ordered))
        for child in node.get("Plans", []):
            walk(child, depth + 1, read_whole_above or kind in whole_input)

    walk(plan[0]["Plan"], 0, False)
    return Plan(scans, bool(kinds & whole_input), "\n".join(lines))


def _whole_bitmap(node: dict) -> bool:
    """Whether a bitmap marks every row: an index read with no condition, or an OR of one."""
    if node["Node Type"] == "BitmapAnd":
        return all(_whole_bitmap(child) for child in node["Plans"])
    if node["Node Type"] == "BitmapOr":
        return any(_whole_bitmap(child) for child in node["Plans"])
    return "Index Cond" not in node


def _table(name: str) -> str:
    """The table behind an alias SQLAlchemy gave it (``users_1``)."""
    return re.sub(r"_\d+$", "", name)


# --- the run, once per database --------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def run(request, tmp_path_factory) -> Iterator[Run]:
    from extensions import db

    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("plans") / "sluice.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
    app = make_app(url, SLUICE_ENABLE_SIGNUP=True)
    try:
        busy = fill(app)
        result = Run(request.param)
        result.routes = {
            (rule.endpoint, method)
            for rule in app.url_map.iter_rules()
            if rule.endpoint != "static"
            for method in rule.methods - {"HEAD", "OPTIONS"}
        }
        stop = record(app, result)
        try:
            drive_api(app, busy, "/api/v1", "made_here")
            drive_api(app, busy, "/api", "made_there")
            drive_console(app, busy)
            drive_gateway(app, busy)
        finally:
            stop()
        explain(app, result)
        yield result
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        if request.param == "postgresql":
            _truncate_postgres(url)


def described(statement: Statement, detail: str) -> str:
    return f"{statement.endpoint}: {detail}\n    {folded(statement.sql)}\n    {statement.parameters!r}"


def test_every_route_and_page_was_driven(run):
    """What the other tests prove holds for every route: a route added without a call here fails this test."""
    assert sorted(run.routes - run.visited) == []


def test_no_statement_reads_a_growing_table_whole(run):
    found = set()
    for statement in run.statements:
        plan = run.plans.get(statement.key)
        for scan in plan.scans if plan else []:
            allowance = next((a for a in ALLOWED if a.table == scan.table and a.matches(statement.sql)), None)
            if allowance is not None and allowance.stops_early:
                # Whether an index gives the order, asked with sorts and bitmaps off: on a small table PostgreSQL
                # may rightly fetch every row by a bitmap and sort them, or not, as its statistics go.
                ordered = run.ordered_plans.get(statement.key)  # none without a LIMIT: it reads every row
                walked = [each for each in ordered.scans if each.table == scan.table] if ordered else []
                if ordered and not ordered.sorts and all(each.ordered for each in walked):
                    continue
            if allowance is None or allowance.stops_early:
                found.add(described(statement, scan.detail))
    listing = "\n".join(sorted(found))
    assert not found, f"{len(found)} statements read a whole table on {run.backend}:\n{listing}"


def test_the_audit_trail_and_the_history_read_a_page_in_index_order(run):
    """Each filter of the trail (function, user, action, time, their mixes, any page) and each history list finds
    its rows by an index and takes them in the index's order: nothing is sorted, however long the trail."""
    checked, found = 0, set()
    for statement in run.statements:
        table = in_index_order(statement)
        if table is None:
            continue
        checked += 1
        plan = run.ordered_plans[statement.key]
        filtered = " WHERE " in folded(
            statement.sql
        )  # unfiltered, the walk is the unfiltered trail's allowance
        if plan.sorts or any(scan.table == table and filtered for scan in plan.scans):
            found.add(described(statement, plan.text.replace("\n", " | ")))
    assert checked >= 40 and not found, "\n".join(sorted(found))


def test_every_allowance_is_still_needed(run):
    """An allowance that no statement matches any more would let a new query through unexamined."""
    sqls = {statement.sql for statement in run.statements}
    assert [a.pattern for a in ALLOWED if not any(a.matches(sql) for sql in sqls)] == []


def test_every_foreign_key_leads_an_index():
    """Deleting a function or an account finds the rows that go with it through an index: the database does it
    without a statement of its own, so no plan above would show a missing one."""
    from sqlalchemy import PrimaryKeyConstraint, UniqueConstraint

    from models import Base

    missing = []
    for table in Base.metadata.tables.values():
        leading = [[column.name for column in index.columns] for index in table.indexes]
        leading += [
            [column.name for column in constraint.columns]
            for constraint in table.constraints
            if isinstance(constraint, PrimaryKeyConstraint | UniqueConstraint)
        ]
        for key in table.foreign_key_constraints:
            columns = [column.name for column in key.columns]
            if not any(names[: len(columns)] == columns for names in leading):
                missing.append(f"{table.name}({', '.join(columns)})")
    assert missing == []
