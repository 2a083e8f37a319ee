"""Prepared reads: a Core SELECT compiled once per database dialect and run straight on the session's connection.

The API's hottest reads (the caller's API key on every request, the function list, one function) spent most of
their time in SQLAlchemy's per-call machinery rather than in the database: building the statement, computing its
cache key, the ORM's result context and row objects. Measured in-process on SQLite with 20 functions, the list
query cost ~260 µs through ``session.execute`` and ~50 µs as the same SQL on the DBAPI cursor; the key lookup
~250 µs and ~40 µs.

So these few statements are compiled once per dialect, and run straight on a DBAPI connection (which one:
``_reading_connection``; on PostgreSQL through libpq itself, ``_run_libpq``), so they see exactly what the ORM
would see, with nothing cached between requests. Values come back through the same bind and result processors
SQLAlchemy applies (JSON decoded, SQLite's 0/1 made bools), so a row reads as it would through the ORM. Engine
``before_cursor_execute`` listeners still see every statement (the query-count and query-plan tests rely on it).

Only for plain SELECTs with named bind parameters; everything else goes through the session as usual.
"""

from __future__ import annotations

import itertools
import json
import threading
import weakref
from collections.abc import Callable, Collection
from typing import Any

import orjson
from flask import Flask, g, has_app_context
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import Select, Text, cast, event
from sqlalchemy.engine import Dialect

from extensions import db

_BORROWED = "sluice_read_connection"


def _reading_connection():
    """(DBAPI connection, event dispatch, SQLAlchemy connection or None, dialect) for a prepared read.

    Inside the session's transaction, the session's own connection: the read then sees the request's uncommitted
    writes (flushed first, as the ORM's own queries autoflush). Otherwise a pool connection borrowed without making
    a Session at all (a Session, its transaction and its close were a quarter of a small API read), kept for the
    request's later reads and given back at the app context's teardown, or as soon as the session begins a
    transaction: a request never holds two connections, so the pool cannot run dry with threads waiting on it.
    Outside a transaction each statement reads what is committed, on either connection: SQLite runs a lone SELECT
    in autocommit, and so does PostgreSQL here, where the reads go to libpq (``_run_libpq``), which sends no BEGIN
    of its own. In a transaction of their own (psycopg begins one before the first statement) the reads would have
    seen the same committed rows, at the cost of a BEGIN before them and a ROLLBACK when the pool takes the
    connection back: two round trips and work for the server on every request.
    """
    if db.session.registry.has():
        session = db.session()
        if session.in_transaction():
            if session.new or session.dirty or session.deleted:
                session.flush()
            connection = session.connection()
            return (
                connection.connection.driver_connection,
                connection.dispatch,
                connection,
                connection.dialect,
            )
    borrowed = g.get(_BORROWED)
    if borrowed is None:
        # Kept for the request: Flask-SQLAlchemy finds the engine through the current app at each lookup. On
        # PostgreSQL the reads go to libpq (``_run_libpq``), which sends no BEGIN: they run in autocommit while
        # psycopg's own state stays as the pool lent it.
        engine = db.engine
        borrowed = (engine.raw_connection(), engine)
        setattr(g, _BORROWED, borrowed)
    pooled, engine = borrowed
    return pooled.driver_connection, engine.dispatch, None, engine.dialect


def give_back_borrowed_connection(*_args: Any) -> None:
    """Return the borrowed connection to the pool, if any."""
    if has_app_context():
        borrowed = g.pop(_BORROWED, None)
        if borrowed is not None:
            borrowed[0].close()


def _invalidate_borrowed() -> None:
    """After a failed read on the borrowed connection: the pool must not hand it out again."""
    borrowed = g.pop(_BORROWED, None)
    if borrowed is not None:
        borrowed[0].invalidate()


def install_prepared_reads(app: Flask) -> None:
    app.teardown_appcontext(give_back_borrowed_connection)
    # Fired when a session begins a transaction, before it takes a connection of its own.
    if not event.contains(FlaskSession, "after_transaction_create", give_back_borrowed_connection):
        event.listen(FlaskSession, "after_transaction_create", give_back_borrowed_connection)


_STATEMENT_NAMES = itertools.count(1)


