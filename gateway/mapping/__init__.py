"""Mapping stage: an exported invoice → the canonical invoice → the target syntax.

Pure: invoice in, document bytes out. The logic that decides where each business
term goes lives in the XSLT of ``mappings/``, so that an integrator can adapt it
without touching Python; Python only computes the derived amounts (``canonical``).
"""

from __future__ import annotations

from gateway.domain import FLOW_KINDS, Syntax
from gateway.intake.csv_export import ExportedInvoice
from gateway.mapping.canonical import Totals, compute_totals, to_canonical
from gateway.mapping.xslt import transform
from gateway.resources import mapping_path

#: The stylesheet that turns the canonical invoice into each syntax.
STYLESHEETS = {Syntax.UBL: "canonical-to-ubl.xsl", Syntax.CII: "canonical-to-cii.xsl"}


def output_extension(syntax: Syntax) -> str:
    """The file extension of one mapped invoice in ``syntax`` (Factur-X is a PDF)."""
    return "pdf" if syntax.value == "facturx" else "xml"


def map_invoice(invoice: ExportedInvoice, syntax: Syntax = Syntax.UBL, *, credit_note_as_invoice: bool = False) -> bytes:
    """The document of ``invoice`` in ``syntax``, ready for validation.

    ``credit_note_as_invoice``: write a UBL credit note (381) as an Invoice of type 381
    instead of a CreditNote, for a partner that wants it so (``[partners.X]``).
    """
    canonical = to_canonical(invoice)
    parameters = {"interface-code": FLOW_KINDS[syntax].interface_code}
    if syntax is Syntax.UBL:
        parameters["credit-note-document"] = "Invoice" if credit_note_as_invoice else "CreditNote"
    return transform(mapping_path(STYLESHEETS[syntax]), canonical, parameters)


__all__ = ["STYLESHEETS", "output_extension", "Totals", "compute_totals", "map_invoice", "to_canonical"]
