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


def map_invoice(invoice: ExportedInvoice, syntax: Syntax = Syntax.UBL) -> bytes:
    """The document of ``invoice`` in ``syntax``, ready for validation."""
    canonical = to_canonical(invoice)
    parameters = {"interface-code": FLOW_KINDS[syntax].interface_code}
    return transform(mapping_path(STYLESHEETS[syntax]), canonical, parameters)


__all__ = ["STYLESHEETS", "Totals", "compute_totals", "map_invoice", "to_canonical"]
