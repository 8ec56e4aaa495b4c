"""Reports: collected from the partners, stored once by sha256, reconciled; and the ledger of
the integration reports each sent flow expects.

Reconciliation moves a report's flows (through ``attempts``) and invoices inside one
transaction. Fail closed: a report that does not parse, names nothing we sent, or carries a
status code we do not know is kept, marked, and logged as an alert; it never reads as pending.
Reports in either format (CPPStatut, CDAR D22B) come through ``registry.parse_any``.

Lifecycle statuses append to each invoice's history; its current status is derived
from the whole history (``lifecycle.current_status``), so a status arriving out of
order does not move an invoice backwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from gateway.domain import (
    CDAR_FLOW_STATUS_LABELS,
    CDAR_INVOICE_STATUS_LABELS,
    FLOW_STATUS_LABELS,
    INVOICE_STATUS_LABELS,
    FlowEvent,
    InvoiceStatus,
    ReportOutcome,
    flow_next_step,
)
from gateway.errors import ReportError, TransportError
from gateway.pipeline import attempts
from gateway.pipeline.summary import PassSummary
from gateway.reports import lifecycle, registry
from gateway.reports.model import ErrorLine, FlowStatusEntry, InvoiceStatusEntry
from gateway.store import Tx
from gateway.store.rows import FlowRow, InvoiceRow, ReportRow, StatusEventRow
from gateway.store.views import ReportView

if TYPE_CHECKING:
    from gateway.clock import Clock
    from gateway.config import Config, Partner
    from gateway.store import Store
    from gateway.transport import Transport

log = structlog.get_logger(__name__)

#: Known codes of both formats: CPPStatut's have two digits, CDAR's three, so they never collide.
_FLOW_LABELS = {**FLOW_STATUS_LABELS, **CDAR_FLOW_STATUS_LABELS}
_INVOICE_LABELS = {**INVOICE_STATUS_LABELS, **CDAR_INVOICE_STATUS_LABELS}
#: Codes that settle a flow, and the event each one is (``attempts`` moves the flow): the CR's 90/96 and the
#: failures. 93 and CDAR 501 (irrecevable) say the flow's content was refused: its invoices
#: are rejected, and a corrected re-export is the way on. 94 and 95 say the flow did not get
#: through: nothing of it was integrated, and the same flow goes again by `gateway flows
#: retry` once the cause is known. CDAR 500 (recevable) settles nothing: each invoice then
#: gets its own status (200 Déposée, 213 Rejetée, …); 91 and 92 are steps of the journey.
_SETTLING = {
    "90": FlowEvent.REPORTED_INTEGRATED,
    "96": FlowEvent.REPORTED_PARTIALLY_INTEGRATED,
    "93": FlowEvent.REPORTED_REJECTED,
    "501": FlowEvent.REPORTED_REJECTED,
    "94": FlowEvent.REPORTED_FAILED,
    "95": FlowEvent.REPORTED_FAILED,
}
#: Settling codes that are not a success: each raises ``alert.flow_rejected`` at once,
#: not 4 hours later as an overdue report.
_FAILURES = frozenset(code for code, event in _SETTLING.items()
                      if event in (FlowEvent.REPORTED_REJECTED, FlowEvent.REPORTED_FAILED))
#: Most serious outcome first, for a report with several entries.
_SEVERITY = [ReportOutcome.UNKNOWN, ReportOutcome.UNMATCHED, ReportOutcome.APPLIED]


def reconcile_report(tx: Tx, report_id: int, *, now: datetime) -> str:
    """Parse one stored report and apply it; returns the report's outcome."""
    report = tx.report(report_id)
    bound = log.bind(report=report.id, file=report.file_name)
    try:
        parsed = registry.parse_any(report.raw)
    except ReportError as exc:
        tx.settle_report(report, kind=None, outcome=ReportOutcome.INVALID.value, detail=exc.message, now=now)
        bound.error("alert.report_invalid", reason=exc.message)
        return ReportOutcome.INVALID.value
    outcomes: list[tuple[ReportOutcome, str]] = []
    for flow_entry in parsed.flow_statuses:
        outcomes.append(_apply_flow_status(tx, report, flow_entry, now))
    # A lifecycle file carries thousands of statuses: the invoices and their histories are
    # read in a few queries, and nothing is flushed until the end of the report.
    with tx.without_autoflush():
        invoices = tx.sent_invoices_by_key((e.supplier_id, e.invoice_number) for e in parsed.invoice_statuses)
        histories: dict[int, list[StatusEventRow]] = {
            invoice_id: list(events)
            for invoice_id, events in tx.status_events_by_invoice(i.id for i in invoices.values()).items()
        }
        for invoice_entry in parsed.invoice_statuses:
            outcomes.append(_apply_invoice_status(tx, report, invoice_entry, now, invoices, histories))
    outcome = min((o for o, _ in outcomes), key=_SEVERITY.index, default=ReportOutcome.UNMATCHED)
    problems = "; ".join(detail for o, detail in outcomes if o is not ReportOutcome.APPLIED)
    tx.settle_report(report, kind=parsed.kind, outcome=outcome.value, detail=problems or None, now=now)
    if outcome is ReportOutcome.APPLIED:
        bound.info("report.applied", kind=parsed.kind, entries=len(outcomes))
    else:
        bound.error(f"alert.report_{outcome.value}", kind=parsed.kind, detail=problems)
    return outcome.value


