"""Reconciliation: a stored report moves its flow and invoices, inside one transaction.

Fail closed: a report that does not parse, names nothing we sent, or carries a status
code we do not know is kept, marked, and logged as an alert; it never reads as pending.
Reports in either format (CPPStatut, CDAR D22B) come through ``registry.parse_any``.

Lifecycle statuses append to each invoice's history; its current status is derived
from the whole history (``lifecycle.current_status``), so a status arriving out of
order does not move an invoice backwards.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from gateway.domain import (
    CDAR_FLOW_STATUS_LABELS,
    CDAR_INVOICE_STATUS_LABELS,
    FLOW_STATUS_LABELS,
    INVOICE_STATUS_LABELS,
    FlowStatus,
    InvoiceStatus,
    ReportOutcome,
    flow_next_step,
)
from gateway.errors import ReportError
from gateway.reports import lifecycle, registry
from gateway.reports.model import ErrorLine, FlowStatusEntry, InvoiceStatusEntry
from gateway.store import Tx
from gateway.store.repo import PendingEvent
from gateway.store.models import Flow, Invoice, Report, StatusEvent

log = structlog.get_logger(__name__)

#: Known codes of both formats: CPPStatut's have two digits, CDAR's three, so they never collide.
_FLOW_LABELS = {**FLOW_STATUS_LABELS, **CDAR_FLOW_STATUS_LABELS}
_INVOICE_LABELS = {**INVOICE_STATUS_LABELS, **CDAR_INVOICE_STATUS_LABELS}
#: Codes that settle a flow, and the flow status each one means: the CR's 90/96 and the
#: failures. 93 and CDAR 501 (irrecevable) say the flow's content was refused: its invoices
#: are rejected, and a corrected re-export is the way on. 94 and 95 say the flow did not get
#: through: nothing of it was integrated, and the same flow goes again by `gateway flows
#: retry` once the cause is known. CDAR 500 (recevable) settles nothing: each invoice then
#: gets its own status (200 Déposée, 213 Rejetée, …); 91 and 92 are steps of the journey.
_SETTLING = {
    "90": FlowStatus.INTEGRATED,
    "96": FlowStatus.PARTIALLY_INTEGRATED,
    "93": FlowStatus.REJECTED,
    "501": FlowStatus.REJECTED,
    "94": FlowStatus.FAILED,
    "95": FlowStatus.FAILED,
}
#: Settling codes that are not a success: each raises ``alert.flow_rejected`` at once,
#: not 4 hours later as an overdue report.
_FAILURES = frozenset(code for code, target in _SETTLING.items()
                      if target in (FlowStatus.REJECTED, FlowStatus.FAILED))
#: Most serious outcome first, for a report with several entries.
_SEVERITY = [ReportOutcome.UNKNOWN, ReportOutcome.UNMATCHED, ReportOutcome.APPLIED]


def reconcile_report(tx: Tx, report_id: int, *, now: datetime) -> str:
    """Parse one stored report and apply it; returns the report's outcome."""
    report = tx.session.get(Report, report_id)
    assert report is not None
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
    with tx.session.no_autoflush:
        invoices = tx.sent_invoices_by_key((e.supplier_id, e.invoice_number) for e in parsed.invoice_statuses)
        histories: dict[int, list[StatusEvent | PendingEvent]] = dict(
            tx.status_events_by_invoice(i.id for i in invoices.values())
        )
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


def _apply_flow_status(tx: Tx, report: Report, entry: FlowStatusEntry, now: datetime) -> tuple[ReportOutcome, str]:
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
    target = _SETTLING.get(entry.code)
    if target is None:
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
    if target is FlowStatus.FAILED:
        _fail_flow(tx, report, flow, entry, label, now)
    else:
        _settle_flow(tx, report, flow, entry, target, now)
    if entry.code in _FAILURES:
        log.error("alert.flow_rejected", flow=flow.flow_id, partner=flow.partner, code=entry.code, label=label,
                  errors=[_describe(e) for e in entry.errors], report=report.id, reason=flow.reason,
                  action=flow_next_step(flow.status, flow.flow_id))
    return ReportOutcome.APPLIED, ""


def _fail_flow(tx: Tx, report: Report, flow: Flow, entry: FlowStatusEntry, label: str, now: datetime) -> None:
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
    tx.set_flow_status(flow, FlowStatus.FAILED, now=now, reason=reason, source="chorus", report_id=report.id)


def _settle_flow(tx: Tx, report: Report, flow: Flow, entry: FlowStatusEntry, target: FlowStatus, now: datetime) -> None:
    rejections = _invoice_rejections(entry.errors)
    flow_reason = "; ".join(_describe(e) for e in entry.errors if e.invoice_number is None) or None
    for _member, invoice in tx.flow_members(flow):
        # ``packed``: a flow that a 94/95 had failed and that Chorus Pro took after all.
        if invoice.status not in (InvoiceStatus.SENT.value, InvoiceStatus.PACKED.value):
            continue  # already settled by an earlier report: never move backwards
        reason = rejections.get(invoice.invoice_number or "")
        if reason is None and target is FlowStatus.REJECTED:
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
    tx.set_flow_status(flow, target, now=now, reason=flow_reason or entry.comment, source="chorus", report_id=report.id)
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
    report: Report,
    entry: InvoiceStatusEntry,
    now: datetime,
    invoices: dict[tuple[str, str], Invoice],
    histories: dict[int, list[StatusEvent | PendingEvent]],
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
    report: Report,
    invoice: Invoice,
    entry: InvoiceStatusEntry,
    now: datetime,
    events: list[StatusEvent | PendingEvent],
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
