"""Signing out ends every session of the account

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 01:20:00

Sessions are signed cookies; each now names the account's session epoch, which signing out moves on. Sessions
from before this upgrade name no epoch, so everyone signs in once more.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("users", "session_epoch")
