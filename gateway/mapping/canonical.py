"""An exported invoice as the canonical invoice: the one model every input maps into
and every output syntax is produced from (``schemas/canonical-invoice.xsd``).

Elements are named after EN 16931 business terms. Amounts that EN 16931 derives
(line net amounts, VAT breakdown, document totals) are computed here, to the cent,
with the rules BR-CO-10…16 check, so that no stylesheet has to do arithmetic.
Pure: an invoice in, XML bytes out.
"""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, BinaryIO

from lxml import etree

from gateway.amounts import Totals, VatBreakdown, cents, compute_totals, line_net_amount
from gateway.invoice import ExportedInvoice, Party

NAMESPACE = "urn:chorus-gateway:canonical-invoice:1"

__all__ = ["NAMESPACE", "Totals", "VatBreakdown", "cents", "compute_totals", "line_net_amount", "to_canonical",
           "write_canonical"]


def _amount(value: Decimal) -> str:
    return str(cents(value))


def _number(value: Decimal) -> str:
    """A quantity, price or rate as written: no exponent, no useless trailing zeros.

    >>> _number(Decimal("20.00")), _number(Decimal("1E+1")), _number(Decimal("0.500"))
    ('20', '10', '0.5')
    """
    return format(value.normalize(), "f")


class _Writer:
    """Writes canonical elements as they come, so that no tree of a big invoice is
    built (100,000 lines took 300 MB as an lxml tree); an empty value writes no element."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def add(self, name: str, value: str | None, **attributes: str) -> None:
        if value:
            with self.out.element(f"{{{NAMESPACE}}}{name}", attrib=attributes):
                self.out.write(value)

    @contextlib.contextmanager
    def group(self, name: str, **attributes: str) -> Iterator[None]:
        with self.out.element(f"{{{NAMESPACE}}}{name}", attrib=attributes):
            yield

    def party(self, name: str, party: Party) -> None:
        with self.group(name):
            self.add("Name", party.name)
            self.add("Siret", party.siret)
            self.add("VatIdentifier", party.vat_id)
            with self.group("PostalAddress"):
                self.add("AddressLine1", party.street)
                self.add("AddressLine2", party.address_line2)
                self.add("City", party.city)
                self.add("PostCode", party.postcode)
                self.add("CountryCode", party.country)


def to_canonical(invoice: ExportedInvoice) -> bytes:
    """The canonical invoice XML of one exported invoice."""
    buffer = io.BytesIO()
    write_canonical(invoice, buffer)
    return buffer.getvalue()


def write_canonical(invoice: ExportedInvoice, target: BinaryIO) -> None:
    """Write the canonical invoice XML of one exported invoice to ``target`` as it goes."""
    totals = compute_totals(invoice.lines, invoice.erp_vat)
    with etree.xmlfile(target, encoding="UTF-8") as out:
        out.write_declaration()
        with out.element(f"{{{NAMESPACE}}}Invoice", nsmap={None: NAMESPACE}):
            _write(_Writer(out), invoice, totals)


def _write(w: _Writer, invoice: ExportedInvoice, totals: Totals) -> None:
    w.add("InvoiceNumber", invoice.number)
    w.add("IssueDate", invoice.issue_date.isoformat())
    w.add("InvoiceTypeCode", invoice.type_code)
    w.add("CurrencyCode", invoice.currency)
    w.add("PaymentDueDate", invoice.due_date.isoformat() if invoice.due_date else None)
    w.add("BuyerReference", invoice.service_code)
    w.add("PurchaseOrderReference", invoice.commitment_number)
    w.add("ContractReference", invoice.contract_reference)
    w.add("BusinessProcessType", invoice.cadre)
    if invoice.preceding_invoice:
        with w.group("PrecedingInvoiceReference"):
            w.add("PrecedingInvoiceNumber", invoice.preceding_invoice)
            w.add("PrecedingInvoiceIssueDate",
                  invoice.preceding_invoice_date.isoformat() if invoice.preceding_invoice_date else None)
    for attachment in invoice.attachments:
        with w.group("AdditionalSupportingDocument", role=attachment.role):
            w.add("SupportingDocumentReference", attachment.name)
            w.add("SupportingDocumentDescription", "Facture" if attachment.role == "invoice" else None)
            w.add("AttachedDocument", base64.b64encode(attachment.content).decode("ascii"),
                  mimeCode=attachment.mime_type, filename=attachment.name)
    w.party("Seller", invoice.supplier)
    w.party("Buyer", invoice.buyer)
    w.add("ActualDeliveryDate", invoice.delivery_date.isoformat() if invoice.delivery_date else None)
    w.add("DeliverToCountryCode", invoice.deliver_to_country)
    if invoice.payment_means:
        with w.group("PaymentInstructions"):
            w.add("PaymentMeansTypeCode", invoice.payment_means)
            w.add("PaymentAccountIdentifier", invoice.iban)
    with w.group("DocumentTotals"):
        w.add("SumOfInvoiceLineNetAmount", _amount(totals.sum_of_line_net))
        w.add("InvoiceTotalAmountWithoutVat", _amount(totals.total_without_vat))
        w.add("InvoiceTotalVatAmount", _amount(totals.total_vat))
        w.add("InvoiceTotalAmountWithVat", _amount(totals.total_with_vat))
        w.add("AmountDueForPayment", _amount(totals.amount_due))
    for entry in totals.breakdown:
        with w.group("VatBreakdown"):
            w.add("VatCategoryTaxableAmount", _amount(entry.taxable_amount))
            w.add("VatCategoryTaxAmount", _amount(entry.tax_amount))
            w.add("VatCategoryCode", entry.category)
            w.add("VatCategoryRate", _number(entry.rate))
            w.add("VatExemptionReasonText", entry.exemption_reason)
            w.add("VatExemptionReasonCode", entry.exemption_code)
    for line in invoice.lines:
        with w.group("InvoiceLine"):
            w.add("InvoiceLineIdentifier", line.line_id)
            w.add("InvoicedQuantity", _number(line.quantity))
            w.add("InvoicedQuantityUnitOfMeasureCode", line.unit_code)
            w.add("InvoiceLineNetAmount", _amount(line_net_amount(line)))
            w.add("ItemNetPrice", _number(line.unit_price))
            w.add("InvoicedItemVatCategoryCode", line.vat_category)
            w.add("InvoicedItemVatRate", _number(line.vat_rate))
            w.add("ItemName", line.item_name)
