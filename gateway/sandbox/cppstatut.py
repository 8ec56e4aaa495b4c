"""Sandbox stage: write the ``CPPStatut`` documents "Chorus Pro" sends back.

Two writers, the mirror of ``gateway.reports.cppstatut``: a flow status (the
integration report, ``CPPFluxStatuts``) and invoice statuses (the lifecycle,
``CPPFactureStatuts``). Each output is checked against ``schemas/cppstatut.xsd`` before
it is returned, so the sandbox can never answer with a document the gateway's parser
would refuse for its form.

Pure: no I/O. It does not decide which status to send; ``simulator.py`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from lxml import etree

from gateway.domain import FLOW_STATUS_LABELS
from gateway.errors import ReportError
from gateway.reports.cppstatut import format_invoice_description, validate_document
from gateway.reports.model import NATURE_FLOW, NATURE_INVOICE, ErrorLine, InvoiceStatusEntry

#: The Chorus Pro application's partner id, as in the corpus samples.
CHORUS_SENDER_ID = "CPP001"
#: Shown in the envelope so that nobody mistakes a rehearsal file for a real one.
_SENDER_LABEL = "Chorus Pro sandbox (chorus-gateway)"
_SIRET_TYPE = "1"


def invoice_error_line(
    *, invoice_number: str, supplier_id: str | None, buyer_id: str | None, code: str, label: str
) -> ErrorLine:
    """An error line rejecting one invoice of a flow, in the [I] encoding of docs/reports.md.

    >>> invoice_error_line(invoice_number="F-1", supplier_id="73282932000017", buyer_id=None,
    ...                    code="ANNUAIRE", label="x").description
    'numeroFacture=F-1;identifiantFournisseur=73282932000017'
    """
    return ErrorLine(
        nature=NATURE_INVOICE,
        code=code,
        label=label,
        description=format_invoice_description(invoice_number, supplier_id, buyer_id),
        line_id=invoice_number,
        invoice_number=invoice_number,
        supplier_id=supplier_id,
        buyer_id=buyer_id,
    )


def flow_error_line(*, code: str, label: str, description: str | None = None) -> ErrorLine:
    """An error line about the whole flow (``NatureErreur`` = ``FLUX``)."""
    return ErrorLine(nature=NATURE_FLOW, code=code, label=label, description=description)


def flow_status_document(
    *,
    flow_id: str,
    code: str,
    comment: str | None,
    timestamp: datetime,
    errors: Sequence[ErrorLine],
    sender_id: str = CHORUS_SENDER_ID,
    receiver_id: str,
) -> bytes:
    """A ``CPPStatut`` with one flow status (90–96) and its error lines.

    ``flow_id`` is written both as the envelope's ``IdFlx`` and as ``IdFlux``;
    ``ComplementStatut`` carries the code's label. Raises ``ValueError`` for a naive
    timestamp or a code outside the format.
    """
    root = etree.Element("CPPStatut")
    _envelope(root, flow_id=flow_id, produced_on=_aware(timestamp).date(), sender=sender_id, receiver=receiver_id)
    statuses = etree.SubElement(root, "CPPFluxStatuts", compteur="1")
    data = etree.SubElement(etree.SubElement(statuses, "CPPFluxStatutUnitaire", NumOrdre="1"), "DonneesStatut")
    _child(data, "IdStatut", code)
    _child(data, "ComplementStatut", FLOW_STATUS_LABELS.get(code))
    _child(data, "Commentaire", comment)
    _child(data, "Horodatage", _aware(timestamp).isoformat())
    _child(data, "IdFlux", flow_id)
    if errors:
        details = etree.SubElement(data, "Details", NbLignesErreur=str(len(errors)))
        for error in errors:
            _error_line(details, error)
    return _serialise(root)


def invoice_status_document(
    *,
    entries: Sequence[InvoiceStatusEntry],
    flow_id: str,
    produced_on: date,
    sender_id: str = CHORUS_SENDER_ID,
    receiver_id: str,
) -> bytes:
    """A ``CPPStatut`` with invoice statuses (the lifecycle flow), in the given order.

    Raises ``ValueError`` when there is no entry (the format needs one), for a naive
    timestamp, or for anything else the format refuses (a buyer id that is not 14 long).
    """
    if not entries:
        raise ValueError("a CPPFactureStatuts document needs at least one invoice status")
    root = etree.Element("CPPStatut")
    _envelope(root, flow_id=flow_id, produced_on=produced_on, sender=sender_id, receiver=receiver_id)
    statuses = etree.SubElement(root, "CPPFactureStatuts", compteur=str(len(entries)))
    for position, entry in enumerate(entries, start=1):
        _invoice_status(etree.SubElement(statuses, "CPPFactureStatutUnitaire", NumOrdre=str(position)), entry)
    return _serialise(root)


def _envelope(root: etree._Element, *, flow_id: str, produced_on: date, sender: str, receiver: str) -> None:
    unit = etree.SubElement(etree.SubElement(root, "Enveloppe"), "EnveloppeUnitaire", NumOrdre="1")
    params = etree.SubElement(unit, "Parametres")
    for position, (code, value) in enumerate((("DtPrd", produced_on.isoformat()), ("IdFlx", flow_id)), start=1):
        param = etree.SubElement(params, "ParametreIndiv", NumOrdre=f"{position:04d}")
        _child(param, "Code", code)
        _child(param, "Valeurparametre", value)
    partners = etree.SubElement(unit, "Partenaires")
    _child(etree.SubElement(partners, "Recepteur"), "Id", receiver)
    emitter = etree.SubElement(partners, "Emetteur")
    _child(emitter, "Id", sender)
    _child(emitter, "Libelle", _SENDER_LABEL)


def _error_line(details: etree._Element, error: ErrorLine) -> None:
    line = etree.SubElement(details, "LigneErreurDetail")
    if error.line_id is not None:
        line.set("IdLigne", error.line_id)
    description = error.description
    if description is None and error.invoice_number is not None:
        # An invoice line built by hand still travels with the keys the parser reads back.
        description = format_invoice_description(error.invoice_number, error.supplier_id, error.buyer_id)
    _child(line, "NatureErreur", error.nature)
    _child(line, "CodeErreur", error.code)
    _child(line, "LibelleErreur", error.label)
    _child(line, "DescriptionErreur", description)


def _invoice_status(unit: etree._Element, entry: InvoiceStatusEntry) -> None:
    supplier = etree.SubElement(unit, "Fournisseur")
    _child(supplier, "TypeIdentifiant", entry.supplier_id_type)
    _child(supplier, "Identifiant", entry.supplier_id)
    # Required by the format, but the entry has no company name: left empty.
    _child(supplier, "RaisonSociale", "")
    buyer = etree.SubElement(unit, "Debiteur")
    _child(buyer, "TypeIdentifiant", _SIRET_TYPE)
    _child(buyer, "Identifiant", entry.buyer_id)
    data = etree.SubElement(unit, "DonneesStatut")
    _child(data, "IdStatut", entry.code)
    _child(data, "ComplementStatut", entry.label)
    _child(data, "Commentaire", entry.comment)
    _child(data, "Horodatage", _aware(entry.timestamp).isoformat())
    _child(data, "IdFacture", entry.invoice_number)
    if entry.invoice_date is not None:
        _child(data, "DateFacture", entry.invoice_date.isoformat())


def _child(parent: etree._Element, tag: str, text: str | None) -> None:
    """Append ``<tag>text</tag>``; an optional value that is None is simply left out."""
    if text is not None:
        etree.SubElement(parent, tag).text = text


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamp {value.isoformat()} has no timezone; CPPStatut times must be unambiguous")
    return value


def _serialise(root: etree._Element) -> bytes:
    raw = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    try:
        validate_document(raw)
    except ReportError as exc:
        # A bug in the caller (a code outside the format, a bad id), not a runtime condition.
        raise ValueError(f"refusing to write an invalid CPPStatut document: {exc.message}") from exc
    return raw
