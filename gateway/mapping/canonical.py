"""An exported invoice as the canonical invoice: the one model every input maps into
and every output syntax is produced from (``schemas/canonical-invoice.xsd``).

Elements are named after EN 16931 business terms. Amounts that EN 16931 derives
(line net amounts, VAT breakdown, document totals) are computed here, to the cent,
with the rules BR-CO-10…16 check, so that no stylesheet has to do arithmetic.
Pure: an invoice in, XML bytes out.
"""

from __future__ import annotations

import base64
from decimal import Decimal

from lxml import etree

from gateway.amounts import Totals, VatBreakdown, cents, compute_totals, line_net_amount
from gateway.intake.records import ExportedInvoice, Party

NAMESPACE = "urn:chorus-gateway:canonical-invoice:1"

__all__ = ["NAMESPACE", "Totals", "VatBreakdown", "cents", "compute_totals", "line_net_amount", "to_canonical"]


def _amount(value: Decimal) -> str:
    return str(cents(value))


def _number(value: Decimal) -> str:
    """A quantity, price or rate as written: no exponent, no useless trailing zeros.

    >>> _number(Decimal("20.00")), _number(Decimal("1E+1")), _number(Decimal("0.500"))
    ('20', '10', '0.5')
    """
    return format(value.normalize(), "f")


class _Builder:
    """Appends canonical elements; an empty value writes no element."""

    def add(self, parent: etree._Element, name: str, value: str | None) -> None:
        if value:
            etree.SubElement(parent, f"{{{NAMESPACE}}}{name}").text = value

    def group(self, parent: etree._Element, name: str) -> etree._Element:
        return etree.SubElement(parent, f"{{{NAMESPACE}}}{name}")

    def party(self, parent: etree._Element, name: str, party: Party) -> None:
        element = self.group(parent, name)
        self.add(element, "Name", party.name)
        self.add(element, "Siret", party.siret)
        self.add(element, "VatIdentifier", party.vat_id)
        address = self.group(element, "PostalAddress")
        self.add(address, "AddressLine1", party.street)
        self.add(address, "AddressLine2", party.address_line2)
        self.add(address, "City", party.city)
        self.add(address, "PostCode", party.postcode)
        self.add(address, "CountryCode", party.country)


def to_canonical(invoice: ExportedInvoice) -> bytes:
    """The canonical invoice XML of one exported invoice."""
    totals = compute_totals(invoice.lines, invoice.erp_vat)
    root = etree.Element(f"{{{NAMESPACE}}}Invoice", nsmap={None: NAMESPACE})
    b = _Builder()
    b.add(root, "InvoiceNumber", invoice.number)
    b.add(root, "IssueDate", invoice.issue_date.isoformat())
    b.add(root, "InvoiceTypeCode", invoice.type_code)
    b.add(root, "CurrencyCode", invoice.currency)
    b.add(root, "PaymentDueDate", invoice.due_date.isoformat() if invoice.due_date else None)
    b.add(root, "BuyerReference", invoice.service_code)
    b.add(root, "PurchaseOrderReference", invoice.commitment_number)
    b.add(root, "ContractReference", invoice.contract_reference)
    b.add(root, "BusinessProcessType", invoice.cadre)
    if invoice.preceding_invoice:
        preceding = b.group(root, "PrecedingInvoiceReference")
        b.add(preceding, "PrecedingInvoiceNumber", invoice.preceding_invoice)
        b.add(preceding, "PrecedingInvoiceIssueDate",
              invoice.preceding_invoice_date.isoformat() if invoice.preceding_invoice_date else None)
    for attachment in invoice.attachments:
        document = b.group(root, "AdditionalSupportingDocument")
        document.set("role", attachment.role)
        b.add(document, "SupportingDocumentReference", attachment.name)
        b.add(document, "SupportingDocumentDescription", "Facture" if attachment.role == "invoice" else None)
        b.add(document, "AttachedDocument", base64.b64encode(attachment.content).decode("ascii"))
        attached = document[-1]
        attached.set("mimeCode", attachment.mime_type)
        attached.set("filename", attachment.name)
    b.party(root, "Seller", invoice.supplier)
    b.party(root, "Buyer", invoice.buyer)
    b.add(root, "ActualDeliveryDate", invoice.delivery_date.isoformat() if invoice.delivery_date else None)
    b.add(root, "DeliverToCountryCode", invoice.deliver_to_country)
    if invoice.payment_means:
        payment = b.group(root, "PaymentInstructions")
        b.add(payment, "PaymentMeansTypeCode", invoice.payment_means)
        b.add(payment, "PaymentAccountIdentifier", invoice.iban)
    document = b.group(root, "DocumentTotals")
    b.add(document, "SumOfInvoiceLineNetAmount", _amount(totals.sum_of_line_net))
    b.add(document, "InvoiceTotalAmountWithoutVat", _amount(totals.total_without_vat))
    b.add(document, "InvoiceTotalVatAmount", _amount(totals.total_vat))
    b.add(document, "InvoiceTotalAmountWithVat", _amount(totals.total_with_vat))
    b.add(document, "AmountDueForPayment", _amount(totals.amount_due))
    for entry in totals.breakdown:
        vat = b.group(root, "VatBreakdown")
        b.add(vat, "VatCategoryTaxableAmount", _amount(entry.taxable_amount))
        b.add(vat, "VatCategoryTaxAmount", _amount(entry.tax_amount))
        b.add(vat, "VatCategoryCode", entry.category)
        b.add(vat, "VatCategoryRate", _number(entry.rate))
        b.add(vat, "VatExemptionReasonText", entry.exemption_reason)
        b.add(vat, "VatExemptionReasonCode", entry.exemption_code)
    for line in invoice.lines:
        element = b.group(root, "InvoiceLine")
        b.add(element, "InvoiceLineIdentifier", line.line_id)
        b.add(element, "InvoicedQuantity", _number(line.quantity))
        b.add(element, "InvoicedQuantityUnitOfMeasureCode", line.unit_code)
        b.add(element, "InvoiceLineNetAmount", _amount(line_net_amount(line)))
        b.add(element, "ItemNetPrice", _number(line.unit_price))
        b.add(element, "InvoicedItemVatCategoryCode", line.vat_category)
        b.add(element, "InvoicedItemVatRate", _number(line.vat_rate))
        b.add(element, "ItemName", line.item_name)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
