"""Count failed sign-ins per email address, not per account

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 23:55:00

A lock that only accounts could get told a guesser which addresses have one. Counts in progress are not carried
over: at worst an attacker gets a fresh set of tries once, at upgrade.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("email_hash", name=op.f("pk_sign_in_failures")),
    )
    with op.batch_alter_table("sign_in_failures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sign_in_failures_updated_at"), ["updated_at"], unique=False)
    # Dropped in place (SQLite has had DROP COLUMN since 3.35) rather than by batch mode's copy of the table, which
    # would drop `users` while api_keys, functions and user_valves point at it: one foreign-keys pragma away from
    # a cascade through every account's keys and valves.
    op.drop_column("users", "locked_until")
    op.drop_column("users", "failed_sign_ins")


def downgrade() -> None:
    op.add_column("users", sa.Column("failed_sign_ins", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("users", sa.Column("locked_until", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("sign_in_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sign_in_failures_updated_at"))
    op.drop_table("sign_in_failures")
