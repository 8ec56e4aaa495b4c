"""Mapping stage: an exported invoice → the canonical invoice → the target syntax.

Pure: invoice in, document bytes out. The logic that decides where each business
term goes lives in the XSLT of ``mappings/``, so that an integrator can adapt it
without touching Python; Python only computes the derived amounts (``canonical``).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from gateway.domain import Syntax
from gateway.errors import MappingError
from gateway.invoice import ExportedInvoice
from gateway.mapping.canonical import Totals, compute_totals, to_canonical, write_canonical
from gateway.mapping.facturx import to_facturx
from gateway.resources import mapping_path
from gateway.xml.saxon import IN_MEMORY_BYTES, scratch_directory, transform
from gateway.xml.syntax import SYNTAXES


#: Why a credit note is never written as a UBL Invoice of type 381 (see ``map_invoice``).
CREDIT_NOTE_AS_INVOICE_REFUSED = (
    "a credit note (381) is not written as a UBL Invoice: EN 16931 allows type 381 only in a CreditNote "
    "(BR-CL-01), and the gateway's own validation applies it; send it as a UBL CreditNote (leave out "
    "--credit-note-as-invoice, or remove credit_note_as_invoice from the partner)"
)


def map_invoice(
    invoice: ExportedInvoice,
    syntax: Syntax = Syntax.UBL,
    *,
    credit_note_as_invoice: bool = False,
    partner_code: str | None = None,
) -> bytes:
    """The document of ``invoice`` in ``syntax``, ready for validation.

    ``credit_note_as_invoice``: a credit note (381) in UBL is refused rather than written
    as an Invoice of type 381, which EN 16931 forbids (BR-CL-01: 381 only in a
    CreditNote) and every validation profile applies, so that the reason is this one
    and not a rule finding on every credit note. Other invoices are not affected.
    ``partner_code``: the emitter of a CPP Facture Mixte's envelope (required there).
    """
    known = SYNTAXES[syntax]
    if known.stylesheet is None:  # Factur-X: the CII embedded into the invoice's PDF
        return _facturx(invoice)
    if syntax is Syntax.UBL and credit_note_as_invoice and invoice.type_code == "381":
        raise MappingError(CREDIT_NOTE_AS_INVOICE_REFUSED)
    parameters = {"interface-code": known.interface_code}
    if syntax is Syntax.CPP:
        if not any(attachment.role == "invoice" for attachment in invoice.attachments):
            raise MappingError("a CPP Facture Mixte carries the invoice's own PDF: set invoice_pdf")
        if not partner_code:
            raise MappingError("a CPP Facture Mixte names its emitter: give the partner code (--partner-code)")
        parameters["emetteur-id"] = partner_code
    stylesheet = mapping_path(known.stylesheet)
    if _canonical_size(invoice) <= IN_MEMORY_BYTES:
        return transform(stylesheet, to_canonical(invoice), parameters)
    # A big invoice's canonical XML is written straight to a file Saxon reads, never held.
    with tempfile.NamedTemporaryFile(dir=scratch_directory(), prefix="canonical-", suffix=".xml") as canonical:
        write_canonical(invoice, canonical)
        canonical.flush()
        return transform(stylesheet, Path(canonical.name), parameters)


def _canonical_size(invoice: ExportedInvoice) -> int:
    """A generous estimate of the canonical XML's size: about 350 bytes a line, and the
    attachments as base64."""
    return 4096 + 500 * len(invoice.lines) + sum(len(a.content) * 4 // 3 for a in invoice.attachments)


def _facturx(invoice: ExportedInvoice) -> bytes:
    pdf = [attachment for attachment in invoice.attachments if attachment.role == "invoice"]
    if not pdf:
        raise MappingError("a Factur-X is the invoice's own PDF with its data embedded: set invoice_pdf")
    # The PDF carries the XML, not the other way round: only supporting documents go in it.
    others = tuple(attachment for attachment in invoice.attachments if attachment.role != "invoice")
    cii = map_invoice(replace(invoice, attachments=others), Syntax.CII)
    return to_facturx(cii, pdf[0].content)


__all__ = [
    "CREDIT_NOTE_AS_INVOICE_REFUSED",
    "Totals",
    "compute_totals",
    "map_invoice",
    "to_canonical",
]
