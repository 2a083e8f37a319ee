"""Backups: every lasting table as one versioned, checksummed JSON document, and restoring one in one transaction.

The document::

    {"format": "sluice-backup", "version": 1, "created_at": <epoch s>, "schema": "<alembic revision>",
     "database": "sqlite" | "postgresql", "tables": {"users": [{column: value, ...}, ...], ...},
     "checksum": "sha256:<hex>"}

``tables`` holds every table of the models except the passing ones (sign-in failures, staged imports), so a table a
later change adds (an audit log) is backed up and restored with no change here. The checksum covers ``tables``
(canonical JSON: sorted keys, no spaces, UTF-8), so a damaged file is refused instead of half restored. Valves are
written as stored: password-type values stay sealed (``models.sealed``), so a backup holds no secret valve in clear,
and restoring it needs the key that sealed them (the same ``SLUICE_VALVES_KEY``, or the same ``SECRET_KEY``); a
restore checks that first. Password hashes and API key hashes are in it, so keep it as you keep the database (the
file is written readable by its owner only).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from cryptography.fernet import InvalidToken
from sqlalchemy import JSON, Table, func, insert, select, text, type_coerce
from sqlalchemy.exc import DBAPIError

from extensions import db
from models import Base
from models.base import now
from models.sealed import SealedJSON, current_keyring, is_sealed
from services.errors import ServiceError

FORMAT = "sluice-backup"
VERSION = 1
# Passing state, not worth restoring: sign-in failure counts and import files waiting for their preview.
NOT_BACKED_UP = frozenset({"sign_in_failures", "staged_imports"})


class BackupRefused(ServiceError):
    """The file is not a backup this Sluice can restore, or the database may not take it; nothing changed."""

    kind = "backup_refused"


def backed_up_tables() -> list[Table]:
    """The tables a backup holds, parents before children (the order to insert them)."""
    return [table for table in Base.metadata.sorted_tables if table.name not in NOT_BACKED_UP]


def checksum(tables: dict) -> str:
    canonical = json.dumps(tables, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _schema_revision() -> str | None:
    try:
        return db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:  # a database made without migrations (create_all) has no such table
        db.session.rollback()
        return None


def _raw_columns(table: Table) -> list:
    """The table's columns as stored: sealed valves stay sealed."""
    return [
        type_coerce(column, JSON).label(column.name) if isinstance(column.type, SealedJSON) else column
        for column in table.columns
    ]


def make_backup() -> dict:
    """The whole backup document of the current database."""
    tables: dict[str, list[dict]] = {}
    for table in backed_up_tables():
        # Sorted here, not by the database: PostgreSQL's collation and SQLite's byte order differ on text keys.
        key_names = [column.name for column in table.primary_key.columns] or [
            column.name for column in table.columns
        ]
        rows = [dict(row) for row in db.session.execute(select(*_raw_columns(table))).mappings()]
        rows.sort(key=lambda row: tuple((row[name] is None, row[name]) for name in key_names))
        tables[table.name] = rows
    db.session.rollback()
    return {
        "format": FORMAT,
        "version": VERSION,
        "created_at": now(),
        "schema": _schema_revision(),
        "database": db.session.get_bind().dialect.name,
        "tables": tables,
        "checksum": checksum(tables),
    }


def write_backup(path: str) -> dict[str, int]:
    """Write the backup to ``path`` (readable by its owner only, replaced whole); the number of rows per table."""
    document = make_backup()
    target = Path(path)
    fd, temporary = tempfile.mkstemp(
        prefix=".sluice-backup-", dir=target.parent if str(target.parent) else "."
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False, separators=(",", ":"))
            handle.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return {name: len(rows) for name, rows in document["tables"].items()}


# --- restoring ----------------------------------------------------------------------------------------------------


