"""The audit trail: one row per change, kept apart from what it describes so that it outlives it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, now

# SQLite numbers rows only for a column typed exactly INTEGER; PostgreSQL gets a 64-bit sequence.
ENTRY_ID = BigInteger().with_variant(Integer(), "sqlite")


class AuditEntry(Base):
    """Who (a snapshot of the account, which may be deleted later), when, what, and through which face.

    No foreign keys on purpose: the trail must keep the entry of a deleted account or function. ``details`` holds
    small facts about the change (which valve fields, a role before and after), never a valve's value.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        # The page and the API list newest first (by time, then id), filtered by action, actor (an id, or the email
        # a failed sign-in tried) or target, and by a time range: each index is a filter's columns, then the time
        # and the id, so that every filter, with or without a range, reads its page in order and stops there.
        Index("ix_audit_log_time", "created_at", "id"),
        Index("ix_audit_log_action_time", "action", "created_at", "id"),
        Index("ix_audit_log_actor_id_time", "actor_id", "created_at", "id"),
        Index("ix_audit_log_actor_email_time", "actor_email", "created_at", "id"),
        Index("ix_audit_log_target_time", "target_kind", "target_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(ENTRY_ID, primary_key=True, autoincrement=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
    actor_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    actor_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    actor_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    face: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(48))
    target_kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
