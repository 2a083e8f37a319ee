"""Import files between their preview and the admin's go-ahead."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, now


class StagedImport(Base):
    """An uploaded export file, kept on the server while its preview is open.

    The file stays here rather than riding along in the preview page, because an export made with valves holds
    secrets (API keys in password valves) that must never be sent back to a browser.
    """

    __tablename__ = "staged_imports"

    # Random and unguessable; it is also checked against the admin who uploaded the file.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(256), default="")
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now, index=True)
