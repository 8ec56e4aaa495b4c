"""The invoice as the gateway knows it once read from an export: the model every stage
after intake takes (mapping writes it into each syntax, validation and packaging never
see anything else of the export).

Intake builds it (``gateway.intake``: readers and the checks on values); nothing here
reads files or judges values. Chorus Pro's limits on attachments are here too, so that
intake (reading the ERP's files) and validation (a document received from elsewhere)
refuse the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

#: What an attachment may be: the MIME codes EN 16931 allows for an embedded document
#: (BR-CL-24), which Chorus Pro's extension allow-list also takes (DOMAIN.md §1).
ATTACHMENT_TYPES = {
    "pdf": "application/pdf",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
}
#: DOMAIN.md §1: names ≤ 50 characters, each file < 10 MB, invoice + attachments ≤ 120 MB.
MAX_ATTACHMENT_NAME = 50
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_ATTACHMENTS_TOTAL_BYTES = 120 * 1024 * 1024


@dataclass(frozen=True)
class Attachment:
    """A document sent with the invoice (BG-24), read at intake."""

    name: str  # BT-125 filename, also BT-122
    mime_type: str
    content: bytes
    #: "invoice" for the ERP's PDF of the invoice itself, "supporting" otherwise.
    role: str = "supporting"


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    line_id: str
    item_name: str
    quantity: Decimal
    unit_code: str
    unit_price: Decimal
    vat_category: str
    vat_rate: Decimal
    source_line: int
    vat_exemption_reason: str | None = None
    vat_exemption_code: str | None = None
    #: The ERP's VAT of this line, when it states it (``vat_amount``).
    vat_amount: Decimal | None = None


@dataclass(frozen=True)
class Party:
    siret: str
    name: str
    country: str = "FR"
    street: str | None = None
    city: str | None = None
    postcode: str | None = None
    vat_id: str | None = None
    address_line2: str | None = None  # BT-36 / BT-51


@dataclass(frozen=True)
class ExportedInvoice:
    """One invoice read from an export, typed, before any mapping."""

    file: str
    first_line: int
    number: str
    issue_date: date
    type_code: str
    currency: str
    supplier: Party
    buyer: Party
    lines: tuple[InvoiceLine, ...]
    #: The invoice as the ERP wrote it (CSV: header line + its rows; JSONL: its line),
    #: so that a held-back invoice can be fixed and dropped back in the same format.
    original: str = ""
    due_date: date | None = None
    service_code: str | None = None
    commitment_number: str | None = None
    cadre: str = "A1"
    payment_means: str | None = None
    iban: str | None = None
    contract_reference: str | None = None
    preceding_invoice: str | None = None
    preceding_invoice_date: date | None = None
    attachments: tuple[Attachment, ...] = ()
    delivery_date: date | None = None
    deliver_to_country: str | None = None
    #: VAT per breakdown (category, rate, amount) as the ERP stated it, where it differs
    #: from the recomputed one by per-line rounding only (``vat_rounding = "erp"``);
    #: the other breakdowns are recomputed.
    erp_vat: tuple[tuple[str, Decimal, Decimal], ...] = ()
    #: What the operator should know although the invoice was taken (a value not used…).
    warnings: tuple[str, ...] = ()

    @property
    def supplier_siret(self) -> str:
        return self.supplier.siret

    @property
    def buyer_siret(self) -> str:
        return self.buyer.siret

    @property
    def issue_year(self) -> int:
        return self.issue_date.year
