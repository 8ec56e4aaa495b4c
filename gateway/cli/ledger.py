"""The fate of every invoice, for emitters and auditors: an invoice's timeline, flows
whose report is overdue, and report files taken in by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from gateway.cli.queries import _emit, invoices_group, reports_group
from gateway.cli.state import State, pass_state
from gateway.clock import SystemClock
from gateway.errors import GatewayError
from gateway.pipeline.reports import ingest_report, overdue_flows
from gateway.reports.lifecycle import current_status
from gateway.store import Tx
from gateway.store.views import InvoiceView


def _find_invoice(tx: Tx, reference: str) -> InvoiceView:
    """By store id, or by invoice number when exactly one invoice carries it."""
    if reference.isdigit():
        found = tx.invoice_view(int(reference))
        if found is not None:
            return found
    matches = tx.find_invoices(number=reference)
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(str(i.id) for i in matches)
        raise GatewayError(f"{len(matches)} invoices are numbered {reference!r} (ids {ids}): give the id")
    raise GatewayError(f"no invoice {reference!r}: see `gateway invoices list`")


@invoices_group.command("show")
@click.argument("reference", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def invoices_show(state: State, reference: str, as_json: bool) -> None:
    """One invoice and the timeline of every event, with the report that carried it.

    ID is the invoice's id in the store, or its number when no other invoice has it."""
    with state.read_store().transaction() as tx:
        invoice = _find_invoice(tx, reference)
        history = tx.invoice_timeline(invoice.id)
        current = current_status(entry.event for entry in history)
        timeline = [
            {
                "at": event.occurred_at,
                "recorded_at": event.recorded_at,
                "code": event.code,
                "label": event.label,
                "source": event.source,
                "report": None if report is None else {"id": report.id, "file_name": report.file_name,
                                                       "sha256": report.sha256},
            }
            for event, report in ((entry.event, entry.report) for entry in history)
        ]
        facts: dict[str, Any] = {
            "id": invoice.id,
            "invoice_number": invoice.invoice_number,
            "supplier_siret": invoice.supplier_siret,
            "buyer_siret": invoice.buyer_siret,
            "issue_date": invoice.issue_date,
            "total_with_vat": invoice.total_with_vat,
            "currency": invoice.currency,
            "status": invoice.status,
            "lifecycle": f"{current.code} {current.label}" if current else None,
            "reason": invoice.reason,
            "corrects": invoice.corrects_id,
            "channel": invoice.channel,
            "source_line": invoice.source_line,
            "payload_sha256": invoice.payload_sha256,
        }
    if as_json:
        click.echo(json.dumps({**facts, "timeline": timeline}, indent=2, default=str, ensure_ascii=False))
        return
    for key, value in facts.items():
        if value is not None:
            click.echo(f"{key:16}{value}")
    _emit([{**row, "report": row["report"]["file_name"] if row["report"] else None} for row in timeline], False,
          "Timeline")


@reports_group.command("overdue")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def reports_overdue(state: State, as_json: bool) -> None:
    """Sent flows whose integration report is past their partner's deadline: exit 1 when
    there is any, so that a timer or a monitoring probe can alert on the code alone."""
    config = state.config()
    now = datetime.now(UTC)
    with state.read_store().transaction() as tx:
        rows = [
            {"flow_id": flow.flow_id, "partner": flow.partner, "file_name": flow.file_name, "sent_at": flow.sent_at,
             "deadline": deadline, "overdue_hours": round((now - deadline).total_seconds() / 3600, 1)}
            for flow, deadline in overdue_flows(list(tx.sent_flows_without_report()), dict(config.partners), now)
        ]
    _emit(rows, as_json, "Overdue integration reports")
    if rows:
        raise SystemExit(1)


@reports_group.command("ingest")
@click.argument("files", metavar="FILE...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--partner", default="manual", show_default=True, help="Recorded as where the report came from.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def reports_ingest(state: State, files: tuple[Path, ...], partner: str, as_json: bool) -> None:
    """Take in report files obtained outside the transports (downloaded from the portal,
    replayed by an operator): stored raw, then reconciled like any other."""
    store = state.store()
    rows = []
    for path in files:
        report, stored = ingest_report(store, path.read_bytes(), file_name=path.name, partner=partner,
                                       now=SystemClock().now())
        rows.append({"file": str(path), "report": report.id, "outcome": report.outcome, "kind": report.kind,
                     "detail": report.detail if stored else "already stored: not applied a second time"})
    _emit(rows, as_json, "Reports ingested")
    if any(row["outcome"] != "applied" for row in rows):
        raise SystemExit(1)
