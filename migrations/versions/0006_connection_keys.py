"""Connection keys: API keys made for an Open WebUI connection to the gateway

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 16:50:00

A connection key works only under /v1 (the gateway), where it may act for the user a request names; every key
made before this upgrade is an ordinary key.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "api_keys", sa.Column("is_connection", sa.Boolean(), nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    op.drop_column("api_keys", "is_connection")