def _apply_flow_status(
    tx: Tx, report: ReportRow, entry: FlowStatusEntry, now: datetime
) -> tuple[ReportOutcome, str]:
    flow = tx.find_flow(entry.flow_id)
    if flow is None:
        return ReportOutcome.UNMATCHED, f"flow status {entry.code} names flow {entry.flow_id!r}, which was never sent"
    if entry.code not in _FLOW_LABELS:
        tx.add_status_event(
            flow_pk=flow.id,
            code=entry.code,
            label="unknown status code",
            source="chorus",
            report_id=report.id,
            now=now,
            occurred_at=_utc(entry.timestamp),
        )
        return ReportOutcome.UNKNOWN, f"flow {flow.flow_id}: unknown flow status code {entry.code!r}"
    label = entry.label or _FLOW_LABELS[entry.code]
    event = _SETTLING.get(entry.code)
    if event is None:
        # 91, 92: steps of the flow's journey; CDAR 500: the flow is receivable.
        # Recorded without settling it.
        tx.add_status_event(
            flow_pk=flow.id,
            code=entry.code,
            label=label,
            source="chorus",
            report_id=report.id,
            now=now,
            occurred_at=_utc(entry.timestamp),
        )
        return ReportOutcome.APPLIED, ""
    if event is FlowEvent.REPORTED_FAILED:
        _fail_flow(tx, report, flow, entry, label, now)
    else:
        _settle_flow(tx, report, flow, entry, event, now)
    if entry.code in _FAILURES:
        log.error("alert.flow_rejected", flow=flow.flow_id, partner=flow.partner, code=entry.code, label=label,
                  errors=[_describe(e) for e in entry.errors], report=report.id, reason=flow.reason,
                  action=flow_next_step(flow.status, flow.flow_id))
    return ReportOutcome.APPLIED, ""


def _fail_flow(tx: Tx, report: ReportRow, flow: FlowRow, entry: FlowStatusEntry, label: str, now: datetime) -> None:
    """The flow did not get through (94, 95): it is failed, for the operator to send again.

    Its invoices go back to ``packed``: they are in a flow that Chorus Pro does not hold,
    and they still hold their business key, so that no re-export sends them twice.
    """
    details = "; ".join(_describe(e) for e in entry.errors)
    reason = f"Chorus Pro flow status {entry.code} {label}" + (f": {details}" if details else "")
    for _member, invoice in tx.flow_members(flow):
        if invoice.status == InvoiceStatus.SENT.value:
            tx.set_invoice_status(invoice, InvoiceStatus.PACKED, now=now, reason=reason, source="chorus",
                                  report_id=report.id, occurred_at=_utc(entry.timestamp))
    attempts.reported(tx, flow, FlowEvent.REPORTED_FAILED, now=now, reason=reason, report_id=report.id)


