"""What the emitters and auditors ask of the store: an invoice's timeline, invoices by
status, party and date, rejected invoices to correct, flows whose report is overdue.
A mixin of ``Tx``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import defer

from gateway.domain import FlowStatus, InvoiceStatus
from gateway.store.base import TxBase
from gateway.store.views import FlowView, InvoiceView, ReportView, StatusEventView, TimelineEntry
from gateway.store.models import Flow, Invoice, Report, StatusEvent


class History(TxBase):

    def rejected_invoice(self, supplier_siret: str, number: str, year: int) -> Invoice | None:
        """The latest invoice Chorus Pro rejected with this business key: what a
        re-export with the same number corrects."""
        return self.session.scalars(
            select(Invoice)
            .where(
                Invoice.supplier_siret == supplier_siret,
                Invoice.invoice_number == number,
                Invoice.issue_year == year,
                Invoice.status == InvoiceStatus.REJECTED.value,
            )
            .order_by(Invoice.id.desc())
        ).first()

    def find_invoices(
        self,
        *,
        status: str | None = None,
        siret: str | None = None,
        since: datetime | None = None,
        number: str | None = None,
        limit: int | None = None,
    ) -> list[InvoiceView]:
        """Invoices, oldest first; ``siret`` matches the supplier or the buyer."""
        query = select(Invoice).order_by(Invoice.id)
        if status:
            query = query.where(Invoice.status == status)
        if siret:
            query = query.where(or_(Invoice.supplier_siret == siret, Invoice.buyer_siret == siret))
        if since:
            query = query.where(Invoice.created_at >= since)
        if number:
            query = query.where(Invoice.invoice_number == number)
        if limit:
            query = query.limit(limit)
        return [InvoiceView.of(row) for row in self.session.scalars(query)]

    def invoice_timeline(self, invoice_id: int) -> list[TimelineEntry]:
        """Every status event of an invoice with the report that carried it, in order of record."""
        rows = self.session.execute(
            select(StatusEvent, Report)
            .outerjoin(Report, Report.id == StatusEvent.report_id)
            .options(defer(Report.raw))
            .where(StatusEvent.invoice_id == invoice_id)
            .order_by(StatusEvent.id)
        ).all()
        return [TimelineEntry(StatusEventView.of(event), None if report is None else ReportView.of(report))
                for event, report in rows]

    def sent_flows_without_report(self) -> list[FlowView]:
        """Flows deposited and still waiting for their integration report: a CDAR 500
        (flow receivable) counts as one, its invoices being settled by their own statuses."""
        received = select(StatusEvent.id).where(
            StatusEvent.flow_pk == Flow.id, StatusEvent.source == "chorus", StatusEvent.code == "500"
        )
        return [FlowView.of(row) for row in self.session.scalars(
            select(Flow)
            .where(Flow.status == FlowStatus.SENT.value, ~received.exists())
            .order_by(Flow.sent_at, Flow.id)
        )]
