"""rule sets, validation sets, the public-structure directory

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 18:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rule_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('layer', sa.String(length=30), nullable=False),
    sa.Column('syntax', sa.String(length=20), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('origin', sa.String(length=20), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rule_sets'))
    )
    op.create_table('validation_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('artefacts', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_validation_sets')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_validation_sets_fingerprint'))
    )
    op.create_table('directory_imports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('file_name', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('structures', sa.Integer(), nullable=False),
    sa.Column('services', sa.Integer(), nullable=False),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_directory_imports'))
    )
    op.create_table('public_structures',
    sa.Column('siret', sa.String(length=14), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('service_required', sa.Boolean(), nullable=False),
    sa.Column('commitment_required', sa.Boolean(), nullable=False),
    sa.Column('service_or_commitment', sa.Boolean(), nullable=False),
    sa.Column('import_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['directory_imports.id'],
                            name=op.f('fk_public_structures_import_id_directory_imports')),
    sa.PrimaryKeyConstraint('siret', name=op.f('pk_public_structures'))
    )
    op.create_table('structure_services',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('siret', sa.String(length=14), nullable=False),
    sa.Column('code', sa.String(length=100), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['siret'], ['public_structures.siret'],
                            name=op.f('fk_structure_services_siret_public_structures')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_structure_services')),
    sa.UniqueConstraint('siret', 'code', name=op.f('uq_structure_services_siret'))
    )
    op.create_index(op.f('ix_structure_services_siret'), 'structure_services', ['siret'], unique=False)
    with op.batch_alter_table('invoices') as batch_op:
        batch_op.add_column(sa.Column('validation_set_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_invoices_validation_set_id_validation_sets'),
                                    'validation_sets', ['validation_set_id'], ['id'])
    with op.batch_alter_table('flows') as batch_op:
        batch_op.add_column(sa.Column('validated_with', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('flows') as batch_op:
        batch_op.drop_column('validated_with')
    with op.batch_alter_table('invoices') as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_invoices_validation_set_id_validation_sets'), type_='foreignkey')
        batch_op.drop_column('validation_set_id')
    op.drop_index(op.f('ix_structure_services_siret'), table_name='structure_services')
    op.drop_table('structure_services')
    op.drop_table('public_structures')
    op.drop_table('directory_imports')
    op.drop_table('validation_sets')
    op.drop_table('rule_sets')
