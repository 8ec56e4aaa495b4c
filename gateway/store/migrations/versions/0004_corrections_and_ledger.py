"""corrections of rejected invoices, overdue-report ledger, invoice lookup index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 19:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('invoices') as batch_op:
        batch_op.add_column(sa.Column('corrects_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_invoices_corrects_id_invoices'), 'invoices', ['corrects_id'],
                                    ['id'])
        batch_op.create_index('ix_invoices_supplier_number', ['supplier_siret', 'invoice_number'], unique=False)
    with op.batch_alter_table('flows') as batch_op:
        batch_op.add_column(sa.Column('report_overdue_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('flows') as batch_op:
        batch_op.drop_column('report_overdue_at')
    with op.batch_alter_table('invoices') as batch_op:
        batch_op.drop_index('ix_invoices_supplier_number')
        batch_op.drop_constraint(batch_op.f('fk_invoices_corrects_id_invoices'), type_='foreignkey')
        batch_op.drop_column('corrects_id')
