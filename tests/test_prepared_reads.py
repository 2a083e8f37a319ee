"""Prepared reads (services.prepared) give what the ORM gives, in the session's own transaction, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, event, select

from models import ApiKey, Function, User
from services.prepared import PreparedSelect
from tests.conftest import bearer

COLUMNS = (
    Function.id,
    Function.meta,
    Function.is_active,
    Function.is_global,
    Function.updated_at,
    Function.icon,
)


def _function(function_id: str, **values) -> Function:
    fields = dict(
        id=function_id,
        user_id="someone",
        name=function_id,
        type="filter",
        content="class Filter: pass",
        meta={},
        valves={},
        created_at=1,
        updated_at=1,
    )
    fields.update(values)
    return Function(**fields)


@pytest.fixture
def stored(app):
    from extensions import db

    metas = {
        "plain": {"description": "d", "manifest": {"title": "T"}, "n": 1, "f": 0.1},
        "unicode": {"description": "héllo ✓ 🙂", "nested": [1, [2, {"x": None}]]},
        "huge": {"big": 2**80, "neg": -(2**70)},
        "just_64_bits": {
            "max": 2**63 - 1,
            "min": -(2**63),
            "unsigned": 2**64 - 1,
            "fine": 0.1000000000000000055511,
        },
        "escapes": {"s": 'tab\t quote" back\\ nul\x00 \u2028 é'},
        "scalar": "just a string",
    }
    with app.app_context():
        for index, (name, meta) in enumerate(metas.items()):
            db.session.add(_function(name, meta=meta, is_active=index % 2 == 0, updated_at=index))
        db.session.commit()
    return metas


def _orm_rows(db, statement):
    return [tuple(row) for row in db.session.execute(statement)]


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b and type(a) is type(b)


def test_rows_read_as_the_orm_reads_them(app, stored):
    from extensions import db

    statement = select(*COLUMNS).order_by(Function.id)
    with app.app_context():
        expected = _orm_rows(db, statement)
        got = [tuple(row) for row in PreparedSelect(statement).rows()]
    assert len(got) == len(stored)
    assert _same(got, expected)
    by_id = {row[0]: row for row in got}
    assert by_id["plain"][2] is True and by_id["unicode"][2] is False  # bools, not SQLite's 0/1
    assert by_id["huge"][1]["big"] == 2**80  # beyond 64 bits, exact (orjson would read a float)
    assert by_id["just_64_bits"][1]["unsigned"] == 2**64 - 1 and isinstance(
        by_id["just_64_bits"][1]["min"], int
    )
    assert by_id["scalar"][1] == "just a string"
    assert by_id["plain"][5] is None


def test_bound_parameters_and_dicts(app, stored):

    one = PreparedSelect(select(Function.id, Function.meta).where(Function.id == bindparam("id")))
    with app.app_context():
        assert one.first(id="unicode")[1] == stored["unicode"]
        assert one.first(id="nothing") is None
        assert one.dicts(id="plain") == [{"id": "plain", "meta": stored["plain"]}]


def test_the_read_sees_the_sessions_own_uncommitted_writes(app, stored):
    """The same connection and transaction as the ORM: nothing stale, nothing from outside the transaction."""
    from extensions import db

    one = PreparedSelect(select(Function.name).where(Function.id == bindparam("id")))
    with app.app_context():
        f = db.session.get(Function, "plain")
        f.name = "renamed, not committed"
        db.session.flush()
        assert list(one.first(id="plain")) == ["renamed, not committed"]
        db.session.rollback()
        assert list(one.first(id="plain")) == ["plain"]


def test_engine_listeners_see_every_prepared_statement(app, stored):
    from extensions import db

    seen: list[str] = []

    def listen(_conn, _cursor, statement, *_args):
        seen.append(statement)

    statement = PreparedSelect(select(Function.id).where(Function.id == bindparam("id")))
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", listen)
        try:
            statement.rows(id="plain")
        finally:
            event.remove(db.engine, "before_cursor_execute", listen)
    assert len(seen) == 1 and "FROM functions" in seen[0]


def test_the_api_key_read_gives_the_owner_and_refuses_revoked_and_connection_keys(app, admin_id, admin_key):
    from extensions import db
    from services import accounts

    with app.app_context():
        owner = accounts.user_for_api_key(admin_key)
        assert owner.id == admin_id and owner.is_admin and owner.email
        admin = db.session.get(User, admin_id)
        connection_key, connection_plain = accounts.create_api_key(admin, "c", connection=True)
        assert accounts.user_for_api_key(connection_plain) is None
        key = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == accounts._key_digest(admin_key)))
        accounts.revoke_api_key(admin, key.id)
        assert accounts.user_for_api_key(admin_key) is None
        assert accounts.user_for_api_key("sk-" + "x" * 40) is None
        assert accounts.user_for_api_key("not a key") is None


def test_an_account_changed_elsewhere_is_seen_by_the_next_request(app, client, admin_id, admin_key):
    """No caching between requests: a role taken away answers 401/403 at once."""
    from extensions import db

    assert client.get("/api/v1/functions/id/none", headers=bearer(admin_key)).status_code == 404
    with app.app_context():
        db.session.get(User, admin_id).role = "user"
        db.session.commit()
    assert client.get("/api/v1/functions/id/none", headers=bearer(admin_key)).status_code == 401


def test_a_request_gives_back_every_connection_and_never_holds_two(app, client, admin_key, stored):
    """Reads borrow one pool connection without a Session; a write's Session takes over from it."""
    from extensions import db
    from services import prepared

    with app.app_context():
        pool = db.engine.pool
    held: list[int] = []
    original = prepared._reading_connection

    def watched():
        found = original()
        held.append(pool.checkedout())
        return found

    prepared._reading_connection = watched
    try:
        assert client.get("/api/v1/functions/", headers=bearer(admin_key)).status_code == 200
        assert pool.checkedout() == 0
        answer = client.post("/api/v1/functions/id/plain/toggle", headers=bearer(admin_key))
        assert answer.status_code == 200
        assert pool.checkedout() == 0
    finally:
        prepared._reading_connection = original
    assert held and max(held) == 1