def read_backup(path: str) -> dict:
    """The checked document in ``path``; ``BackupRefused`` saying why when it is damaged or foreign."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise BackupRefused(f"Cannot read {path}: {error.strerror or error}.") from None
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BackupRefused(
            f"{path} is not a Sluice backup, or it is damaged: it is not valid JSON."
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BackupRefused(f'{path} is not a Sluice backup (no "format": "{FORMAT}").')
    version = document.get("version")
    if version != VERSION:
        raise BackupRefused(
            f"{path} is a Sluice backup of format version {version!r}; this Sluice reads version {VERSION} only."
        )
    tables = document.get("tables")
    if not isinstance(tables, dict) or not all(
        isinstance(rows, list) and all(isinstance(row, dict) for row in rows) for rows in tables.values()
    ):
        raise BackupRefused(f"{path} is damaged: its tables are not lists of rows.")
    if document.get("checksum") != checksum(tables):
        raise BackupRefused(f"{path} is damaged: its checksum does not match its content.")
    return document


def _check_fits(tables: dict) -> None:
    """Refuse tables or columns this Sluice does not have (a backup of a newer Sluice): never drop them silently."""
    known = {table.name: table for table in backed_up_tables()}
    unknown = sorted(name for name in tables if name not in known)
    if unknown:
        raise BackupRefused(
            "This Sluice has no table for the backup's "
            + ", ".join(unknown)
            + "; restore it with the Sluice that "
            "made it (or a newer one)."
        )
    for name, rows in tables.items():
        columns = set(known[name].columns.keys())
        extra = sorted({key for row in rows for key in row} - columns)
        if extra:
            raise BackupRefused(
                f"The backup's {name} has columns this Sluice does not know: {', '.join(extra)}."
            )


def _check_secrets_open(tables: dict) -> None:
    """Every sealed valve of the backup must open with this instance's keys, or restoring would lose it."""
    keyring = current_keyring()
    unopened = []
    for table in backed_up_tables():
        sealed_columns = [column.name for column in table.columns if isinstance(column.type, SealedJSON)]
        for row in tables.get(table.name, []):
            for column in sealed_columns:
                values = row.get(column)
                for key, value in (values or {}).items() if isinstance(values, dict) else ():
                    if is_sealed(value):
                        try:
                            keyring.open(value)
                        except InvalidToken:
                            unopened.append(f"{table.name} {row.get('id')} {key}")
    if unopened:
        raise BackupRefused(
            f"{len(unopened)} password valves in the backup were sealed with a key this Sluice does not have "
            "(first: "
            + unopened[0]
            + "). Start it with the SLUICE_VALVES_KEY, or the SECRET_KEY, of the Sluice "
            "that made the backup (the new key may come first: SLUICE_VALVES_KEY=new,old), then restore again."
        )


def _is_empty() -> bool:
    return all(
        db.session.scalar(select(func.count()).select_from(table)) == 0
        for table in [*backed_up_tables(), Base.metadata.tables["staged_imports"]]
    )


def _advance_sequences() -> None:
    """PostgreSQL's serial counters do not see explicit ids: move each past the highest restored one."""
    if db.session.get_bind().dialect.name != "postgresql":
        return
    for table in backed_up_tables():
        column = table.autoincrement_column
        if column is None:
            continue
        db.session.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"
            )
        )


def restore_backup(path: str, *, replace: bool = False) -> dict[str, int]:
    """Restore the backup in ``path`` in one transaction; the number of rows per table.

    An empty database takes it as it is; one with data only with ``replace``, which first deletes every row of the
    backed-up tables (and staged imports, which belong to accounts). Any refusal or failure changes nothing.
    """
    document = read_backup(path)
    tables = document["tables"]
    _check_fits(tables)
    _check_secrets_open(tables)
    try:
        if not _is_empty():
            if not replace:
                raise BackupRefused(
                    "This database already holds accounts or functions; nothing was restored. Restore into an "
                    "empty database, or pass --replace to delete everything in it first."
                )
            for table in reversed([*backed_up_tables(), Base.metadata.tables["staged_imports"]]):
                db.session.execute(table.delete())
        counts = {}
        for table in backed_up_tables():
            rows = tables.get(table.name, [])
            if rows:
                # Plain dicts pass the valves column unchanged, so sealed values go in sealed.
                db.session.execute(insert(table), rows)
            counts[table.name] = len(rows)
        _advance_sequences()
        db.session.commit()
    except DBAPIError as error:
        db.session.rollback()
        reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
        raise BackupRefused(
            f"The database refused the backup's rows ({reason}); nothing was restored."
        ) from None
    except Exception:
        db.session.rollback()
        raise
    return counts
