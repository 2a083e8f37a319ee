"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 20:38:35.114741
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('functions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('version_id', sa.String(length=36), nullable=True),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.Column('valves', sa.JSON(), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('is_global', sa.Boolean(), nullable=False),
    sa.Column('valves_schema', sa.JSON(), nullable=True),
    sa.Column('user_valves_schema', sa.JSON(), nullable=True),
    sa.Column('load_status', sa.String(length=16), nullable=False),
    sa.Column('load_error', sa.JSON(), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_functions'))
    )
    with op.batch_alter_table('functions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_functions_is_active'), ['is_active'], unique=False)
        batch_op.create_index(batch_op.f('ix_functions_type'), ['type'], unique=False)
        batch_op.create_index(batch_op.f('ix_functions_updated_at'), ['updated_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_functions_user_id'), ['user_id'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=256), nullable=False),
    sa.Column('failed_sign_ins', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email'))
    )
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('last_used_at', sa.BigInteger(), nullable=True),
    sa.Column('revoked_at', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_keys_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_user_id'), ['user_id'], unique=False)

    op.create_table('function_versions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('function_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('commit_message', sa.Text(), nullable=True),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['function_id'], ['functions.id'], name=op.f('fk_function_versions_function_id_functions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_function_versions'))
    )
    with op.batch_alter_table('function_versions', schema=None) as batch_op:
        batch_op.create_index('ix_function_versions_function_created', ['function_id', 'created_at'], unique=False)

    op.create_table('user_valves',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('function_id', sa.String(length=64), nullable=False),
    sa.Column('valves', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['function_id'], ['functions.id'], name=op.f('fk_user_valves_function_id_functions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_valves_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_valves')),
    sa.UniqueConstraint('user_id', 'function_id', name='uq_user_valves_user_function')
    )
    with op.batch_alter_table('user_valves', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_valves_function_id'), ['function_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('user_valves', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_valves_function_id'))

    op.drop_table('user_valves')
    with op.batch_alter_table('function_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_function_versions_function_created')

    op.drop_table('function_versions')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_user_id'))

    op.drop_table('api_keys')
    op.drop_table('users')
    with op.batch_alter_table('functions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_functions_user_id'))
        batch_op.drop_index(batch_op.f('ix_functions_updated_at'))
        batch_op.drop_index(batch_op.f('ix_functions_type'))
        batch_op.drop_index(batch_op.f('ix_functions_is_active'))

    op.drop_table('functions')
