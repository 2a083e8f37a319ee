"""Functions, their version history and the per-user valves."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

# The loader owns the list (it must stay free of the app); the app takes it from there.
from loader.results import FUNCTION_TYPES
from models.base import Base, new_id, now
from models.sealed import SealedJSON

__all__ = ["FUNCTION_TYPES", "ID_PATTERN", "MAX_NAME_LENGTH", "Function", "FunctionVersion", "UserValves"]

# What a function id may be: 1–64 of `[A-Za-z0-9_]`. Used with fullmatch: `$` would let "abc\n" through.
ID_PATTERN = re.compile(r"[A-Za-z0-9_]{1,64}")
MAX_NAME_LENGTH = 256


class Function(Base):
    __tablename__ = "functions"
    __table_args__ = (
        # The console's list reads one page in each of its sorts, the id breaking ties in the same direction (the
        # name's index, an expression, is declared below the class).
        Index("ix_functions_type_id", "type", "id"),
        Index("ix_functions_created_at_id", "created_at", "id"),
        Index("ix_functions_updated_at_id", "updated_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # No foreign key: a function outlives the account that created it, as in Open WebUI.
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    type: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Password-type values sealed at rest (models/sealed.py): read back plain, written sealed by the services.
    valves: Mapped[dict[str, Any]] = mapped_column(SealedJSON, default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    is_global: Mapped[bool] = mapped_column(Boolean, default=False)
    # What the loader derived from `content`; kept so reads never have to run the code again.
    valves_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    user_valves_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # What `default_factory` fields default to, which the schemas (Open WebUI's, unchanged) leave out; for forms.
    valves_defaults: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    user_valves_defaults: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The icon the code itself names (`self.icon`), as the loader reported it; services.function_meta decides
    # whether it may be shown. Not part of `meta`, whose `manifest` mirrors the frontmatter only.
    icon: Mapped[str | None] = mapped_column(Text, nullable=True)
    load_status: Mapped[str] = mapped_column(String(16), default="ok")
    load_error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now)


Index("ix_functions_name_id", func.lower(Function.name), Function.id)


class FunctionVersion(Base):
    """A snapshot of a function's name, content and meta, recorded by create and by each real update."""

    __tablename__ = "function_versions"
    # A function's history, newest first (time, then id): a page, and the version before one, read in order.
    __table_args__ = (Index("ix_function_versions_function_time", "function_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    function_id: Mapped[str] = mapped_column(ForeignKey("functions.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(36))
    commit_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    content: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)


class UserValves(Base):
    """One user's own settings for one function: only the keys they set."""

    __tablename__ = "user_valves"
    __table_args__ = (UniqueConstraint("user_id", "function_id", name="uq_user_valves_user_function"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    function_id: Mapped[str] = mapped_column(ForeignKey("functions.id", ondelete="CASCADE"), index=True)
    valves: Mapped[dict[str, Any]] = mapped_column(SealedJSON, default=dict)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now, onupdate=now)
