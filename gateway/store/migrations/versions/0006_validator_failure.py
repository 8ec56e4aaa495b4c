"""why a validation-error invoice's validator could not run (was read from its reason)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('invoices') as batch_op:
        batch_op.add_column(sa.Column('validation_failure', sa.String(length=20), nullable=True))
    # What the gateway searched the reason for until now: an invoice that ran out of time is not validated again.
    op.execute("UPDATE invoices SET validation_failure = CASE WHEN reason LIKE '%validation exceeded its time "
               "budget%' THEN 'time_budget' ELSE 'unavailable' END WHERE status = 'validation-error'")


def downgrade() -> None:
    with op.batch_alter_table('invoices') as batch_op:
        batch_op.drop_column('validation_failure')
