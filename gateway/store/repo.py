"""The store and its transactions: ``Store.transaction()`` yields a ``Tx`` whose named methods
read and write rows; a pipeline step writes its rows in one transaction *before* the side effect
they allow.

``Tx`` is one class composed of one mixin per aggregate (``flows``, ``invoices``, ``reports``,
``sources``, ``history``, ``wire``, ``reference``) over ``base.TxBase``; only these modules build
SQL or touch the session. Rows go out typed by the read-only protocols of ``rows`` (the pipeline)
or copied into the read models of ``views`` (the CLI), and stay readable after the transaction
(``expire_on_commit=False``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, bindparam, insert, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from gateway.errors import StoreError
from gateway.store import db
from gateway.store.base import PendingEvent, TxBase
from gateway.store.flows import Flows
from gateway.store.history import History
from gateway.store.invoices import DuplicateInvoice, Invoices
from gateway.store.reference import ReferenceData
from gateway.store.reports import Reports
from gateway.store.sources import SourceFiles
from gateway.store.wire import WireEvidence
from gateway.store.models import Invoice, StatusEvent


class Store:
    """The reconciliation store, on SQLite or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect, and bring a new SQLite database to the current schema."""
        engine = db.make_engine(url)
        try:
            db.ensure_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @classmethod
    def open_read_only(cls, url: str) -> Store:
        """Connect for reading only: nothing is created, migrated or written.

        Raises ``db.NoStore`` when there is no store at ``url``, ``StoreError`` when its
        schema is not this gateway's."""
        engine = db.make_read_only_engine(url)
        try:
            db.require_current_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One unit of work: committed on success, rolled back on any exception."""
        session = self._sessions()
        try:
            with session.begin():
                tx = Tx(session)
                yield tx
                tx.flush_pending_events()
        except OperationalError as exc:
            raise StoreError(f"the database failed: {exc.orig}") from None
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()


class Tx(Flows, Invoices, Reports, SourceFiles, ReferenceData, WireEvidence, History, TxBase):
    """Named reads and writes within one transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._pending_events: list[PendingEvent] = []
        self._pending_invoices: dict[int, dict[str, Any]] = {}

    def flush_pending_events(self) -> None:
        """Write the buffered invoice statuses and status events, one statement each
        (see ``add_status_event``)."""
        if self._pending_invoices:
            table = Invoice.__table__
            rows = list(self._pending_invoices.values())
            self._pending_invoices.clear()
            self.session.flush()
            self.session.connection().execute(
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values(status=bindparam("b_status"), reason=bindparam("b_reason"),
                        updated_at=bindparam("b_updated_at")),
                rows,
            )
        if self._pending_events:
            rows = [event.row() for event in self._pending_events]
            self._pending_events.clear()
            # Core, not the ORM's bulk insert: one executemany instead of a statement per row.
            self.session.flush()
            self.session.connection().execute(insert(StatusEvent.__table__), rows)

__all__ = ["DuplicateInvoice", "PendingEvent", "Store", "Tx"]
