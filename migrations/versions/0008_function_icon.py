"""Keep the icon a function's code names (`self.icon`), for the console's lists and pages

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00

Functions stored before this learn their icon when their code is next saved; until then they show their frontmatter's
`icon_url`, if any, as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("functions", sa.Column("icon", sa.Text(), nullable=True))


def downgrade() -> None:
    # Dropped in place (SQLite has DROP COLUMN since 3.35): batch mode would copy and drop `functions`.
    op.drop_column("functions", "icon")
