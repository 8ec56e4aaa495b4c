"""Reports stage: what a report returned by Chorus Pro says, once parsed.

Plain frozen values, with no behaviour: the parser (``cppstatut.py``) builds them, the
sandbox writers take them, and the reconciler decides what they mean. Status codes
stay the two-digit strings of the file ("01", "90"), whether known or not: telling an
unknown code apart is the reconciler's job, not the parser's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

#: ``NatureErreur`` of an error line about the whole flow.
NATURE_FLOW = "FLUX"
#: ``NatureErreur`` of an error line about one invoice of the flow ([I], docs/reports.md).
NATURE_INVOICE = "FACTURE"

ReportKind = Literal["flow-status", "invoice-status"]

#: Larger files are refused before any parsing. A lifecycle file of a full flow (500
#: invoices, a few statuses each) weighs a few MB; 64 MiB leaves room, and bounds memory.
MAX_REPORT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ErrorLine:
    """One ``LigneErreurDetail`` of a flow status.

    ``invoice_number``, ``supplier_id`` and ``buyer_id`` are set for a per-invoice
    rejection (``nature`` = ``FACTURE``) and None for a flow-level error (``FLUX``).
    """

    nature: str
    code: str
    label: str
    description: str | None = None
    line_id: str | None = None
    invoice_number: str | None = None
    supplier_id: str | None = None
    buyer_id: str | None = None


@dataclass(frozen=True)
class FlowStatusEntry:
    """One ``CPPFluxStatutUnitaire``: the status of a deposited flow (90–96)."""

    flow_id: str
    code: str
    label: str | None
    comment: str | None
    timestamp: datetime
    errors: tuple[ErrorLine, ...] = ()


@dataclass(frozen=True)
class InvoiceStatusEntry:
    """One ``CPPFactureStatutUnitaire``: a lifecycle status of one invoice (01–41)."""

    supplier_id: str
    supplier_id_type: str
    buyer_id: str
    invoice_number: str
    invoice_date: date | None
    code: str
    label: str | None
    comment: str | None
    timestamp: datetime


@dataclass(frozen=True)
class ParsedReport:
    """A whole ``CPPStatut`` document: its envelope and its entries of one kind."""

    kind: ReportKind
    envelope_flow_id: str | None
    produced_on: date | None
    sender_id: str
    receiver_id: str
    flow_statuses: tuple[FlowStatusEntry, ...] = ()
    invoice_statuses: tuple[InvoiceStatusEntry, ...] = ()
