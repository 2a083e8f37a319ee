"""Indexes for every query the API and the console make

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 10:00:00

Found by tests/test_query_plans.py, which explains every statement the routes and pages send. The console's
function list reads one page in each of its sorts (name, type, created, updated; the id breaks ties in the same
direction). The audit trail reads newest first by time, then id, and each of its filters (action, actor id, the
email a failed sign-in tried, target), with or without a time range, through an index ending in (time, id). A
function's history pages by (time, id) within the function. Indexes that a new one starts with are dropped.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_functions_name_id", "functions", [sa.text("lower(name)"), "id"], unique=False)
    op.create_index("ix_functions_type_id", "functions", ["type", "id"], unique=False)
    op.create_index("ix_functions_created_at_id", "functions", ["created_at", "id"], unique=False)
    op.create_index("ix_functions_updated_at_id", "functions", ["updated_at", "id"], unique=False)
    op.drop_index("ix_functions_type", table_name="functions")
    op.drop_index("ix_functions_updated_at", table_name="functions")

    op.create_index(
        "ix_function_versions_function_time", "function_versions", ["function_id", "created_at", "id"], unique=False
    )
    op.drop_index("ix_function_versions_function_created", table_name="function_versions")

    op.create_index("ix_audit_log_time", "audit_log", ["created_at", "id"], unique=False)
    op.create_index("ix_audit_log_action_time", "audit_log", ["action", "created_at", "id"], unique=False)
    op.create_index("ix_audit_log_actor_id_time", "audit_log", ["actor_id", "created_at", "id"], unique=False)
    op.create_index("ix_audit_log_actor_email_time", "audit_log", ["actor_email", "created_at", "id"], unique=False)
    op.create_index(
        "ix_audit_log_target_time", "audit_log", ["target_kind", "target_id", "created_at", "id"], unique=False
    )
    op.drop_index("ix_audit_log_created_at", table_name="audit_log")
    op.drop_index("ix_audit_log_action_id", table_name="audit_log")
    op.drop_index("ix_audit_log_actor_id_id", table_name="audit_log")
    op.drop_index("ix_audit_log_target", table_name="audit_log")


def downgrade() -> None:
    op.create_index("ix_audit_log_target", "audit_log", ["target_kind", "target_id", "id"], unique=False)
    op.create_index("ix_audit_log_actor_id_id", "audit_log", ["actor_id", "id"], unique=False)
    op.create_index("ix_audit_log_action_id", "audit_log", ["action", "id"], unique=False)
    op.create_index("ix_audit_log_created_at", "audit_log", ["created_at"], unique=False)
    op.drop_index("ix_audit_log_target_time", table_name="audit_log")
    op.drop_index("ix_audit_log_actor_email_time", table_name="audit_log")
    op.drop_index("ix_audit_log_actor_id_time", table_name="audit_log")
    op.drop_index("ix_audit_log_action_time", table_name="audit_log")
    op.drop_index("ix_audit_log_time", table_name="audit_log")

    op.create_index(
        "ix_function_versions_function_created", "function_versions", ["function_id", "created_at"], unique=False
    )
    op.drop_index("ix_function_versions_function_time", table_name="function_versions")

    op.create_index("ix_functions_updated_at", "functions", ["updated_at"], unique=False)
    op.create_index("ix_functions_type", "functions", ["type"], unique=False)
    op.drop_index("ix_functions_updated_at_id", table_name="functions")
    op.drop_index("ix_functions_created_at_id", table_name="functions")
    op.drop_index("ix_functions_type_id", table_name="functions")
    op.drop_index("ix_functions_name_id", table_name="functions")
