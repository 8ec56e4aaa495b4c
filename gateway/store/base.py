"""What every part of ``Tx`` shares: the session, status events, the audit journal, counters,
typed look-ups by id, and the statements that claim rows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway.errors import StoreError
from gateway.store.models import Base, AuditEvent, Counter, StatusEvent


#: Values per IN (...) list: well under SQLite's and PostgreSQL's parameter limits.
_IN_CHUNK = 500
#: A buffered event's id until it is stored: after every stored event, in order of arrival.
_PROVISIONAL_ID = 10**15

_Row = TypeVar("_Row", bound=Base)


@dataclass(frozen=True)
class PendingEvent:
    """A status event buffered until the end of its transaction (same fields as ``StatusEvent``)."""

    invoice_id: int | None
    flow_pk: int | None
    code: str
    label: str | None
    source: str
    report_id: int | None
    occurred_at: datetime
    recorded_at: datetime
    id: int

    def row(self) -> dict[str, Any]:
        values = asdict(self)
        del values["id"]
        return values


class TxBase:
    """The session of one transaction and what every aggregate's methods use."""

    session: Session
    _pending_events: list[PendingEvent]
    _pending_invoices: dict[int, dict[str, Any]]

    def next_counter(self, name: str) -> int:
        """Next value of a monotonic sequence, in one statement: two writers never get the
        same value (on PostgreSQL the second waits on the row; SQLite has one writer)."""
        table = Counter.__table__
        bump = update(table).where(table.c.name == name).values(value=table.c.value + 1).returning(table.c.value)
        value = self.session.execute(bump).scalar()
        if value is None:
            self._insert_unless_present(table, {"name": name, "value": 0}, "name")
            value = self.session.execute(bump).scalar_one()
        return int(value)

    def _by_id(self, model: type[_Row], pk: object, what: str) -> _Row:
        """The row of ``model`` with primary key ``pk``, from this transaction's rows when it holds it."""
        row = self.session.get(model, pk)
        if row is None:
            raise StoreError(f"no {what} {pk} in the store: it was never recorded, or the store is not the one "
                             "that recorded it")
        return row

    @contextmanager
    def without_autoflush(self) -> Iterator[None]:
        """Reads that do not first write what this transaction changed (a report of thousands of statuses
        reads its invoices once, and writes at the end)."""
        with self.session.no_autoflush:
            yield

    # -- events ------------------------------------------------------------------

    def add_status_event(
        self,
        *,
        code: str,
        label: str | None,
        now: datetime,
        invoice_id: int | None = None,
        flow_pk: int | None = None,
        source: str = "gateway",
        report_id: int | None = None,
        occurred_at: datetime | None = None,
        buffered: bool = False,
    ) -> StatusEvent | PendingEvent:
        """Record a status. ``buffered``: kept in memory and inserted with the others at
        the end of the transaction, for a report of thousands of statuses (an ORM object
        per status costs more than the rest of reconciliation)."""
        if buffered:
            pending = PendingEvent(invoice_id, flow_pk, code, label, source, report_id, occurred_at or now, now,
                                   _PROVISIONAL_ID + len(self._pending_events))
            self._pending_events.append(pending)
            return pending
        event = StatusEvent(
            invoice_id=invoice_id,
            flow_pk=flow_pk,
            code=code,
            label=label,
            source=source,
            report_id=report_id,
            occurred_at=occurred_at or now,
            recorded_at=now,
        )
        self.session.add(event)
        return event

    def status_events(self, *, invoice_id: int | None = None, flow_pk: int | None = None) -> Sequence[StatusEvent]:
        query = select(StatusEvent).order_by(StatusEvent.id)
        if invoice_id is not None:
            query = query.where(StatusEvent.invoice_id == invoice_id)
        if flow_pk is not None:
            query = query.where(StatusEvent.flow_pk == flow_pk)
        return self.session.scalars(query).all()

    def audit(self, action: str, subject_kind: str, subject_id: object, now: datetime, **detail: Any) -> None:
        self.session.add(
            AuditEvent(
                at=now,
                action=action,
                subject_kind=subject_kind,
                subject_id=str(subject_id),
                detail=json.dumps({k: v for k, v in detail.items() if v is not None}, default=str) or None,
            )
        )

    def audit_events(self) -> Sequence[AuditEvent]:
        return self.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()

    # -- claims ------------------------------------------------------------------

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        """``begin_nested``, first making sure a SQLite transaction is open: pysqlite opens
        one only before an INSERT, UPDATE or DELETE, and a SAVEPOINT that comes first
        would start one of its own, committed when the savepoint is released (a batch of
        intake would be committed invoice by invoice)."""
        if self._dialect() == "sqlite":
            connection = self.session.connection()
            if not connection.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
                connection.exec_driver_sql("BEGIN")
        with self.session.begin_nested():
            yield

    def _dialect(self) -> str:
        return self.session.get_bind().dialect.name

    def _insert_unless_present(self, table: Table, values: dict[str, Any], key: str) -> bool:
        """INSERT … ON CONFLICT (key) DO NOTHING; True when the row was inserted."""
        dialect = postgresql if self._dialect() == "postgresql" else sqlite
        statement = dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=[key])
        return self.session.execute(statement.returning(table.c[key])).first() is not None

    def _serialize(self, *parts: str) -> None:
        """Make the claimers of one thing wait for each other until the end of the
        transaction (PostgreSQL: a transaction-level advisory lock; SQLite has one writer)."""
        if self._dialect() != "postgresql":
            return
        key = int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big", signed=True)
        self.session.execute(select(func.pg_advisory_xact_lock(key)))


