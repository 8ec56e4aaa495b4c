"""transmission evidence, retry schedule, inbound messages

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 19:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('flows') as batch_op:
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('transmissions') as batch_op:
        batch_op.add_column(sa.Column('message_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('request_raw', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('response_raw', sa.LargeBinary(), nullable=True))
        batch_op.create_index(batch_op.f('ix_transmissions_message_id'), ['message_id'], unique=False)
    op.create_table('inbound_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('partner', sa.String(length=100), nullable=True),
    sa.Column('message_id', sa.String(length=255), nullable=True),
    sa.Column('headers', sa.Text(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('report_id', sa.Integer(), nullable=True),
    sa.Column('transmission_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['report_id'], ['reports.id'], name=op.f('fk_inbound_messages_report_id_reports')),
    sa.ForeignKeyConstraint(['transmission_id'], ['transmissions.id'],
                            name=op.f('fk_inbound_messages_transmission_id_transmissions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_messages'))
    )


def downgrade() -> None:
    op.drop_table('inbound_messages')
    with op.batch_alter_table('transmissions') as batch_op:
        batch_op.drop_index(batch_op.f('ix_transmissions_message_id'))
        batch_op.drop_column('response_raw')
        batch_op.drop_column('request_raw')
        batch_op.drop_column('message_id')
    with op.batch_alter_table('flows') as batch_op:
        batch_op.drop_column('next_attempt_at')
