"""Accounts and their API keys."""

from __future__ import annotations

from flask_login import UserMixin
from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, new_id, now

ROLES = ("admin", "user", "pending")


class User(UserMixin, Base):
    __tablename__ = "users"
    # The users page reads accounts a page at a time in this order (services/accounts.py `search_users`).
    __table_args__ = (Index("ix_users_created_at_email", "created_at", "email"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(256))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="pending")
    password_hash: Mapped[str] = mapped_column(String(256))
    # Part of what a signed-in browser's session names; moving it on (signing out) ends every such session,
    # including copies of the cookie, which a signed cookie alone could not do.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now, onupdate=now)

    api_keys: Mapped[list[ApiKey]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    def get_id(self) -> str:
        """What the session cookie stores: the account and its current session epoch."""
        return f"{self.id}:{self.session_epoch or 0}"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_pending(self) -> bool:
        return self.role == "pending"

    def to_public(self) -> dict:
        """The `{id, name, role, email}` shape used inside FunctionUserResponse."""
        return {"id": self.id, "name": self.name, "role": self.role, "email": self.email}


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    # Only a SHA-256 of the key is kept: keys carry 256 bits of randomness, so a slow hash adds nothing.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # A connection key (an admin makes one for an Open WebUI connection): good only for the gateway under /v1,
    # where it may act for the user a request names; refused by the JSON API.
    is_connection: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    user: Mapped[User] = relationship(back_populates="api_keys")

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None