def _settle_flow(
    tx: Tx, report: ReportRow, flow: FlowRow, entry: FlowStatusEntry, event: FlowEvent, now: datetime
) -> None:
    rejections = _invoice_rejections(entry.errors)
    flow_reason = "; ".join(_describe(e) for e in entry.errors if e.invoice_number is None) or None
    for _member, invoice in tx.flow_members(flow):
        # ``packed``: a flow that a 94/95 had failed and that Chorus Pro took after all.
        if invoice.status not in (InvoiceStatus.SENT.value, InvoiceStatus.PACKED.value):
            continue  # already settled by an earlier report: never move backwards
        reason = rejections.get(invoice.invoice_number or "")
        if reason is None and event is FlowEvent.REPORTED_REJECTED:
            reason = flow_reason or f"flow rejected by Chorus Pro (status {entry.code})"
        status = InvoiceStatus.REJECTED if reason else InvoiceStatus.INTEGRATED
        tx.set_invoice_status(
            invoice,
            status,
            now=now,
            reason=reason,
            source="chorus",
            report_id=report.id,
            occurred_at=_utc(entry.timestamp),
        )
        if reason:
            log.warning("invoice.rejected", invoice=invoice.invoice_number, flow=flow.flow_id, reason=reason)
    attempts.reported(tx, flow, event, now=now, reason=flow_reason or entry.comment, report_id=report.id)
    tx.bump_flow_counts(flow)


def _invoice_rejections(errors: tuple[ErrorLine, ...]) -> dict[str, str]:
    reasons: dict[str, list[str]] = {}
    for error in errors:
        if error.invoice_number:
            reasons.setdefault(error.invoice_number, []).append(_describe(error))
    return {number: "; ".join(parts) for number, parts in reasons.items()}


def _describe(error: ErrorLine) -> str:
    return f"{error.code}: {error.label}" if error.code else error.label


def _apply_invoice_status(
    tx: Tx,
    report: ReportRow,
    entry: InvoiceStatusEntry,
    now: datetime,
    invoices: Mapping[tuple[str, str], InvoiceRow],
    histories: dict[int, list[StatusEventRow]],
) -> tuple[ReportOutcome, str]:
    invoice = invoices.get((entry.supplier_id, entry.invoice_number))
    if invoice is None:
        return (
            ReportOutcome.UNMATCHED,
            f"status {entry.code} names invoice {entry.invoice_number!r} of supplier {entry.supplier_id}, "
            "which was never sent",
        )
    known = _INVOICE_LABELS.get(entry.code)
    event = tx.add_status_event(
        invoice_id=invoice.id,
        code=entry.code,
        label=known and (entry.label or known) or "unknown status code",
        source="chorus",
        report_id=report.id,
        now=now,
        occurred_at=_utc(entry.timestamp),
        buffered=True,
    )
    history = histories.setdefault(invoice.id, [])
    history.append(event)
    if known is None:
        return ReportOutcome.UNKNOWN, f"invoice {invoice.invoice_number}: unknown status code {entry.code!r}"
    _follow_lifecycle(tx, report, invoice, entry, now, history)
    return ReportOutcome.APPLIED, ""


def _follow_lifecycle(
    tx: Tx,
    report: ReportRow,
    invoice: InvoiceRow,
    entry: InvoiceStatusEntry,
    now: datetime,
    events: list[StatusEventRow],
) -> None:
    """Move the invoice to what its current lifecycle status says, never backwards."""
    recorded = events[-1]  # the status just added
    current = lifecycle.current_status(events)
    if current is not None and current is not recorded and lifecycle.rank(entry.code) != lifecycle.INFORMATION:
        log.info(
            "report.status_out_of_order",
            invoice=invoice.invoice_number,
            code=entry.code,
            current=current.code,
            report=report.id,
        )
    if current is not None and lifecycle.is_rejection(current.code):
        if invoice.status in (InvoiceStatus.SENT.value, InvoiceStatus.INTEGRATED.value):
            # Rejected by the buyer or the platform after the flow was taken, even after
            # integration: the business key is freed for a corrected invoice.
            comment = f": {entry.comment}" if entry.comment and current is recorded else ""
            reason = f"status {current.code} {current.label}{comment}"
            tx.set_invoice_status(
                invoice,
                InvoiceStatus.REJECTED,
                now=now,
                reason=reason,
                source="chorus",
                report_id=report.id,
                occurred_at=_utc(entry.timestamp),
                buffered=True,
            )
            log.warning("invoice.rejected", invoice=invoice.invoice_number, reason=reason)
    elif invoice.status == InvoiceStatus.SENT.value:
        # Any other lifecycle status means Chorus Pro holds the invoice, even if the
        # flow's integration report is late or lost.
        tx.set_invoice_status(
            invoice,
            InvoiceStatus.INTEGRATED,
            now=now,
            reason=None,
            source="chorus",
            report_id=report.id,
            occurred_at=_utc(entry.timestamp),
            buffered=True,
        )


def _utc(value: datetime) -> datetime:
    """Stored in UTC: SQLite keeps a timestamp's wall-clock time and drops its offset."""
    return value.astimezone(UTC)


