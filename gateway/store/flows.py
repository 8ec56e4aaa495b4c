"""Flows and their attempts (``transmissions``): the rows that ``pipeline/attempts.py`` moves. A mixin of ``Tx``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update

from gateway.domain import FlowStatus, InvoiceStatus
from gateway.store.models import (
    Counter,
    Flow,
    FlowMember,
    Invoice,
    Transmission,
)
from gateway.store.base import TxBase


class Flows(TxBase):
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

