"""Keep import files on the server between preview and import

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 00:40:00

The preview page used to carry the whole file back to the browser in a hidden field, secrets in valves included.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staged_imports",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("filename", sa.String(length=256), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_staged_imports_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staged_imports")),
    )
    with op.batch_alter_table("staged_imports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_staged_imports_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_staged_imports_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("staged_imports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_staged_imports_user_id"))
        batch_op.drop_index(batch_op.f("ix_staged_imports_created_at"))
    op.drop_table("staged_imports")
