"""The store's named queries: the only module that builds SQL.

``Store.transaction()`` yields a ``Tx`` whose methods read and write rows; a pipeline
step writes its rows in one transaction *before* the side effect they allow.
Rows come back as the mapped objects of ``gateway.store.models`` and stay readable
after the transaction (``expire_on_commit=False``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Table, and_, bindparam, exists, func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker, undefer
from sqlalchemy.orm.attributes import set_committed_value

from gateway.domain import ACTIVE_INVOICE_STATUSES, FlowStatus, InvoiceStatus, SourceFileStatus
from gateway.errors import StoreError
from gateway.store import db
from gateway.store.history import History
from gateway.store.reference import ReferenceData
from gateway.store.wire import WireEvidence
from gateway.store.models import (
    AuditEvent,
    Counter,
    Flow,
    FlowMember,
    Invoice,
    Report,
    SourceFile,
    StatusEvent,
    Transmission,
)


#: Values per IN (...) list: well under SQLite's and PostgreSQL's parameter limits.
_IN_CHUNK = 500
#: A buffered event's id until it is stored: after every stored event, in order of arrival.
_PROVISIONAL_ID = 10**15


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


class DuplicateInvoice(StoreError):
    """An invoice with the same supplier, number and year is already active."""


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


class Tx(ReferenceData, WireEvidence, History):
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

    # -- source files ------------------------------------------------------------

    def find_settled_source_file(self, channel: str, sha256: str) -> SourceFile | None:
        """A file of this channel with these bytes that was already dealt with."""
        return self.session.scalars(
            select(SourceFile)
            .where(SourceFile.channel == channel, SourceFile.sha256 == sha256)
            # Only a processed file is settled: one quarantined whole (wrong encoding, missing
            # column) must be read again when the operator fixes the setting and re-drops it.
            .where(SourceFile.status == "processed")
            .order_by(SourceFile.id.desc())
        ).first()

    def claim_source_file(
        self,
        *,
        channel: str,
        name: str,
        path: str,
        sha256: str,
        size: int,
        now: datetime,
        resumable: Collection[int] = (),
    ) -> SourceFile | None:
        """Claim an export for intake: one ``received`` row per channel, name and sha256.

        Returns the new row; or, when the file's intake was interrupted (its row is still
        ``received``) and that row's id is in ``resumable``, the row to resume; None when
        another process holds the file or has just processed it: the caller leaves it alone.
        """
        table = SourceFile.__table__
        self._serialize("source-file", channel, name, sha256)
        taken = and_(
            table.c.channel == channel,
            table.c.name == name,
            table.c.sha256 == sha256,
            table.c.status.in_([SourceFileStatus.RECEIVED.value, SourceFileStatus.PROCESSED.value]),
        )
        values = {
            "channel": channel, "name": name, "path": path, "sha256": sha256, "size": size,
            "status": SourceFileStatus.RECEIVED.value, "invoice_count": 0, "quarantined_count": 0,
            "received_at": now, "updated_at": now,
        }
        # Check and insert in one statement: on SQLite the statement runs under the write
        # lock; on PostgreSQL the advisory lock above orders the claimers of this file.
        unless_taken = select(*(literal(value, table.c[key].type).label(key) for key, value in values.items()))
        claimed = self.session.execute(
            insert(table).from_select(list(values), unless_taken.where(~exists().where(taken))).returning(table.c.id)
        ).scalar()
        if claimed is not None:
            return self.session.get(SourceFile, claimed)
        held = self.session.scalars(select(SourceFile).where(taken).order_by(SourceFile.id.desc())).first()
        if held is not None and held.status == SourceFileStatus.RECEIVED.value and held.id in resumable:
            return held
        return None

    def unfinished_source_files(self, channel: str) -> set[int]:
        """Ids of the channel's files whose intake began and did not end (``received``)."""
        return set(
            self.session.scalars(
                select(SourceFile.id).where(
                    SourceFile.channel == channel, SourceFile.status == SourceFileStatus.RECEIVED.value
                )
            )
        )

    def source_file_invoice_statuses(self, source_file_id: int) -> dict[str, int]:
        """How many of a file's invoices are in each status (its recorded invoices, counted)."""
        rows = self.session.execute(
            select(Invoice.status, func.count(Invoice.id))
            .where(Invoice.source_file_id == source_file_id)
            .group_by(Invoice.status)
        ).all()
        return {status: count for status, count in rows}

    def add_source_file(
        self, *, channel: str, name: str, path: str, sha256: str, size: int, now: datetime
    ) -> SourceFile:
        row = SourceFile(
            channel=channel,
            name=name,
            path=path,
            sha256=sha256,
            size=size,
            status="received",
            invoice_count=0,
            quarantined_count=0,
            received_at=now,
            updated_at=now,
        )
        self.session.add(row)
        self.session.flush()
        return row

    def settle_source_file(
        self,
        row: SourceFile,
        *,
        status: str,
        reason: str | None,
        invoice_count: int,
        quarantined_count: int,
        now: datetime,
    ) -> None:
        row.status = status
        row.reason = reason
        row.invoice_count = invoice_count
        row.quarantined_count = quarantined_count
        row.updated_at = now
        self.audit("source_file." + status, "source_file", row.id, now, reason=reason)

    def source_file(self, source_file_id: int) -> SourceFile:
        row = self.session.get(SourceFile, source_file_id)
        assert row is not None
        return row

    def source_files(self) -> Sequence[SourceFile]:
        return self.session.scalars(select(SourceFile).order_by(SourceFile.id)).all()

    # -- invoices ----------------------------------------------------------------

    def has_active_invoice(self, supplier_siret: str, number: str, year: int) -> bool:
        return (
            self.session.scalar(
                select(func.count(Invoice.id)).where(
                    Invoice.supplier_siret == supplier_siret,
                    Invoice.invoice_number == number,
                    Invoice.issue_year == year,
                    Invoice.status.in_([s.value for s in ACTIVE_INVOICE_STATUSES]),
                )
            )
            > 0
        )

    def active_invoice(self, supplier_siret: str, number: str, year: int) -> Invoice | None:
        """The invoice holding this business key: accepted, in a flow, sent or integrated."""
        return self.session.scalars(
            select(Invoice).where(
                Invoice.supplier_siret == supplier_siret,
                Invoice.invoice_number == number,
                Invoice.issue_year == year,
                Invoice.status.in_([s.value for s in ACTIVE_INVOICE_STATUSES]),
            )
        ).first()

    def add_invoice(self, *, now: datetime, status: InvoiceStatus, **fields: Any) -> Invoice:
        """Insert an invoice and its first status event.

        Raises ``DuplicateInvoice`` when the business key is already active; the
        transaction can go on (a savepoint is rolled back, not the whole unit).
        """
        row = Invoice(status=status.value, created_at=now, updated_at=now, **fields)
        try:
            with self._savepoint():
                self.session.add(row)
                self.session.flush()
        except IntegrityError:
            raise DuplicateInvoice(
                f"invoice {fields.get('invoice_number')} of supplier "
                f"{fields.get('supplier_siret')} ({fields.get('issue_year')}) was already accepted"
            ) from None
        self.add_status_event(invoice_id=row.id, code=status.value, label=row.reason, now=now)
        return row

    def set_invoice_status(
        self,
        invoice: Invoice,
        status: InvoiceStatus,
        *,
        now: datetime,
        reason: str | None = None,
        source: str = "gateway",
        report_id: int | None = None,
        occurred_at: datetime | None = None,
        buffered: bool = False,
    ) -> None:
        if buffered:
            # Seen at once by this transaction's readers of the object, written with the
            # others at its end (SQLite's driver makes the ORM update row by row).
            for key, value in (("status", status.value), ("reason", reason), ("updated_at", now)):
                set_committed_value(invoice, key, value)
            self._pending_invoices[invoice.id] = {"b_id": invoice.id, "b_status": status.value, "b_reason": reason,
                                                  "b_updated_at": now}
        else:
            invoice.status = status.value
            invoice.reason = reason
            invoice.updated_at = now
        self.add_status_event(
            invoice_id=invoice.id,
            code=status.value,
            label=reason,
            source=source,
            report_id=report_id,
            now=now,
            occurred_at=occurred_at,
            buffered=buffered,
        )

    def move_invoice(self, invoice: Invoice, status: InvoiceStatus, *, now: datetime, reason: str | None) -> None:
        """``set_invoice_status`` for a move that may take the business key: raises
        ``DuplicateInvoice`` (and leaves the invoice as it was) when another holds it."""
        previous = invoice.status
        try:
            with self._savepoint():
                invoice.status = status.value
                self.session.flush()
        except IntegrityError:
            invoice.status = previous
            raise DuplicateInvoice(
                f"invoice {invoice.invoice_number} of supplier {invoice.supplier_siret} ({invoice.issue_year}) "
                "was already accepted"
            ) from None
        self.set_invoice_status(invoice, status, now=now, reason=reason)

    def correct_quarantined(
        self, invoice: Invoice, *, now: datetime, held_back: tuple[int, int] | None = None
    ) -> list[Invoice]:
        """The quarantined invoices that ``invoice``, read from a later export, takes the
        place of: the one at ``held_back`` (source file id, line: the operator's fix of a
        held-back invoice's file, whose name says where it came from), and those with the
        same supplier and number (and year, where both have one) from another file. Each
        moves to ``corrected``, keeping its reason; ``invoice`` corrects the latest of them
        unless it already corrects a rejected one."""
        same: list[Any] = []
        if held_back is not None:
            same.append((Invoice.source_file_id == held_back[0]) & (Invoice.source_line == held_back[1]))
        if invoice.supplier_siret and invoice.invoice_number:
            key = (Invoice.supplier_siret == invoice.supplier_siret) & (
                Invoice.invoice_number == invoice.invoice_number)
            if invoice.issue_year is not None:
                key &= or_(Invoice.issue_year.is_(None), Invoice.issue_year == invoice.issue_year)
            same.append(key)
        if not same:
            return []
        replaced = list(self.session.scalars(
            select(Invoice)
            .where(Invoice.status == InvoiceStatus.QUARANTINED.value, Invoice.id != invoice.id, or_(*same))
            .where(or_(Invoice.source_file_id.is_(None), Invoice.source_file_id != invoice.source_file_id))
            .order_by(Invoice.id)
        ).all())
        for old in replaced:
            old.status = InvoiceStatus.CORRECTED.value
            old.updated_at = now
            self.add_status_event(invoice_id=old.id, code=InvoiceStatus.CORRECTED.value,
                                  label=f"corrected by invoice #{invoice.id}", now=now)
        if replaced and invoice.corrects_id is None:
            invoice.corrects_id = replaced[-1].id
        return replaced

    def invoices_in_status(self, status: InvoiceStatus, *, channel: str | None = None) -> Sequence[Invoice]:
        query = select(Invoice).where(Invoice.status == status.value).order_by(Invoice.id)
        if channel is not None:
            query = query.where(Invoice.channel == channel)
        return self.session.scalars(query).all()

    def invoices_ready(self, *, partner: str, syntax: str) -> Sequence[Invoice]:
        """Valid invoices waiting for a flow, oldest first, with their documents (to be packed)."""
        return self.session.scalars(
            select(Invoice)
            .options(undefer(Invoice.payload))
            .where(
                Invoice.status == InvoiceStatus.VALID.value,
                Invoice.partner == partner,
                Invoice.syntax == syntax,
            )
            .order_by(Invoice.id)
        ).all()

    def claim_invoices_for_flow(self, invoices: Sequence[Invoice]) -> bool:
        """Move valid invoices to ``packed``, all of them or none: compare-and-set on their
        status, so that two packers never put one invoice into two flows. False (and
        nothing changed) when another packer took any of them first. The caller then
        records each one's status (``set_invoice_status``), which gives the reason and event.
        """
        table = Invoice.__table__
        wanted = [invoice.id for invoice in invoices]
        taken = list(
            self.session.execute(
                update(table)
                .where(table.c.id.in_(wanted), table.c.status == InvoiceStatus.VALID.value)
                .values(status=InvoiceStatus.PACKED.value)
                .returning(table.c.id)
            ).scalars()
        )
        if len(taken) == len(wanted):
            return True
        if taken:
            # Put back what this packer took: no savepoint (on SQLite, pysqlite would make
            # a savepoint opened first in a transaction commit on release).
            self.session.execute(
                update(table).where(table.c.id.in_(taken)).values(status=InvoiceStatus.VALID.value)
            )
        return False

    def find_sent_invoice(self, supplier_siret: str, number: str) -> Invoice | None:
        """The invoice at Chorus Pro with this supplier and number (most recent first)."""
        return self.session.scalars(
            select(Invoice)
            .where(
                Invoice.supplier_siret == supplier_siret,
                Invoice.invoice_number == number,
                Invoice.status.in_(
                    [
                        InvoiceStatus.SENT.value,
                        InvoiceStatus.INTEGRATED.value,
                        InvoiceStatus.REJECTED.value,
                    ]
                ),
            )
            .order_by(Invoice.id.desc())
        ).first()

    def sent_invoices_by_key(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Invoice]:
        """``find_sent_invoice`` for every (supplier, number) of a report, in a few queries."""
        numbers_of: dict[str, set[str]] = {}
        for supplier, number in keys:
            numbers_of.setdefault(supplier, set()).add(number)
        found: dict[tuple[str, str], Invoice] = {}
        statuses = [InvoiceStatus.SENT.value, InvoiceStatus.INTEGRATED.value, InvoiceStatus.REJECTED.value]
        for supplier, numbers in numbers_of.items():
            ordered = sorted(numbers)
            for start in range(0, len(ordered), _IN_CHUNK):
                for invoice in self.session.scalars(
                    select(Invoice)
                    .where(Invoice.supplier_siret == supplier)
                    .where(Invoice.invoice_number.in_(ordered[start : start + _IN_CHUNK]))
                    .where(Invoice.status.in_(statuses))
                    .order_by(Invoice.id)
                ):
                    found[(supplier, invoice.invoice_number or "")] = invoice  # the most recent wins
        return found

    def status_events_by_invoice(self, invoice_ids: Iterable[int]) -> dict[int, list[StatusEvent]]:
        ids = sorted(set(invoice_ids))
        events: dict[int, list[StatusEvent]] = {invoice_id: [] for invoice_id in ids}
        for start in range(0, len(ids), _IN_CHUNK):
            for event in self.session.scalars(
                select(StatusEvent)
                .where(StatusEvent.invoice_id.in_(ids[start : start + _IN_CHUNK]))
                .order_by(StatusEvent.id)
            ):
                events[event.invoice_id or 0].append(event)
        return events

    def list_invoices(self, *, status: str | None = None, limit: int | None = None) -> Sequence[Invoice]:
        query = select(Invoice).order_by(Invoice.id)
        if status:
            query = query.where(Invoice.status == status)
        if limit:
            query = query.limit(limit)
        return self.session.scalars(query).all()

    def count_invoices_by_status(self) -> dict[str, int]:
        rows = self.session.execute(select(Invoice.status, func.count(Invoice.id)).group_by(Invoice.status)).all()
        return {status: count for status, count in rows}

    # -- flows -------------------------------------------------------------------

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

    def next_flow_counter(self, partner_code: str) -> int:
        """The next flow number of a Chorus Pro partner code.

        Flow ids are unique per partner code at Chorus Pro, so the sequence is the code's,
        shared by every configured partner that uses it. A store whose flows were numbered
        per partner name (before 2026-12) starts the code's sequence after the highest flow
        id already recorded for that code, so that no id is given twice.
        """
        name = f"flow-code:{partner_code}"
        table = Counter.__table__
        if self.session.scalar(select(table.c.value).where(table.c.name == name)) is None:
            # The id is code + 4 interface digits + 15 counter digits: its length tells a
            # code from a longer code that starts with it.
            ids = select(Flow.flow_id).where(
                Flow.flow_id.startswith(partner_code, autoescape=True),
                func.length(Flow.flow_id) == len(partner_code) + 19,
            )
            highest = max((int(flow_id[-15:]) for flow_id in self.session.scalars(ids)), default=0)
            self._insert_unless_present(table, {"name": name, "value": highest}, "name")
        return self.next_counter(name)

    def add_flow(self, *, now: datetime, **fields: Any) -> Flow:
        flow = Flow(
            status=FlowStatus.PACKED.value,
            integrated_count=0,
            rejected_count=0,
            attempts=0,
            created_at=now,
            updated_at=now,
            **fields,
        )
        self.session.add(flow)
        self.session.flush()
        self.add_status_event(flow_pk=flow.id, code=flow.status, label=None, now=now)
        self.audit("flow.packed", "flow", flow.flow_id, now, file_name=flow.file_name, sha256=flow.sha256)
        return flow

    def add_flow_member(self, flow: Flow, invoice: Invoice, *, member_name: str, sha256: str) -> None:
        self.session.add(FlowMember(flow_pk=flow.id, invoice_id=invoice.id, member_name=member_name, sha256=sha256))

    def set_flow_status(
        self,
        flow: Flow,
        status: FlowStatus,
        *,
        now: datetime,
        reason: str | None = None,
        source: str = "gateway",
        report_id: int | None = None,
    ) -> None:
        flow.status = status.value
        flow.reason = reason
        flow.updated_at = now
        self.add_status_event(
            flow_pk=flow.id, code=status.value, label=reason, source=source, report_id=report_id, now=now
        )
        self.audit("flow." + status.value, "flow", flow.flow_id, now, reason=reason)

    def flows_with_status(self, *statuses: FlowStatus) -> Sequence[Flow]:
        return self.session.scalars(
            select(Flow).where(Flow.status.in_([s.value for s in statuses])).order_by(Flow.id)
        ).all()

    def flow_members(self, flow: Flow) -> Sequence[tuple[FlowMember, Invoice]]:
        rows = self.session.execute(
            select(FlowMember, Invoice)
            .join(Invoice, Invoice.id == FlowMember.invoice_id)
            .where(FlowMember.flow_pk == flow.id)
            .order_by(FlowMember.member_name)
        ).all()
        return [(member, invoice) for member, invoice in rows]

    def find_flow(self, flow_id: str) -> Flow | None:
        return self.session.scalars(select(Flow).where(Flow.flow_id == flow_id)).first()

    def find_flow_by_file_name(self, file_name: str) -> Flow | None:
        return self.session.scalars(select(Flow).where(Flow.file_name == file_name)).first()

    def list_flows(self, *, status: str | None = None) -> Sequence[Flow]:
        query = select(Flow).order_by(Flow.id)
        if status:
            query = query.where(Flow.status == status)
        return self.session.scalars(query).all()

    # -- transmissions -----------------------------------------------------------

    def start_transmission(
        self, flow: Flow, *, transport: str, remote_name: str, now: datetime
    ) -> Transmission | None:
        """Claim the flow for an attempt and record the attempt in progress, before the
        bytes leave. Compare-and-set: the flow must still be ``packed`` and due; of two
        processes that both saw it due, the one whose update wins gets the attempt, the
        other None (and must not send)."""
        table = Flow.__table__
        claimed = self.session.execute(
            update(table)
            .where(
                table.c.id == flow.id,
                table.c.status == FlowStatus.PACKED.value,
                or_(table.c.next_attempt_at.is_(None), table.c.next_attempt_at <= now),
            )
            .values(status=FlowStatus.SENDING.value, attempts=table.c.attempts + 1, reason=None, updated_at=now)
        ).rowcount
        if claimed != 1:
            return None
        self.session.refresh(flow)
        # Numbered over the flow's whole history: `gateway flows retry` restarts
        # flow.attempts (the count towards max_attempts), not the numbering.
        previous = self.session.scalar(
            select(func.count(Transmission.id)).where(Transmission.flow_pk == flow.id)
        ) or 0
        attempt = Transmission(
            flow_pk=flow.id,
            attempt=previous + 1,
            transport=transport,
            remote_name=remote_name,
            outcome="in_progress",
            started_at=now,
        )
        self.session.add(attempt)
        self.add_status_event(flow_pk=flow.id, code=FlowStatus.SENDING.value, label=None, now=now)
        self.audit("flow." + FlowStatus.SENDING.value, "flow", flow.flow_id, now)
        self.session.flush()
        return attempt

    def finish_transmission(
        self,
        attempt: Transmission,
        *,
        outcome: str,
        now: datetime,
        receipt: str | None = None,
        error: str | None = None,
        message_id: str | None = None,
        request: bytes | None = None,
        response: bytes | None = None,
    ) -> None:
        """Settle an attempt; the evidence given is kept, and evidence already kept (an
        asynchronous MDN stored by ``gateway serve``) is not overwritten by None."""
        attempt.outcome = outcome
        attempt.receipt = receipt
        attempt.error = error
        attempt.ended_at = now
        attempt.message_id = message_id or attempt.message_id
        attempt.request_raw = request if request is not None else attempt.request_raw
        attempt.response_raw = response if response is not None else attempt.response_raw

    def transmissions_in_progress(self) -> Sequence[tuple[Transmission, Flow]]:
        rows = self.session.execute(
            select(Transmission, Flow)
            .join(Flow, Flow.id == Transmission.flow_pk)
            .where(Transmission.outcome == "in_progress")
            .order_by(Transmission.id)
        ).all()
        return [(attempt, flow) for attempt, flow in rows]

    def transmissions(self, flow: Flow) -> Sequence[Transmission]:
        return self.session.scalars(
            select(Transmission).where(Transmission.flow_pk == flow.id).order_by(Transmission.id)
        ).all()

    # -- reports -----------------------------------------------------------------

    def find_report(self, sha256: str) -> Report | None:
        return self.session.scalars(select(Report).where(Report.sha256 == sha256)).first()

    def add_report(self, *, sha256: str, file_name: str, partner: str, raw: bytes, now: datetime) -> Report:
        """Store a returned file; one already stored (same sha256) is returned as it is."""
        return self.store_report(sha256=sha256, file_name=file_name, partner=partner, raw=raw, now=now)[0]

    def store_report(
        self, *, sha256: str, file_name: str, partner: str, raw: bytes, now: datetime
    ) -> tuple[Report, bool]:
        """``add_report``, and whether this call stored it. Two processes picking up the
        same file store it once: the second insert does nothing (no unique-key error)."""
        stored = self._insert_unless_present(
            Report.__table__,
            {"sha256": sha256, "file_name": file_name, "partner": partner, "raw": raw, "received_at": now},
            "sha256",
        )
        report = self.find_report(sha256)
        assert report is not None
        if stored:
            self.audit("report.received", "report", report.id, now, file_name=file_name, sha256=sha256)
        return report, stored

    def settle_report(
        self, report: Report, *, kind: str | None, outcome: str, detail: str | None, now: datetime
    ) -> None:
        report.kind = kind
        report.outcome = outcome
        report.detail = detail
        self.audit("report." + outcome, "report", report.id, now, detail=detail)

    def reports_to_reconcile(self) -> Sequence[Report]:
        """Reports stored but not yet reconciled (e.g. after a crash)."""
        return self.session.scalars(select(Report).where(Report.outcome.is_(None)).order_by(Report.id)).all()

    def list_reports(self, *, problems_only: bool = False) -> Sequence[Report]:
        query = select(Report).order_by(Report.id)
        if problems_only:
            query = query.where(Report.outcome != "applied")
        return self.session.scalars(query).all()

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

    def mark_flow_invoices(self, flow: Flow, status: InvoiceStatus, *, now: datetime) -> None:
        """Move every member of a flow to ``status`` (one event per invoice)."""
        for _member, invoice in self.flow_members(flow):
            self.set_invoice_status(invoice, status, now=now)

    def bump_flow_counts(self, flow: Flow) -> None:
        """Recount integrated and rejected members from their statuses."""
        counts = dict(
            self.session.execute(
                select(Invoice.status, func.count(Invoice.id))
                .join(FlowMember, FlowMember.invoice_id == Invoice.id)
                .where(FlowMember.flow_pk == flow.id)
                .group_by(Invoice.status)
            ).all()
        )
        flow.integrated_count = counts.get(InvoiceStatus.INTEGRATED.value, 0)
        flow.rejected_count = counts.get(InvoiceStatus.REJECTED.value, 0)

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


__all__ = ["DuplicateInvoice", "Store", "Tx"]
