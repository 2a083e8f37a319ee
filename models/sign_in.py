"""Failed sign-ins, counted per email address whether or not an account has it."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, now


class SignInFailures(Base):
    """Misses in a row for one email address, and until when it is locked.

    Kept apart from ``users`` so that an address with no account locks exactly like one with an account: otherwise
    the lockout message would tell a guesser which addresses have accounts. The address is stored as a SHA-256, so
    whatever strangers type into the sign-in form is not kept in clear.
    """

    __tablename__ = "sign_in_failures"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now, index=True)