# -- collect, store once ------------------------------------------------------------------------------------------


def store_report(tx: Tx, raw: bytes, *, file_name: str | None, partner: str, now: datetime) -> tuple[ReportRow, bool]:
    """Store a returned file once, by its sha256, whoever else picked it up or was sent it; returns the report
    and whether this call stored it (a copy already stored is not applied a second time). ``file_name`` None:
    a report that came without one (an AS2 message without a filename) is named after its hash."""
    digest = hashlib.sha256(raw).hexdigest()
    name = (file_name or f"as2-{digest[:16]}")[:255]
    return tx.store_report(sha256=digest, file_name=name, partner=partner, raw=raw, now=now)


def ingest_report(store: Store, raw: bytes, *, file_name: str, partner: str, now: datetime) -> tuple[ReportView, bool]:
    """A report file taken in by hand (`gateway reports ingest`): stored once, then reconciled when this call
    stored it. Returns the report as it stands and whether it was new."""
    with store.transaction() as tx:
        report, stored = store_report(tx, raw, file_name=file_name, partner=partner, now=now)
        report_id = report.id
    if stored:
        with store.transaction() as tx:
            reconcile_report(tx, report_id, now=now)
    with store.transaction() as tx:
        return tx.report_view(report_id), stored


class ReportSteps:
    """Steps of ``Pipeline``, which provides what is declared here."""

    config: Config
    store: Store
    clock: Clock

    def transport(self, partner: Partner) -> Transport: ...

    def collect_reports(self, partner: Partner, summary: PassSummary) -> None:
        """Store each returned file durably, then remove it remotely."""
        try:
            transport = self.transport(partner)
            names = transport.list_reports()
        except TransportError as exc:
            log.error("reports.pickup_failed", partner=partner.name, error=exc.message)
            summary.reports_pickup_failed[partner.name] = exc.message
            return
        for name in names:
            try:
                raw = transport.fetch_report(name)
            except TransportError as exc:
                log.error("reports.fetch_failed", partner=partner.name, file=name, error=exc.message)
                summary.reports_pickup_failed.setdefault(partner.name, exc.message)
                continue
            with self.store.transaction() as tx:
                store_report(tx, raw, file_name=name, partner=partner.name, now=self.clock.now())
            try:
                transport.acknowledge_report(name)
            except TransportError as exc:
                # Stored already: fetched again next pass, it is recognised by its sha256.
                log.warning("reports.acknowledge_failed", partner=partner.name, file=name, error=exc.message)

    def reconcile_pending(self, summary: PassSummary) -> None:
        with self.store.transaction() as tx:
            pending = [report.id for report in tx.reports_to_reconcile()]
        for report_id in pending:
            with self.store.transaction() as tx:
                outcome = reconcile_report(tx, report_id, now=self.clock.now())
            summary.reports[outcome] += 1

    # -- the expected-report ledger: every sent flow expects its integration report -----------------------------

    def check_overdue(self) -> list[str]:
        """Log one alert per flow whose report is overdue (once per flow, not every pass)."""
        now = self.clock.now()
        alerted = []
        with self.store.transaction() as tx:
            for flow, deadline in overdue_flows(list(tx.sent_flows_without_report()), dict(self.config.partners), now):
                if flow.report_overdue_at is not None:
                    continue
                tx.mark_report_overdue(flow, now=now, deadline=deadline)
                log.error("alert.report_overdue", flow=flow.flow_id, partner=flow.partner, file_name=flow.file_name,
                          sent_at=str(flow.sent_at), deadline=deadline.isoformat(),
                          action="ask Chorus Pro support about this flow; see `gateway reports overdue`")
                alerted.append(flow.flow_id)
        return alerted


def overdue_flows(flows: list[FlowRow], partners: dict[str, Partner], now: datetime) -> list[tuple[FlowRow, datetime]]:
    """(flow, deadline) of each sent flow whose integration report is past its partner's deadline."""
    overdue = []
    for flow in flows:
        partner = partners.get(flow.partner)
        if partner is None or flow.sent_at is None:
            continue
        sent_at = flow.sent_at if flow.sent_at.tzinfo else flow.sent_at.replace(tzinfo=UTC)  # SQLite drops it
        deadline = sent_at + timedelta(hours=partner.report_deadline_hours)
        if deadline < now:
            overdue.append((flow, deadline))
    return overdue
