"""size and sha256 of the bodies gateway serve reads (a refused body is kept only in part)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbound_messages') as batch_op:
        batch_op.add_column(sa.Column('body_size', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('body_sha256', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('inbound_messages') as batch_op:
        batch_op.drop_column('body_sha256')
        batch_op.drop_column('body_size')