class _Compiled:
    """The statement as one dialect runs it: SQL text, how to order parameters, and each column's processor; on
    PostgreSQL also the text libpq prepares (``$1`` placeholders) and its name there."""

    __slots__ = (
        "sql",
        "positions",
        "bind_processors",
        "constants",
        "result_processors",
        "keys",
        "libpq_sql",
        "libpq_positions",
        "libpq_name",
    )

    def __init__(self, statement: Select, dialect: Dialect, wire_json: Collection[str] = ()):
        columns = statement.selected_columns
        if wire_json:
            # Read as their text, which PostgreSQL's driver would otherwise decode (SQLite's hands back text anyway).
            statement = statement.with_only_columns(
                *(
                    cast(column, Text).label(column.key) if column.key in wire_json else column
                    for column in columns
                ),
                maintain_column_froms=True,
            )
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        # Positional paramstyles (SQLite's qmark) name the order; named ones (psycopg's pyformat) take a dict.
        self.positions = tuple(compiled.positiontup) if compiled.positional else None
        self.libpq_sql = self.libpq_positions = self.libpq_name = None
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            numbered = statement.compile(dialect=type(dialect)(paramstyle="numeric_dollar"))
            self.libpq_sql = numbered.string.encode()
            self.libpq_positions = tuple(numbered.positiontup)
            self.libpq_name = f"sluice_read_{next(_STATEMENT_NAMES)}".encode()
        self.bind_processors = {
            name: processor
            for name, bind in compiled.binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        # Values written into the statement (``role == "admin"``) are bound parameters too, each with its value.
        self.constants = {name: bind.value for bind, name in compiled.bind_names.items() if not bind.required}
        self.keys = tuple(column.key for column in columns)
        # (index, processor) of the columns whose values need converting; the others are taken as fetched.
        processors = []
        for index, column in enumerate(columns):
            processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if column.key in wire_json:
                processor = _json_object_for_the_wire(processor)
            if processor is not None:
                processors.append((index, processor))
        self.result_processors: tuple[tuple[int, Callable], ...] = tuple(processors)

    def parameters(self, values: dict[str, Any]) -> tuple | dict:
        if self.constants:
            values = {**self.constants, **values}
        processed = {
            name: (self.bind_processors[name](value) if name in self.bind_processors else value)
            for name, value in values.items()
        }
        if self.positions is not None:
            return tuple(processed[name] for name in self.positions)
        return processed


def _json_object_for_the_wire(decode: Callable | None) -> Callable:
    """A JSON object column as the wire shows it: an ``orjson.Fragment`` of its stored text, which the answer embeds
    without decoding it, or the driver's dict; ``{}`` for anything that is not an object.

    Decoding each function's ``meta`` only to encode it again was an eighth of `GET /api/v1/functions/` on SQLite,
    and on PostgreSQL (whose driver decodes JSON with the standard library) a tenth of a 20-function list's CPU, so
    such columns are read as text on either. Stored JSON is strict (services.storable refuses NaN and infinities),
    so the text is JSON as it is; a row written by hand with a bare ``NaN`` is decoded as before. Doing the ``{}``
    here too lets a list answer's rows become dicts with no pass of their own.
    """

    def process(value: Any) -> Any:
        if type(value) is str:
            if value[:1] == "{" and "NaN" not in value and "Infinity" not in value:
                return orjson.Fragment(value)
            try:
                value = decode(value) if decode is not None else json.loads(value)
            except ValueError:
                return {}
        elif decode is not None and value is not None:
            value = decode(value)
        return value if isinstance(value, dict) else {}

    return process


# Per psycopg connection, the names of the statements prepared on it (a connection the pool closes is forgotten).
_PREPARED_ON: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PREPARED_LOCK = threading.Lock()
# SQLSTATE invalid_sql_statement_name: the server forgot a statement (a pooler between, or DISCARD ALL).
_UNKNOWN_STATEMENT = "26000"


def _run_libpq(driver_connection, compiled: _Compiled, parameters: dict) -> list[tuple]:
    """Run a prepared read on a psycopg connection through libpq itself: one blocking call (which lets other
    threads run) that binds, executes and fetches, then psycopg's own loaders over the rows.

    psycopg's ``cursor.execute`` cost ~0.13 ms of CPU more per read in Python (its query conversion, generators
    and four waits, and the autocommit switch on and off around the borrowed connection), a fifth of a
    PostgreSQL `GET /api/v1/functions/id/{id}`. libpq sends no BEGIN of its own, so outside a transaction the read
    runs in autocommit and leaves the connection as it found it, and inside one it runs in it. The statement is
    prepared once per connection under its own name, which psycopg's own prepared statements never take.
    """
    # Imported here: a server on SQLite never loads psycopg (start-up time and every worker's memory).
    from psycopg import errors as psycopg_errors
    from psycopg import pq
    from psycopg.adapt import PyFormat, Transformer

    pgconn = driver_connection.pgconn
    transformer = Transformer(driver_connection)
    arguments = [parameters[name] for name in compiled.libpq_positions]
    dumped = transformer.dump_sequence(arguments, [PyFormat.TEXT] * len(arguments)) if arguments else []
    with _PREPARED_LOCK:
        prepared = _PREPARED_ON.get(driver_connection)
        if prepared is None:
            prepared = _PREPARED_ON[driver_connection] = set()
    for attempt in (1, 2):
        if compiled.libpq_name not in prepared:
            done = pgconn.prepare(compiled.libpq_name, compiled.libpq_sql)
            if done.status != pq.ExecStatus.COMMAND_OK:
                raise psycopg_errors.error_from_result(done, encoding=driver_connection.info.encoding)
            prepared.add(compiled.libpq_name)
        result = pgconn.exec_prepared(compiled.libpq_name, dumped)
        if result.status == pq.ExecStatus.TUPLES_OK:
            transformer.set_pgresult(result)
            return transformer.load_rows(0, result.ntuples, tuple)
        error = psycopg_errors.error_from_result(result, encoding=driver_connection.info.encoding)
        if error.sqlstate == _UNKNOWN_STATEMENT:
            prepared.discard(compiled.libpq_name)  # prepared again by the next read on this connection
            # Outside a transaction nothing was spoilt by the failure: prepare it and run it again now.
            if attempt == 1 and driver_connection.info.transaction_status == pq.TransactionStatus.IDLE:
                continue
        raise error
    raise AssertionError("unreachable")


class PreparedSelect:
    """``PreparedSelect(select(...).where(col == bindparam("x")))``, then ``.rows(x=...)``, in an app context.

    ``wire_json`` names JSON object columns that only ever go out in an API answer: where the driver hands back
    their text, it is kept as an ``orjson.Fragment`` instead of being decoded (FastJSONProvider writes it), and a
    value that is not an object reads as ``{}``.
    """

    def __init__(self, statement: Select, wire_json: Collection[str] = ()):
        self.statement = statement
        self.wire_json = frozenset(wire_json)
        self._by_dialect: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def _compiled(self, dialect: Dialect) -> _Compiled:
        key = f"{dialect.name}+{dialect.driver}"
        found = self._by_dialect.get(key)
        if found is None:
            with self._lock:
                found = self._by_dialect.setdefault(key, _Compiled(self.statement, dialect, self.wire_json))
        return found

    def rows(self, **values: Any) -> list[tuple | list]:
        """Every row, as sequences of processed values in the order of the statement's columns."""
        dbapi_connection, dispatch, connection, dialect = _reading_connection()
        compiled = self._compiled(dialect)
        parameters = compiled.parameters(values)
        if compiled.libpq_name is not None:
            if dispatch.before_cursor_execute:
                dispatch.before_cursor_execute(connection, None, compiled.sql, parameters, None, False)
            try:
                fetched = _run_libpq(dbapi_connection, compiled, parameters)
            except dialect.loaded_dbapi.Error:
                if connection is None:
                    _invalidate_borrowed()
                raise
        else:
            cursor = dbapi_connection.cursor()
            try:
                if dispatch.before_cursor_execute:
                    dispatch.before_cursor_execute(connection, cursor, compiled.sql, parameters, None, False)
                cursor.execute(compiled.sql, parameters)
                fetched = cursor.fetchall()
            finally:
                cursor.close()
        processors = compiled.result_processors
        if not processors:
            return fetched
        converted = []
        for row in fetched:
            values = list(row)
            for index, processor in processors:
                values[index] = processor(values[index])
            converted.append(values)
        return converted

    def dicts(self, **values: Any) -> list[dict[str, Any]]:
        """Every row as a dict keyed by column key (or label)."""
        keys = self._compiled(db.engine.dialect).keys
        return [dict(zip(keys, row, strict=True)) for row in self.rows(**values)]

    def first(self, **values: Any) -> tuple | list | None:
        found = self.rows(**values)
        return found[0] if found else None
