"""The store's schema and its guarantees, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gateway.domain import InvoiceStatus
from gateway.pipeline import attempts
from gateway.store import DuplicateInvoice, Store, db
from gateway.store.models import Base

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _source(store: Store) -> int:
    with store.transaction() as tx:
        return tx.add_source_file(channel="erp", name="x.csv", path="/x.csv", sha256="0" * 64, size=1, now=NOW).id


def _invoice(tx, source_id: int, status: InvoiceStatus, number: str = "F-1"):  # noqa: ANN001, ANN202
    return tx.add_invoice(
        now=NOW,
        status=status,
        supplier_siret="73282932000017",
        invoice_number=number,
        issue_year=2026,
        source_file_id=source_id,
        source_line=2,
        channel="erp",
    )


def test_migrations_build_the_schema_the_models_declare(database_url: str) -> None:
    """alembic upgrade head on an empty database leaves no difference with the models."""
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    assert db.current_revision(engine) == db.head_revision()
    engine.dispose()


def test_audit_journal_refuses_update_and_delete(database_url: str, open_store) -> None:  # noqa: ANN001
    """The database itself keeps the audit journal append-only."""
    store = open_store(database_url)
    with store.transaction() as tx:
        tx.audit("test.event", "flow", "F1", NOW, note="kept")
    for statement in ("UPDATE audit_events SET action = 'forged'", "DELETE FROM audit_events"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.engine.begin() as connection:
            connection.execute(sa.text(statement))
    with store.transaction() as tx:
        assert [e.action for e in tx.audit_events()] == ["test.event"]


def test_business_key_is_unique_among_active_invoices_only(database_url: str, open_store) -> None:  # noqa: ANN001
    """A second active invoice with the same key is refused; a quarantined one is not in the way."""
    store = open_store(database_url)
    source_id = _source(store)
    with store.transaction() as tx:
        _invoice(tx, source_id, InvoiceStatus.QUARANTINED)
        _invoice(tx, source_id, InvoiceStatus.VALID)
        with pytest.raises(DuplicateInvoice, match="F-1"):
            _invoice(tx, source_id, InvoiceStatus.VALID)
        # The failed insert rolled back a savepoint only: the unit goes on.
        _invoice(tx, source_id, InvoiceStatus.VALID, number="F-2")
    with store.transaction() as tx:
        assert sorted(i.invoice_number for i in tx.list_invoices(status="valid")) == ["F-1", "F-2"]
        assert len(tx.status_events()) == 3


def test_counters_are_monotonic_per_name(database_url: str, open_store) -> None:  # noqa: ANN001
    store = open_store(database_url)
    with store.transaction() as tx:
        assert [tx.next_counter("flow:a") for _ in range(3)] == [1, 2, 3]
        assert tx.next_counter("flow:b") == 1
    with store.transaction() as tx:
        assert tx.next_counter("flow:a") == 4


def test_new_sqlite_database_is_created_at_head(tmp_path) -> None:  # noqa: ANN001
    """Store.open brings a fresh SQLite file to the current revision by itself."""
    store = Store.open(f"sqlite:///{tmp_path / 'sub' / 'new.db'}")
    assert db.current_revision(store.engine) == db.head_revision()
    store.close()


@pytest.mark.postgres
def test_postgres_behind_head_asks_for_db_upgrade(postgres_url: str) -> None:
    """A PostgreSQL database is never migrated as a side effect of opening it."""
    from gateway.errors import StoreError

    with pytest.raises(StoreError, match="gateway db upgrade"):
        Store.open(postgres_url)


def test_flow_numbers_are_the_partner_codes_and_continue_after_ids_numbered_per_partner(database_url: str,
                                                                                      open_store) -> None:
    """Issue 12 item 3: two partners with one code draw from one sequence. A store numbered per partner
    name before goes on after the highest id recorded for the code, never below it."""
    store = open_store(database_url)
    with store.transaction() as tx:
        for flow_id in ("AAA1231100000000000000007", "AAA12311000000000000000099", "AAA1211100000000000000042"):
            attempts.open_flow(tx, now=NOW, flow_id=flow_id, partner="old", interface_code="FSO1100A", syntax="ubl",
                               file_name=f"{flow_id}.tar.gz", sha256="0" * 64, size=1, invoice_count=1,
                               validated_with="[]")
    with store.transaction() as tx:
        # AAA1231... ending 099 has AAA1231's length + 1: it belongs to the 7-character code AAA1231, not AAA123.
        assert [tx.next_flow_counter("AAA123"), tx.next_flow_counter("AAA123")] == [8, 9]
        assert tx.next_flow_counter("AAA121") == 43
        assert tx.next_flow_counter("BBB1") == 1


def test_the_validator_failure_is_read_once_from_the_reasons_of_an_older_store(database_url: str) -> None:
    """Until 0006 an invoice that ran out of time was told by its reason; the migration records it as such."""
    engine = db.make_engine(database_url)
    db.upgrade(engine, "0005")
    reasons = {"late": "validation exceeded its time budget of 60 s (worker stopped); raise …",
               "crash": "the validator process died while validating this document", "valid": None}
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO source_files (id, channel, name, path, sha256, size, status, invoice_count, "
            "quarantined_count, received_at, updated_at) VALUES (1, 'erp', 'x.csv', '/x.csv', :h, 1, 'processed', "
            "3, 0, :now, :now)"), {"h": "0" * 64, "now": NOW})
        for line, (number, reason) in enumerate(reasons.items(), start=2):
            connection.execute(sa.text(
                "INSERT INTO invoices (invoice_number, status, reason, source_file_id, source_line, channel, "
                "created_at, updated_at) VALUES (:number, :status, :reason, 1, :line, 'erp', :now, :now)"),
                {"number": number, "status": "valid" if reason is None else "validation-error", "reason": reason,
                 "line": line, "now": NOW})
    db.upgrade(engine)
    with engine.connect() as connection:
        found = dict(connection.execute(sa.text("SELECT invoice_number, validation_failure FROM invoices")).all())
    engine.dispose()
    assert found == {"late": "time_budget", "crash": "unavailable", "valid": None}
