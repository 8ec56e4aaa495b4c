"""Reports stage: what Chorus Pro sends back, parsed. Pure: no store, no clock.

``cppstatut.parse_report`` turns a ``CPPStatut`` document (integration report or
lifecycle) into the values of ``model``; ``gateway.pipeline.reports.reconcile_report``
applies them to flows and invoices. Parsing never touches the store; reconciling never
parses XML by hand.
"""

from __future__ import annotations

from gateway.reports.cppstatut import format_invoice_description, parse_invoice_description, parse_report
from gateway.reports.model import (
    NATURE_FLOW,
    NATURE_INVOICE,
    ErrorLine,
    FlowStatusEntry,
    InvoiceStatusEntry,
    ParsedReport,
)

__all__ = [
    "NATURE_FLOW",
    "NATURE_INVOICE",
    "ErrorLine",
    "FlowStatusEntry",
    "InvoiceStatusEntry",
    "ParsedReport",
    "format_invoice_description",
    "parse_invoice_description",
    "parse_report",
]
