"""Keep what default_factory valves default to, for the forms

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 01:00:00

Functions stored before this learn their factory defaults at their next save; until then their forms say the
function computes the default, as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("functions", sa.Column("valves_defaults", sa.JSON(), nullable=True))
    op.add_column("functions", sa.Column("user_valves_defaults", sa.JSON(), nullable=True))


def downgrade() -> None:
    # Dropped in place (SQLite has DROP COLUMN since 3.35): batch mode would copy and drop `functions`.
    op.drop_column("functions", "user_valves_defaults")
    op.drop_column("functions", "valves_defaults")
