"""Invoices: recorded, moved between statuses, claimed for a flow, found by business key. A mixin of ``Tx``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import undefer
from sqlalchemy.orm.attributes import set_committed_value

from gateway.domain import ACTIVE_INVOICE_STATUSES, InvoiceStatus, ValidatorFailure
from gateway.errors import StoreError
from gateway.store.models import Invoice, StatusEvent
from gateway.store.base import _IN_CHUNK, TxBase
from gateway.store.rows import InvoiceRow
from gateway.store.views import InvoiceView, StatusEventView


class DuplicateInvoice(StoreError):
    """An invoice with the same supplier, number and year is already active."""


class Invoices(TxBase):
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

    def _row(self, invoice: InvoiceRow) -> Invoice:
        """The mapped row of ``invoice``: itself when it is one (reconciliation moves thousands), else by id."""
        return invoice if isinstance(invoice, Invoice) else self._by_id(Invoice, invoice.id, "invoice")

    def set_invoice_status(
        self,
        invoice: InvoiceRow,
        status: InvoiceStatus,
        *,
        now: datetime,
        reason: str | None = None,
        source: str = "gateway",
        report_id: int | None = None,
        occurred_at: datetime | None = None,
        buffered: bool = False,
    ) -> None:
        invoice = self._row(invoice)
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

    def move_invoice(self, invoice: InvoiceRow, status: InvoiceStatus, *, now: datetime, reason: str | None) -> None:
        """``set_invoice_status`` for a move that may take the business key: raises
        ``DuplicateInvoice`` (and leaves the invoice as it was) when another holds it."""
        invoice = self._row(invoice)
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
        self, invoice: InvoiceRow, *, now: datetime, held_back: tuple[int, int] | None = None
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
            self._row(invoice).corrects_id = replaced[-1].id
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

    def claim_invoices_for_flow(self, invoices: Sequence[InvoiceRow]) -> bool:
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

    def sent_invoices_by_key(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Invoice]:
        """The invoice at Chorus Pro (sent, integrated or rejected) of each (supplier, number) of a report,
        the most recent of each, in a few queries."""
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

    def invoice_view(self, invoice_id: int) -> InvoiceView | None:
        row = self.session.get(Invoice, invoice_id)
        return None if row is None else InvoiceView.of(row)

    def invoice(self, invoice_id: int) -> InvoiceRow:
        """The invoice with this id; ``StoreError`` when there is none."""
        return self._by_id(Invoice, invoice_id, "invoice")

    def invoice_payload(self, invoice: InvoiceRow) -> bytes:
        """The invoice's document as it was mapped (validated, packed)."""
        payload = self._row(invoice).payload
        if payload is None:
            raise StoreError(f"invoice #{invoice.id} ({invoice.invoice_number}) has no document in the store")
        return payload

    def note_validator_failure(self, invoice: InvoiceRow, reason: str, failure: ValidatorFailure) -> None:
        """A validation-error invoice's validator failed again: why, and whether it is tried again."""
        row = self._by_id(Invoice, invoice.id, "invoice")
        row.reason = reason
        row.validation_failure = failure.value

    def record_validation_set(self, invoice: InvoiceRow, validation_set_id: int) -> None:
        """The XSDs and rule sets that validated the invoice."""
        self._by_id(Invoice, invoice.id, "invoice").validation_set_id = validation_set_id

    def status_events_by_invoice(self, invoice_ids: Iterable[int]) -> dict[int, list[StatusEventView]]:
        """Each invoice's status events, in order of record (read models: a reader appends its own)."""
        ids = sorted(set(invoice_ids))
        events: dict[int, list[StatusEventView]] = {invoice_id: [] for invoice_id in ids}
        for start in range(0, len(ids), _IN_CHUNK):
            for event in self.session.scalars(
                select(StatusEvent)
                .where(StatusEvent.invoice_id.in_(ids[start : start + _IN_CHUNK]))
                .order_by(StatusEvent.id)
            ):
                events[event.invoice_id or 0].append(StatusEventView.of(event))
        return events

    def list_invoices(self, *, status: str | None = None, limit: int | None = None) -> list[InvoiceView]:
        query = select(Invoice).order_by(Invoice.id)
        if status:
            query = query.where(Invoice.status == status)
        if limit:
            query = query.limit(limit)
        return [InvoiceView.of(row) for row in self.session.scalars(query)]

    def count_invoices_by_status(self) -> dict[str, int]:
        rows = self.session.execute(select(Invoice.status, func.count(Invoice.id)).group_by(Invoice.status)).all()
        return {status: count for status, count in rows}