def test_a_read_after_a_write_in_the_same_request_sees_it(app, stored):
    from extensions import db

    one = PreparedSelect(select(Function.is_active).where(Function.id == bindparam("id")))
    with app.app_context():
        before = list(one.first(id="plain"))[0]
        db.session.get(Function, "plain").is_active = not before  # pending, not yet flushed
        assert list(one.first(id="plain")) == [not before]
        db.session.commit()
        assert list(one.first(id="plain")) == [not before]
        assert db.engine.pool.checkedout() == 1  # the borrowed one, given back at teardown
    with app.app_context():
        assert db.engine.pool.checkedout() == 0


def test_wire_json_columns_reach_the_answer_as_stored_without_decoding(app, stored):
    """A ``wire_json`` column comes back as its stored text (an orjson.Fragment) on either database: PostgreSQL's
    driver would decode JSON itself, so the column is read as text. The answer carries the same JSON."""
    import json

    import orjson
    from flask import jsonify

    from extensions import db

    statement = PreparedSelect(select(Function.id, Function.meta).order_by(Function.id), wire_json=("meta",))
    with app.app_context():
        rows = {row[0]: row[1] for row in statement.rows()}
        assert isinstance(rows["plain"], orjson.Fragment), db.engine.dialect.name
        assert rows["scalar"] == {}  # not an object: the wire shows {}
        written = json.loads(jsonify(rows).get_data())
    for name, meta in stored.items():
        assert _same(written[name], meta if isinstance(meta, dict) else {}), name
    assert written["huge"]["big"] == 2**80  # passed through exactly


def test_a_stored_json_text_that_is_not_strict_json_is_decoded_not_passed_through(app):
    """A row written by hand with a bare NaN must not make the answer invalid JSON."""
    import json

    from sqlalchemy import text

    from extensions import db

    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("PostgreSQL's json type refuses NaN itself")
        db.session.add(_function("loose", meta={"x": 1}))
        db.session.commit()
        db.session.execute(text("UPDATE functions SET meta = :m WHERE id = 'loose'"), {"m": '{"x": NaN}'})
        db.session.commit()
        statement = PreparedSelect(select(Function.meta), wire_json=("meta",))
        (meta,) = statement.first()
        assert isinstance(meta, dict) and meta["x"] != meta["x"]  # decoded: a dict holding NaN
        from flask import jsonify

        assert json.loads(jsonify({"meta": meta}).get_data()) == {"meta": {"x": None}}


def test_the_standard_library_writer_decodes_a_fragment(app, stored):
    """Debug mode and sorted keys write answers with the standard library, which cannot embed raw text."""
    import json

    statement = PreparedSelect(
        select(Function.meta).where(Function.id == bindparam("id")), wire_json=("meta",)
    )
    with app.app_context():
        (meta,) = statement.first(id="huge")
        app.json.sort_keys = True
        try:
            written = app.json.dumps({"meta": meta})
        finally:
            app.json.sort_keys = False
    assert json.loads(written) == {"meta": stored["huge"]}
    assert '"big": 1208925819614629174706176' in written or '"big":1208925819614629174706176' in written
