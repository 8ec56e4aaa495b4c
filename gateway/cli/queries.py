"""Read-only commands: flows, invoices and reports, as a table or as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from collections.abc import Sequence
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from gateway.cli.state import State, output_console, pass_state
from gateway.domain import FlowStatus, InvoiceStatus, flow_next_step
from gateway.reports.lifecycle import current_status


def _emit(rows: Sequence[dict[str, Any]], as_json: bool, title: str) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str, ensure_ascii=False))
        return
    if not rows:
        click.echo(f"{title}: none")
        return
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column, overflow="fold")
    for row in rows:
        # Text, not markup: a reason like "[chorus CHORUS-SIRET-BUYER] …" must print as written.
        table.add_row(*(Text("" if v is None else str(v)) for v in row.values()))
    output_console().print(table)


@click.group("flows")
def flows_group() -> None:
    """Flows packed, sent and reported on."""


@flows_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in FlowStatus]))
@click.option("--json", "as_json", is_flag=True)
@pass_state
def flows_list(state: State, status: str | None, as_json: bool) -> None:
    """List flows, oldest first."""
    with state.read_store().transaction() as tx:
        rows = [
            {
                "flow_id": f.flow_id,
                "partner": f.partner,
                "interface": f.interface_code,
                "file_name": f.file_name,
                "status": f.status,
                "invoices": f.invoice_count,
                "integrated": f.integrated_count,
                "rejected": f.rejected_count,
                "attempts": f.attempts,
                "sha256": f.sha256,
                "size": f.size,
                "sent_at": f.sent_at,
                "reason": f.reason,
                "next_step": flow_next_step(f.status, f.flow_id),
                "validated_with": _validated_with(f.validated_with, as_json),
            }
            for f in tx.list_flows(status=status)
        ]
    _emit(rows, as_json, "Flows")


def _validated_with(recorded: str | None, as_json: bool) -> Any:
    """The XSDs and rule sets that validated a flow: in full as JSON, by name and version in a table."""
    artefacts = json.loads(recorded) if recorded else []
    if as_json:
        return artefacts
    return ", ".join(f"{a['name']} {a['version']}" for a in artefacts)


@click.group("invoices")
def invoices_group() -> None:
    """Invoices read from ERP exports and where they stand."""


@invoices_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in InvoiceStatus]))
@click.option("--siret", help="Only invoices of this supplier or to this buyer.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="Only invoices received since (UTC), e.g. 2026-11-01.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def invoices_list(state: State, status: str | None, siret: str | None, since: datetime | None, as_json: bool) -> None:
    """List invoices, oldest first, with the last lifecycle status Chorus Pro gave them."""
    with state.read_store().transaction() as tx:
        invoices = tx.find_invoices(status=status, siret=siret, since=since.replace(tzinfo=UTC) if since else None)
        # The current lifecycle status by rank (docs/reports.md), not the last to arrive.
        histories = tx.status_events_by_invoice(i.id for i in invoices)
        lifecycle = {invoice_id: current_status(events) for invoice_id, events in histories.items()}
        rows = []
        for invoice in invoices:
            event = lifecycle.get(invoice.id)
            rows.append(
                {
                    "id": invoice.id,
                    "supplier_siret": invoice.supplier_siret,
                    "invoice_number": invoice.invoice_number,
                    "issue_date": invoice.issue_date,
                    "buyer_siret": invoice.buyer_siret,
                    "status": invoice.status,
                    "lifecycle": f"{event.code} {event.label}" if event else None,
                    "channel": invoice.channel,
                    "source_line": invoice.source_line,
                    "corrects": invoice.corrects_id,
                    "reason": invoice.reason,
                }
            )
    _emit(rows, as_json, "Invoices")


@click.group("reports")
def reports_group() -> None:
    """Files returned by Chorus Pro."""


@reports_group.command("list")
@click.option("--problems", is_flag=True, help="Only reports that are invalid, unmatched or unknown.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def reports_list(state: State, problems: bool, as_json: bool) -> None:
    """List stored reports and what became of each."""
    with state.read_store().transaction() as tx:
        rows = [
            {
                "id": r.id,
                "file_name": r.file_name,
                "partner": r.partner,
                "kind": r.kind,
                "outcome": r.outcome,
                "received_at": r.received_at,
                "sha256": r.sha256,
                "detail": r.detail,
            }
            for r in tx.list_reports(problems_only=problems)
        ]
    _emit(rows, as_json, "Reports")
