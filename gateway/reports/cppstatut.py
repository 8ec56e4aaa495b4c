"""Reports stage: read a ``CPPStatut`` document returned by Chorus Pro.

``parse_report`` parses safely (no DTD, no entity expansion, no network), validates
against the project's own ``schemas/cppstatut.xsd``, then extracts the envelope and the
flow statuses (integration report, ``CPPFluxStatuts``) or the invoice statuses
(lifecycle, ``CPPFactureStatuts``). A document that is not well-formed or not
schema-valid raises ``ReportError`` naming the line and the problem.

It does not decide what a status means, whether a code is known, or which flow or
invoice it names: that is ``gateway.pipeline.reports``. It never touches the store or the disk.

The encoding of per-invoice rejections inside a flow status is inferred [I]: see
``docs/reports.md`` and ``format_invoice_description``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from lxml import etree

from gateway.errors import ReportError
from gateway.reports import model
from gateway.reports.model import (
    NATURE_INVOICE,
    ErrorLine,
    FlowStatusEntry,
    InvoiceStatusEntry,
    ParsedReport,
)
from gateway.resources import schema_path
from gateway.xml import safe

ROOT = "CPPStatut"
SCHEMA_NAME = "cppstatut.xsd"

#: [I] A timestamp without an offset is read as French legal time: Chorus Pro runs in
#: France and the corpus sample without an offset (Example04) says nothing else.
NAIVE_TIMEZONE = ZoneInfo("Europe/Paris")

#: Keys of ``DescriptionErreur`` for a per-invoice rejection, in writing order; the
#: names are those of the API's ``listeErreurDP`` ([I] that EDI uses them too).
INVOICE_NUMBER_KEY = "numeroFacture"
SUPPLIER_KEY = "identifiantFournisseur"
BUYER_KEY = "identifiantDestinataire"
_DESCRIPTION_FIELDS = {
    INVOICE_NUMBER_KEY.lower(): "invoice_number",
    SUPPLIER_KEY.lower(): "supplier_id",
    BUYER_KEY.lower(): "buyer_id",
}
_DESCRIPTION_KEY = re.compile(
    r"(?:^|;)\s*(" + "|".join((INVOICE_NUMBER_KEY, SUPPLIER_KEY, BUYER_KEY)) + r")\s*=",
    re.IGNORECASE,
)


def format_invoice_description(invoice_number: str, supplier_id: str | None, buyer_id: str | None) -> str:
    """``DescriptionErreur`` of a per-invoice rejection ([I], docs/reports.md).

    >>> format_invoice_description("F-1", "73282932000017", None)
    'numeroFacture=F-1;identifiantFournisseur=73282932000017'
    """
    parts = [(INVOICE_NUMBER_KEY, invoice_number), (SUPPLIER_KEY, supplier_id), (BUYER_KEY, buyer_id)]
    return ";".join(f"{key}={value}" for key, value in parts if value is not None)


def parse_invoice_description(text: str | None) -> dict[str, str]:
    """The invoice keys found in a ``DescriptionErreur``, by ErrorLine field name.

    Tolerant: keys in any order or case, spaces around them, free text before the
    first key; a description without keys gives an empty dict.

    >>> parse_invoice_description("numeroFacture=F;1;identifiantFournisseur = 7328")
    {'invoice_number': 'F;1', 'supplier_id': '7328'}
    >>> parse_invoice_description("no keys here")
    {}
    """
    text = text or ""
    matches = list(_DESCRIPTION_KEY.finditer(text))
    found: dict[str, str] = {}
    # A value runs up to the next key, so an invoice number may itself hold ";".
    for match, following in zip(matches, [*matches[1:], None], strict=False):
        end = following.start() if following is not None else len(text)
        value = text[match.end() : end].strip()
        field = _DESCRIPTION_FIELDS[match.group(1).lower()]
        if value and field not in found:
            found[field] = value
    return found


def parse_report(raw: bytes) -> ParsedReport:
    """Parse and validate one ``CPPStatut`` document.

    Raises ``ReportError`` when the bytes are not well-formed XML, carry a DOCTYPE,
    or are not valid against ``schemas/cppstatut.xsd``; the message names the line.
    """
    root = _valid_root(raw)
    envelope = _envelope(root)
    flows = root.find("CPPFluxStatuts")
    if flows is not None:
        entries = tuple(_flow_status(unit) for unit in flows.iterfind("CPPFluxStatutUnitaire"))
        return ParsedReport("flow-status", *envelope, flow_statuses=entries)
    invoices = root.find("CPPFactureStatuts")
    assert invoices is not None  # the schema's choice guarantees one of the two
    statuses = tuple(_invoice_status(unit) for unit in invoices.iterfind("CPPFactureStatutUnitaire"))
    return ParsedReport("invoice-status", *envelope, invoice_statuses=statuses)


# -- parsing and validation --------------------------------------------------------


def _valid_root(raw: bytes) -> etree._Element:
    """The root of a safe (``gateway.xml.safe``), schema-valid ``CPPStatut`` document;
    ``ReportError`` naming the line otherwise."""
    try:
        root = safe.parse(raw, limit=model.MAX_REPORT_BYTES, what="report").getroot()
        safe.assert_valid(root, schema_path(SCHEMA_NAME), "CPPStatut")
    except (safe.UnsafeXml, safe.Invalid) as exc:
        raise ReportError(exc.message) from exc
    return root


def validate_document(raw: bytes) -> None:
    """Check that bytes are a safe, schema-valid ``CPPStatut`` document (or raise ``ReportError``)."""
    _valid_root(raw)


# -- extraction ----------------------------------------------------------------------


def _envelope(root: etree._Element) -> tuple[str | None, date | None, str, str]:
    """(IdFlx, DtPrd, sender, receiver) of the first envelope unit."""
    unit = root.find("Enveloppe/EnveloppeUnitaire")
    params: dict[str, str] = {}
    for param in unit.iterfind("Parametres/ParametreIndiv"):
        params.setdefault(_text(param, "Code") or "", _text(param, "Valeurparametre") or "")
    # DtPrd is a free string in the format: an unreadable one is informational, not fatal.
    produced_on = _lenient_date(params.get("DtPrd"))
    sender = _text(unit, "Partenaires/Emetteur/Id") or ""
    receiver = _text(unit, "Partenaires/Recepteur/Id") or ""
    return params.get("IdFlx") or None, produced_on, sender, receiver


def _flow_status(unit: etree._Element) -> FlowStatusEntry:
    data = unit.find("DonneesStatut")
    return FlowStatusEntry(
        flow_id=_text(data, "IdFlux") or "",
        code=_code(data.find("IdStatut")),
        label=_text(data, "ComplementStatut"),
        comment=_text(data, "Commentaire"),
        timestamp=_timestamp(data.find("Horodatage")),
        errors=tuple(_error_line(line) for line in data.iterfind("Details/LigneErreurDetail")),
    )


def _error_line(line: etree._Element) -> ErrorLine:
    nature = _text(line, "NatureErreur") or ""
    description = _text(line, "DescriptionErreur")
    line_id = (line.get("IdLigne") or "").strip() or None
    keys = parse_invoice_description(description)
    invoice_number = keys.get("invoice_number")
    if invoice_number is None and nature.upper() == NATURE_INVOICE:
        # Tolerance: an invoice line whose description lacks the key still names its invoice.
        invoice_number = line_id
    return ErrorLine(
        nature=nature,
        code=_text(line, "CodeErreur") or "",
        label=_text(line, "LibelleErreur") or "",
        description=description,
        line_id=line_id,
        invoice_number=invoice_number,
        supplier_id=keys.get("supplier_id"),
        buyer_id=keys.get("buyer_id"),
    )


def _invoice_status(unit: etree._Element) -> InvoiceStatusEntry:
    data = unit.find("DonneesStatut")
    invoice_date = data.find("DateFacture")
    return InvoiceStatusEntry(
        supplier_id=_text(unit, "Fournisseur/Identifiant") or "",
        supplier_id_type=str(int(_text(unit, "Fournisseur/TypeIdentifiant") or "0")),
        buyer_id=_text(unit, "Debiteur/Identifiant") or "",
        invoice_number=_text(data, "IdFacture") or "",
        invoice_date=_date(invoice_date) if invoice_date is not None else None,
        code=_code(data.find("IdStatut")),
        label=_text(data, "ComplementStatut"),
        comment=_text(data, "Commentaire"),
        timestamp=_timestamp(data.find("Horodatage")),
    )


def _text(parent: etree._Element, path: str) -> str | None:
    """Stripped text of a child; None when absent or blank."""
    found = parent.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _code(element: etree._Element) -> str:
    # The format types codes as integers ("7" = "07"): normalise to the usual two digits.
    return f"{int(element.text.strip()):02d}"


_DATETIME = re.compile(r"^(?P<date>\d{4}-\d\d-\d\d)T(?P<time>\d\d:\d\d:\d\d)(?P<fraction>\.\d+)?(?P<zone>.*)$")


def _timestamp(element: etree._Element) -> datetime:
    """An xs:dateTime as an aware datetime (naive ones in ``NAIVE_TIMEZONE``)."""
    text = (element.text or "").strip()
    match = _DATETIME.match(text)
    if match is None:
        raise ReportError(f"line {element.sourceline}: {element.tag} {text!r} is outside the supported date range")
    # xs:dateTime allows 24:00:00 (next midnight) and any number of decimals; Python neither.
    midnight = match["time"] == "24:00:00"
    fraction = (match["fraction"] or "")[:7]
    zone = match["zone"]
    try:
        value = datetime.fromisoformat(f"{match['date']}T{'00:00:00' if midnight else match['time']}{fraction}{zone}")
    except ValueError as exc:
        raise ReportError(f"line {element.sourceline}: {element.tag} {text!r}: {exc}") from exc
    if midnight:
        value += timedelta(days=1)
    return value if value.tzinfo is not None else value.replace(tzinfo=NAIVE_TIMEZONE)


def _date(element: etree._Element) -> date:
    """An xs:date; its optional timezone is dropped, since a calendar date has none here."""
    text = (element.text or "").strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError as exc:
        raise ReportError(f"line {element.sourceline}: {element.tag} {text!r}: {exc}") from exc


def _lenient_date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        return None
