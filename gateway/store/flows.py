"""Flows and their attempts (``transmissions``): the rows that ``pipeline/attempts.py`` moves. A mixin of ``Tx``."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update

from gateway.domain import AttemptOutcome, FlowStatus, InvoiceStatus
from gateway.errors import StoreError
from gateway.store.models import (
    Counter,
    Flow,
    FlowMember,
    Invoice,
    Transmission,
)
from gateway.store.invoices import Invoices
from gateway.store.views import FlowView
from gateway.store.rows import AttemptRow, FlowRow, InvoiceRow


#: What a flow's move may set besides its status and reason.
_MOVED_WITH_STATUS = frozenset({"sent_at", "next_attempt_at", "attempts"})


class Flows(Invoices):
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

    def add_flow(self, *, status: FlowStatus, event: str, now: datetime, **fields: Any) -> Flow:
        """A new flow in ``status``: ``pipeline/attempts.py`` alone calls it (``open_flow``)."""
        flow = Flow(
            status=status.value,
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
        self.audit("flow." + flow.status, "flow", flow.flow_id, now, event=event, file_name=flow.file_name,
                   sha256=flow.sha256)
        return flow

    def add_flow_member(self, flow: FlowRow, invoice: InvoiceRow, *, member_name: str, sha256: str) -> None:
        self.session.add(FlowMember(flow_pk=flow.id, invoice_id=invoice.id, member_name=member_name, sha256=sha256))

    def flow(self, flow_pk: int) -> FlowRow:
        """The flow with this primary key; ``StoreError`` when there is none."""
        return self._by_id(Flow, flow_pk, "flow")

    def move_flow(
        self,
        flow: FlowRow,
        status: FlowStatus,
        *,
        event: str,
        now: datetime,
        reason: str | None = None,
        source: str = "gateway",
        report_id: int | None = None,
        **fields: datetime | int | None,
    ) -> None:
        """Move a flow to ``status`` by ``event``, with its status event and an audit entry that names the
        move: ``pipeline/attempts.py`` alone calls it, by its table. ``fields``: the flow's ``sent_at``,
        ``next_attempt_at`` or ``attempts`` set by the same move."""
        unknown = set(fields) - _MOVED_WITH_STATUS
        if unknown:
            raise StoreError(f"a flow's move does not set {', '.join(sorted(unknown))}")
        row = self._by_id(Flow, flow.id, "flow")
        previous = row.status
        row.status = status.value
        row.reason = reason
        row.updated_at = now
        for name, value in fields.items():
            setattr(row, name, value)
        self.add_status_event(
            flow_pk=row.id, code=status.value, label=reason, source=source, report_id=report_id, now=now
        )
        self.audit("flow." + status.value, "flow", row.flow_id, now, reason=reason, event=event, previous=previous)

    def flow_members(self, flow: FlowRow) -> Sequence[tuple[FlowMember, Invoice]]:
        rows = self.session.execute(
            select(FlowMember, Invoice)
            .join(Invoice, Invoice.id == FlowMember.invoice_id)
            .where(FlowMember.flow_pk == flow.id)
            .order_by(FlowMember.member_name)
        ).all()
        return [(member, invoice) for member, invoice in rows]

    def find_flow(self, flow_id: str) -> Flow | None:
        return self.session.scalars(select(Flow).where(Flow.flow_id == flow_id)).first()

    def list_flows(self, *, status: str | None = None) -> list[FlowView]:
        query = select(Flow).order_by(Flow.id)
        if status:
            query = query.where(Flow.status == status)
        return [FlowView.of(row) for row in self.session.scalars(query)]

    # -- transmissions -----------------------------------------------------------

    def attempt(self, attempt_id: int) -> AttemptRow:
        """The attempt (``transmissions`` row) with this id; ``StoreError`` when there is none."""
        return self._by_id(Transmission, attempt_id, "attempt")

    def claim_flow_for_attempt(
        self,
        flow: FlowRow,
        *,
        expected: Collection[FlowStatus],
        status: FlowStatus,
        outcome: AttemptOutcome,
        event: str,
        transport: str,
        remote_name: str,
        now: datetime,
    ) -> Transmission | None:
        """Claim the flow for an attempt and record the attempt, before the bytes leave: ``pipeline/attempts.py``
        alone calls it. Compare-and-set: the flow must still be in an ``expected`` status and due; of two
        processes that both saw it due, the one whose update wins gets the attempt, the other None (and must
        not send)."""
        table = Flow.__table__
        claimed = self.session.execute(
            update(table)
            .where(
                table.c.id == flow.id,
                table.c.status.in_([s.value for s in expected]),
                or_(table.c.next_attempt_at.is_(None), table.c.next_attempt_at <= now),
            )
            .values(status=status.value, attempts=table.c.attempts + 1, reason=None, updated_at=now)
        ).rowcount
        if claimed != 1:
            return None
        row = self._by_id(Flow, flow.id, "flow")
        previous = row.status
        self.session.refresh(row)
        # Numbered over the flow's whole history: `gateway flows retry` restarts
        # flow.attempts (the count towards max_attempts), not the numbering.
        number = (self.session.scalar(
            select(func.count(Transmission.id)).where(Transmission.flow_pk == row.id)
        ) or 0) + 1
        attempt = Transmission(
            flow_pk=row.id,
            attempt=number,
            transport=transport,
            remote_name=remote_name,
            outcome=outcome.value,
            started_at=now,
        )
        self.session.add(attempt)
        self.add_status_event(flow_pk=row.id, code=status.value, label=None, now=now)
        self.audit("flow." + status.value, "flow", row.flow_id, now, event=event, previous=previous, attempt=number)
        self.session.flush()
        return attempt

    def settle_attempt(
        self,
        attempt: AttemptRow,
        outcome: AttemptOutcome,
        *,
        event: str,
        now: datetime,
        receipt: str | None = None,
        error: str | None = None,
        message_id: str | None = None,
        request: bytes | None = None,
        response: bytes | None = None,
    ) -> None:
        """End an attempt (``pipeline/attempts.py`` alone calls it); the evidence given is kept, and evidence
        already kept (an asynchronous MDN stored by ``gateway serve``) is not overwritten by None."""
        row = self._by_id(Transmission, attempt.id, "attempt")
        previous = row.outcome
        row.outcome = outcome.value
        row.receipt = receipt
        row.error = error
        row.ended_at = now
        row.message_id = message_id or row.message_id
        row.request_raw = request if request is not None else row.request_raw
        row.response_raw = response if response is not None else row.response_raw
        self.audit("attempt." + outcome.value, "transmission", row.id, now, event=event, previous=previous,
                   flow_pk=row.flow_pk, attempt=row.attempt)

    def transmissions_in_progress(self) -> Sequence[tuple[Transmission, Flow]]:
        rows = self.session.execute(
            select(Transmission, Flow)
            .join(Flow, Flow.id == Transmission.flow_pk)
            .where(Transmission.outcome == AttemptOutcome.IN_PROGRESS.value)
            .order_by(Transmission.id)
        ).all()
        return [(attempt, flow) for attempt, flow in rows]

    def transmissions(self, flow: FlowRow) -> Sequence[Transmission]:
        return self.session.scalars(
            select(Transmission).where(Transmission.flow_pk == flow.id).order_by(Transmission.id)
        ).all()

    def mark_report_overdue(self, flow: FlowRow, *, now: datetime, deadline: datetime) -> None:
        """The flow's integration report is past its deadline: noted once, so that it is alerted once."""
        row = self._by_id(Flow, flow.id, "flow")
        row.report_overdue_at = now
        self.audit("flow.report_overdue", "flow", row.flow_id, now, deadline=deadline.isoformat())

    def mark_flow_invoices(self, flow: FlowRow, status: InvoiceStatus, *, now: datetime) -> None:
        """Move every member of a flow to ``status`` (one event per invoice)."""
        for _member, invoice in self.flow_members(flow):
            self.set_invoice_status(invoice, status, now=now)

    def bump_flow_counts(self, flow: FlowRow) -> None:
        """Recount integrated and rejected members from their statuses."""
        counts = dict(
            self.session.execute(
                select(Invoice.status, func.count(Invoice.id))
                .join(FlowMember, FlowMember.invoice_id == Invoice.id)
                .where(FlowMember.flow_pk == flow.id)
                .group_by(Invoice.status)
            ).all()
        )
        row = self._by_id(Flow, flow.id, "flow")
        row.integrated_count = counts.get(InvoiceStatus.INTEGRATED.value, 0)
        row.rejected_count = counts.get(InvoiceStatus.REJECTED.value, 0)

