"""An index for the users page, which reads accounts a page at a time

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 21:55:00

The page lists accounts by creation time, then email: those waiting for approval first, then the others, or only
one role's. Each part is read in the order of this index and stopped at the page's end (tests/test_query_plans.py
explains every statement the page sends). Roles are few and most accounts share one, so an index by role would
rarely beat walking this one.
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_users_created_at_email", "users", ["created_at", "email"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_users_created_at_email", table_name="users")
