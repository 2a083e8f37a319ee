"""Open WebUI's database plumbing, bound to a private in-memory SQLite database.

Function code declares tables on ``Base`` and may create them with ``Base.metadata.create_all(engine)`` at import;
here that works against a database that lives and dies with the loader's process. Open WebUI's own tables are not
in it, and the asynchronous session (``get_async_db_context``) is not available.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from sqlalchemy import MetaData, Text, create_engine, types
from sqlalchemy.orm import Session, declarative_base, scoped_session, sessionmaker

from .. import _catalogue
from .._unavailable import NotAvailableInSluice

SQLALCHEMY_DATABASE_URL = "sqlite://"
engine = create_engine(SQLALCHEMY_DATABASE_URL, connect_args={"check_same_thread": False})
SessionLocal = sessionmaker(autocommit=False, autoflush=False, bind=engine, expire_on_commit=False)
ScopedSession = scoped_session(SessionLocal)
metadata_obj = MetaData()
Base = declarative_base(metadata=metadata_obj)


class JSONField(types.TypeDecorator):
    """A column holding JSON in a TEXT field."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else json.dumps(value)

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        return None if value is None else json.loads(value)

    def copy(self, **kwargs: Any) -> JSONField:
        return JSONField(self.impl.length)


def get_session():
    """Yield a session on the private database, closing it afterwards."""
    session = SessionLocal()
    try:
        yield session
    finally:
        session.close()


get_db = contextmanager(get_session)


@contextmanager
def get_db_context(db: Session | None = None):
    """Use ``db`` if given, else a new session on the private database."""
    if db is not None:
        yield db
    else:
        with get_db() as session:
            yield session


@asynccontextmanager
async def get_async_db_context(db: Any = None):
    """Open WebUI's async session: not available in Sluice (there is no async database driver here)."""
    if db is not None:
        yield db
        return
    raise NotAvailableInSluice("open_webui.internal.db.get_async_db_context")
    yield  # pragma: no cover - makes this an async generator


async def get_async_db():
    raise NotAvailableInSluice("open_webui.internal.db.get_async_db")
    yield  # pragma: no cover


__getattr__ = _catalogue.module_getattr(__name__)
