"""What every ERP export format is read into: one typed invoice (``gateway.invoice``), or
the reasons it could not be.

The field vocabulary (column names of the CSV, keys of the JSON Lines) and the
checks on values are shared by all readers, so that an invoice is judged the same
whichever way it arrived. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import iso4217

from gateway.amounts import Totals, compute_totals
from gateway.errors import InputError
from gateway.intake.attachments import ATTACHMENT_SEPARATOR, read_attachment
from gateway.invoice import MAX_ATTACHMENTS_TOTAL_BYTES, Attachment, ExportedInvoice, InvoiceLine, Party

#: Fields that describe the invoice as a whole (repeated on each CSV row, and equal).
HEADER_FIELDS = (
    "invoice_number",  # BT-1
    "issue_date",  # BT-2
    "type_code",  # BT-3: 380 invoice, 381 credit note
    "currency",  # BT-5
    "due_date",  # BT-9
    "service_code",  # BT-10 (Chorus Pro "code service")
    "commitment_number",  # BT-13 (Chorus Pro "numéro d'engagement")
    "contract_reference",  # BT-12 (Chorus Pro "numéro de marché")
    "cadre",  # BT-23 (Chorus Pro "cadre de facturation"): A1, A2, A9, …
    "supplier_siret",  # BT-29/BT-30, scheme 0009
    "supplier_name",  # BT-27
    "supplier_vat",  # BT-31
    "supplier_street",  # BT-35
    "supplier_address_line2",  # BT-36
    "supplier_city",  # BT-37
    "supplier_postcode",  # BT-38
    "supplier_country",  # BT-40
    "buyer_siret",  # BT-46/BT-47, scheme 0009
    "buyer_name",  # BT-44
    "buyer_vat",  # BT-48
    "buyer_street",  # BT-50
    "buyer_address_line2",  # BT-51
    "buyer_city",  # BT-52
    "buyer_postcode",  # BT-53
    "buyer_country",  # BT-55
    "delivery_date",  # BT-72: actual delivery date
    "deliver_to_country",  # BT-80: deliver-to country code
    "payment_means",  # BT-81
    "iban",  # BT-84
    "preceding_invoice",  # BT-25: the invoice a credit note corrects
    "preceding_invoice_date",  # BT-26
    "invoice_pdf",  # BG-24: the ERP's PDF of this invoice (a file name)
    "attachments",  # BG-24: supporting documents, file names separated by "|"
    "total_without_vat",  # BT-109 as the ERP computed it, checked to the cent
    "total_vat",  # BT-110: checked to the cent, or within per-line rounding (vat_rounding)
    "total_with_vat",  # BT-112, likewise
)
#: Fields of one invoice line.
LINE_FIELDS = (
    "line_id",  # BT-126
    "item_name",  # BT-153
    "quantity",  # BT-129
    "unit_code",  # BT-130
    "unit_price",  # BT-146
    "vat_category",  # BT-151
    "vat_rate",  # BT-152
    "vat_exemption_reason",  # BT-120, for categories E, AE, K, G, O
    "vat_exemption_code",  # BT-121 (VATEX list), likewise
    "vat_amount",  # the ERP's VAT of the line: its lines' sum is the ERP's BT-117 (vat_rounding)
)
ALL_FIELDS = HEADER_FIELDS + LINE_FIELDS
#: Fields without which no invoice can be built (a CSV header must name them all).
REQUIRED_FIELDS = (
    "invoice_number",
    "issue_date",
    "supplier_siret",
    "supplier_name",
    "buyer_siret",
    "buyer_name",
    "item_name",
    "quantity",
    "unit_price",
    "vat_rate",
)
#: The value an empty optional field takes.
DEFAULTS = {
    "type_code": "380",
    "currency": "EUR",
    "cadre": "A1",
    "supplier_country": "FR",
    "buyer_country": "FR",
    "unit_code": "C62",  # UN/ECE rec. 20 "one"
    "vat_category": "S",
}
#: The field a validation rule speaks of, so that a held-back invoice's reason names
#: the field the ERP team has to fix, not only an XPath of the mapped document.
COLUMN_OF_RULE = {
    "CHORUS-SIRET-SUPPLIER": "supplier_siret",
    "CHORUS-SIRET-BUYER": "buyer_siret",
    "CHORUS-BUYER-UNKNOWN": "buyer_siret",
    "CHORUS-BUYER-INACTIVE": "buyer_siret",
    "CHORUS-CADRE": "cadre",
    "CHORUS-CADRE-MISSING": "cadre",
    "CHORUS-SERVICE-REQUIRED": "service_code",
    "CHORUS-SERVICE-UNKNOWN": "service_code",
    "CHORUS-SERVICE-INACTIVE": "service_code",
    "CHORUS-COMMITMENT-REQUIRED": "commitment_number",
    "CHORUS-SERVICE-OR-COMMITMENT": "service_code",
    "CHORUS-IBAN-MISSING": "iban",
    "CHORUS-IBAN-INVALID": "iban",
    "CHORUS-CREDIT-NOTE-PAYMENT-MEANS": "payment_means",
    "CHORUS-NUMBER-LENGTH": "invoice_number",
    "CHORUS-DUPLICATE": "invoice_number",
    "CHORUS-ATTACHMENT-NAME": "attachments",
    "CHORUS-ATTACHMENT-EXTENSION": "attachments",
    "CHORUS-ATTACHMENT-CONTENT": "attachments",
    "CHORUS-ATTACHMENT-SIZE": "attachments",
    "CHORUS-ATTACHMENTS-TOTAL": "attachments",
}
#: UNTDID 1001 codes Chorus Pro takes for an invoice (380) or a credit note (381), and
#: the corrective (384) and prepayment (386) invoices EN 16931 allows.
TYPE_CODES = frozenset({"380", "381", "384", "386"})
#: UNTDID 5305 as restricted by EN 16931 (BT-151).
VAT_CATEGORIES = frozenset({"S", "Z", "E", "AE", "K", "G", "O", "L", "M"})
#: Categories whose rate is 0 by definition (EN 16931 BR-Z/E/AE/IC/G/O rules).
ZERO_RATE_CATEGORIES = frozenset({"Z", "E", "AE", "K", "G", "O"})
#: DOMAIN.md §1: at most 19 digits and 6 decimals.
_MAX_DIGITS = 19
_MAX_DECIMALS = 6
#: ISO 4217 alpha codes (EN 16931 BR-CL-03/04), from the ``iso4217`` package factur-x
#: already brings.
CURRENCIES = frozenset(currency.code for currency in iso4217.Currency)
_COUNTRY = re.compile(r"^[A-Z]{2}$")
#: What a number looks like in an export: digits, one optional decimal separator, an
#: optional leading sign. ``1_000``, ``1E3`` or ``Infinity``, which Decimal would take,
#: are refused: an ERP never means them, and a typo must not become an amount.
_PLAIN_NUMBER = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$")
#: DOMAIN.md §3: A1–A25, no A11.
_CADRE = re.compile(r"^A([1-9]|10|1[2-9]|2[0-5])$")
#: UNTDID 4461 payment means codes are numbers of one or two digits (ZZZ: mutually defined).
_PAYMENT_MEANS = re.compile(r"^([0-9]{1,2}|ZZZ)$")
#: How a channel treats the VAT the ERP states (``[channels.X] vat_rounding``): "erp"
#: sends the ERP's VAT per rate when per-line rounding explains its difference from
#: the VAT recomputed per rate (BR-CO-17 tolerates it); "recompute" sends the recomputed
#: VAT and holds back an invoice whose stated VAT differs by a cent.
VAT_ROUNDING_POLICIES = ("erp", "recompute")
#: Per-line rounding moves a rate's VAT by at most half a cent per line (and the
#: recomputation by half a cent more): a cent per line of the breakdown covers it.
_ROUNDING_PER_LINE = Decimal("0.01")
#: BR-CO-17 as the official EN 16931 Schematron tests it: the VAT of a breakdown within
#: less than one unit of the currency of the recomputed one (UBL: strictly less).
_BR_CO_17_LIMIT = Decimal("0.99")
#: Categories whose VAT breakdown must say why no VAT is due (EN 16931 BR-E-10,
#: BR-AE-10, BR-IC-10, BR-G-10, BR-O-10); the others must not (BR-S-10, BR-Z-10…).
EXEMPT_CATEGORIES = frozenset({"E", "AE", "K", "G", "O"})


#: Per-invoice limits (``[channels.X] max_lines_per_invoice`` and ``max_invoice_bytes``):
#: a reader refuses an invoice beyond them while streaming its rows, before memory is spent
#: on it. 100,000 lines is the size ``benchmarks/bench_big_invoice.py`` keeps under 600 MB;
#: 64 MiB of export text leaves such an invoice over 600 bytes a row (header fields repeated).
DEFAULT_MAX_LINES_PER_INVOICE = 100_000
DEFAULT_MAX_INVOICE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class InvoiceLimits:
    """How big one invoice of an export may be: its lines, and its bytes as the ERP wrote
    them (CSV: its rows; JSON Lines: its line; XML: its element)."""

    max_lines: int = DEFAULT_MAX_LINES_PER_INVOICE
    max_bytes: int = DEFAULT_MAX_INVOICE_BYTES


def oversized(
    file: str,
    first: SourceRow,
    *,
    lines: int | None,
    size: int | None,
    limits: InvoiceLimits,
    at: SourceRow,
    field: str | None,
    where: str,
) -> RejectedRecord:
    """An invoice held back because it is beyond ``limits`` (``lines``: the line count
    passed, else ``size``: its bytes in all): read no further than ``at``, its rows and
    their text dropped. ``where`` says where its rows are in the export, since the
    held-back copy cannot hold them (``original`` is empty)."""
    number = first.values.get("invoice_number") or None
    if lines is not None:
        what = f"has more than {limits.max_lines} lines, the channel's max_lines_per_invoice"
        key = "max_lines_per_invoice"
    else:
        what = f"weighs {size} bytes in the export, more than the channel's max_invoice_bytes ({limits.max_bytes})"
        key = "max_invoice_bytes"
    message = (f"invoice {number or '(no number)'} {what}: held back unread from here on; {where}. If it is "
               f"genuine, raise [channels.<name>] {key} and drop its rows in a file of their own")
    return RejectedRecord(
        file=file,
        first_line=first.line,
        invoice_number=number,
        supplier_siret=first.values.get("supplier_siret") or None,
        errors=(InputError(message, file=file, line=at.line or None, field=field, xpath=at.xpath),),
    )


@dataclass(frozen=True)
class ReadOptions:
    """How values are written: decimal separator and date format."""

    decimal: str = "."
    date_format: str = "%Y-%m-%d"
    #: Where the files named by ``invoice_pdf`` and ``attachments`` are read from;
    #: None refuses any attachment (nothing says where to find it).
    attachment_dir: Path | None = None
    #: One of ``VAT_ROUNDING_POLICIES``.
    vat_rounding: str = "erp"
    limits: InvoiceLimits = InvoiceLimits()


@dataclass(frozen=True)
class RejectedRecord:
    """An invoice whose data could not be read; held back with every problem found."""

    file: str
    first_line: int
    invoice_number: str | None
    supplier_siret: str | None
    errors: tuple[InputError, ...]
    original: str = ""


@dataclass(frozen=True, slots=True)
class SourceRow:
    """The values of one row (CSV) or one line item (JSONL) with where they came from.

    ``prefix`` is put before line-field names in errors (``lines[2].`` in JSON Lines),
    so that an error points at the right item when several share a physical line.
    """

    line: int
    values: dict[str, str]
    prefix: str = ""
    #: The XPath of the source element, for XML exports (``line`` is then its line, or 0).
    xpath: str | None = None


class _Collector:
    """Gathers every problem of one invoice instead of stopping at the first."""

    def __init__(self, file: str, options: ReadOptions) -> None:
        self.file = file
        self.options = options
        self.errors: list[InputError] = []
        # Values repeat from line to line (a rate, a unit, an item, a price): each line of
        # a big invoice shares one object per distinct text instead of holding its own.
        self._texts: dict[str, str] = {}
        self._numbers: dict[str, Decimal] = {}

    def fail(self, message: str, row: SourceRow, name: str) -> None:
        line = row.line or None
        self.errors.append(InputError(message, file=self.file, line=line, field=name, xpath=row.xpath))

    def text(self, row: SourceRow, name: str, *, required: bool = False, label: str | None = None) -> str | None:
        value = row.values.get(name, "") or DEFAULTS.get(name, "")
        if not value:
            if required:
                self.fail("mandatory field is empty", row, label or name)
            return None
        return _shared(self._texts, value, value)

    def number(self, row: SourceRow, name: str, label: str, *, required: bool = True) -> Decimal | None:
        text = self.text(row, name, required=required, label=label)
        if text is None:
            return None
        known = self._numbers.get(text)
        if known is not None:
            return known
        value = self._parse_number(row, text, label)
        return value if value is None else _shared(self._numbers, text, value)

    def _parse_number(self, row: SourceRow, text: str, label: str) -> Decimal | None:
        decimal = self.options.decimal
        other = "," if decimal == "." else "."
        if other in text:
            self.fail(f"{text!r} is not a number with decimal separator {decimal!r}", row, label)
            return None
        plain = text.replace(decimal, ".")
        value = None
        if _PLAIN_NUMBER.match(plain):
            try:
                value = Decimal(plain)
            except InvalidOperation:
                value = None
        if value is None or not value.is_finite():
            self.fail(f"{text!r} is not a number", row, label)
            return None
        _sign, digits, exponent = value.as_tuple()
        decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        if decimals > _MAX_DECIMALS or len(digits) > _MAX_DIGITS:
            self.fail(
                f"{text!r} has more than {_MAX_DIGITS} digits or {_MAX_DECIMALS} decimals (Chorus Pro's limit)",
                row,
                label,
            )
            return None
        return value

    def date(self, row: SourceRow, name: str, *, required: bool) -> date | None:
        text = self.text(row, name, required=required)
        if text is None:
            return None
        try:
            return datetime.strptime(text, self.options.date_format).date()
        except ValueError:
            self.fail(f"{text!r} is not a date in the format {self.options.date_format!r}", row, name)
            return None

    def code(self, row: SourceRow, name: str, allowed: frozenset[str] | re.Pattern[str], label: str = "") -> str:
        value = (self.text(row, name, required=True, label=label or name) or "").upper()
        ok = value in allowed if isinstance(allowed, frozenset) else bool(allowed.match(value))
        if value and not ok:
            expected = ", ".join(sorted(allowed)) if isinstance(allowed, frozenset) else allowed.pattern
            self.fail(f"{value!r} is not an accepted code (expected {expected})", row, label or name)
        return value


def assemble(file: str, rows: list[SourceRow], original: str, options: ReadOptions) -> ExportedInvoice | RejectedRecord:
    """One invoice from its rows (the first row's header fields are the invoice's)."""
    assembler = InvoiceAssembler(file, options)
    for row in rows:
        assembler.add(row)
    return assembler.finish(original)


#: How many distinct values ``_Collector`` shares per invoice: beyond, values are kept as read.
_SHARED_VALUES = 4096


def _shared(known: dict[str, Any], key: str, value: Any) -> Any:
    """The object already kept for ``key``, else ``value``, kept while there is room."""
    found = known.get(key)
    if found is not None:
        return found
    if len(known) < _SHARED_VALUES:
        known[key] = value
    return value


#: The values of a row once its line is built: only where it came from is kept.
_NO_VALUES: dict[str, str] = {}


class InvoiceAssembler:
    """One invoice built row by row, so that a reader streaming a big invoice holds its
    typed lines, not the text of its rows: each row is checked and turned into its line
    as it comes, and only where it came from is kept (for the checks across lines).

    The problems are reported in the same order as if all rows had been read first:
    header fields that differ between rows, the invoice's fields, then each line's.
    """

    def __init__(self, file: str, options: ReadOptions) -> None:
        self.file = file
        self.options = options
        self._first: SourceRow | None = None
        self._differing = _Collector(file, options)
        self._line_problems = _Collector(file, options)
        #: Where each line came from (values dropped after the first row's).
        self._rows: list[SourceRow] = []
        self._lines: list[InvoiceLine | None] = []

    @property
    def line_count(self) -> int:
        return len(self._lines)

    def add(self, row: SourceRow) -> None:
        first = self._first
        if first is None:
            self._first = first = row
        else:
            for name in HEADER_FIELDS:
                if name in row.values and row.values[name] != first.values.get(name):
                    self._differing.fail(
                        f"{row.values[name]!r} differs from {first.values.get(name)!r} "
                        f"on {first.xpath or f'line {first.line}'} of the same invoice",
                        row,
                        name,
                    )
        self._lines.append(_line(self._line_problems, row, len(self._lines) + 1))
        self._rows.append(row if row is first else SourceRow(row.line, _NO_VALUES, row.prefix, row.xpath))

    def finish(self, original: str) -> ExportedInvoice | RejectedRecord:
        first = self._first
        if first is None:
            raise ValueError("an invoice needs at least one row")
        file, rows, lines = self.file, self._rows, self._lines
        check = _Collector(file, self.options)
        check.errors = self._differing.errors
        number = check.text(first, "invoice_number", required=True)
        supplier = _party(check, first, "supplier")
        buyer = _party(check, first, "buyer")
        issue_date = check.date(first, "issue_date", required=True)
        due_date = check.date(first, "due_date", required=False)
        type_code = check.code(first, "type_code", TYPE_CODES)
        currency = _currency(check, first)
        cadre = check.code(first, "cadre", _CADRE)
        check.errors += self._line_problems.errors
        payment_means = _payment_means(check, first)
        preceding_invoice = check.text(first, "preceding_invoice")
        preceding_invoice_date = check.date(first, "preceding_invoice_date", required=False)
        if preceding_invoice_date is not None and preceding_invoice is None:
            check.fail("a preceding invoice date needs the preceding invoice's number", first, "preceding_invoice")
        attachments = _attachments(check, first)
        delivery_date = check.date(first, "delivery_date", required=False)
        deliver_to = (check.text(first, "deliver_to_country") or "").upper() or None
        if deliver_to is not None and not _COUNTRY.match(deliver_to):
            check.fail(f"{deliver_to!r} is not an accepted code (expected {_COUNTRY.pattern})", first,
                       "deliver_to_country")
        if any(line is not None and line.vat_category == "K" for line in lines):
            # Intra-community supply: EN 16931 BR-IC-11 and BR-IC-12.
            if delivery_date is None:
                check.fail("VAT category K (intra-community supply) needs the actual delivery date (BR-IC-11)",
                           first, "delivery_date")
            if deliver_to is None:
                check.fail("VAT category K (intra-community supply) needs the deliver-to country (BR-IC-12)",
                           first, "deliver_to_country")
        erp_vat: tuple[tuple[str, Decimal, Decimal], ...] = ()
        if None not in lines:
            _check_exemption_reasons(check, rows, lines)
            erp_vat = _check_stated_totals(check, rows, [line for line in lines if line is not None])
        rejected = check.errors or None in lines
        if rejected or number is None or supplier is None or buyer is None or issue_date is None:
            return RejectedRecord(
                file=file,
                first_line=first.line,
                invoice_number=first.values.get("invoice_number") or None,
                supplier_siret=first.values.get("supplier_siret") or None,
                errors=tuple(check.errors),
                original=original,
            )
        return ExportedInvoice(
            file=file,
            first_line=first.line,
            number=number,
            issue_date=issue_date,
            type_code=type_code,
            currency=currency,
            supplier=supplier,
            buyer=buyer,
            lines=tuple(line for line in lines if line is not None),
            original=original,
            due_date=due_date,
            service_code=check.text(first, "service_code"),
            commitment_number=check.text(first, "commitment_number"),
            cadre=cadre,
            payment_means=payment_means,
            iban=(check.text(first, "iban") or "").replace(" ", "") or None,
            contract_reference=check.text(first, "contract_reference"),
            preceding_invoice=preceding_invoice,
            preceding_invoice_date=preceding_invoice_date,
            attachments=attachments,
            delivery_date=delivery_date,
            deliver_to_country=deliver_to,
            erp_vat=erp_vat,
        )


def _currency(check: _Collector, row: SourceRow) -> str:
    value = (check.text(row, "currency", required=True) or "").upper()
    if value and value not in CURRENCIES:
        check.fail(f"{value!r} is not an ISO 4217 currency code (e.g. EUR, USD, CHF)", row, "currency")
    return value


def _payment_means(check: _Collector, row: SourceRow) -> str | None:
    means = check.text(row, "payment_means")
    if means is not None and not _PAYMENT_MEANS.match(means):
        check.fail(f"{means!r} is not a UNTDID 4461 payment means code (e.g. 30, 31, 42, 58)", row, "payment_means")
    if means is None and check.text(row, "iban"):
        # Without a payment means EN 16931 has no place for the account (BG-16/BG-17):
        # the IBAN would vanish from the invoice.
        check.fail("an IBAN is given without a payment means; set payment_means (30 credit transfer, "
                   "58 SEPA credit transfer, …) or clear iban", row, "payment_means")
    return means


def _attachments(check: _Collector, row: SourceRow) -> tuple[Attachment, ...]:
    """The files named by ``invoice_pdf`` and ``attachments``, read and checked."""
    wanted = [(name, "invoice", "invoice_pdf") for name in [check.text(row, "invoice_pdf")] if name]
    listed = check.text(row, "attachments") or ""
    wanted += [(name.strip(), "supporting", "attachments") for name in listed.split(ATTACHMENT_SEPARATOR)
               if name.strip()]
    found: list[Attachment] = []
    total = 0
    for name, role, field_name in wanted:
        attachment = read_attachment(check.options.attachment_dir, name, role)
        if isinstance(attachment, str):
            check.fail(f"attachment {name!r} {attachment}", row, field_name)
            continue
        found.append(attachment)
        total += len(attachment.content)
    if total > MAX_ATTACHMENTS_TOTAL_BYTES:
        check.fail(f"the attachments weigh {total} bytes together, over Chorus Pro's limit of "
                   f"{MAX_ATTACHMENTS_TOTAL_BYTES} bytes per invoice", row, "attachments")
    names = [attachment.name for attachment in found]
    for name in sorted({name for name in names if names.count(name) > 1}):
        check.fail(f"{name!r} is attached twice", row, "attachments")
    return tuple(found)


def _check_exemption_reasons(check: _Collector, rows: list[SourceRow], lines: list[InvoiceLine | None]) -> None:
    """One exemption reason per VAT breakdown, present exactly where EN 16931 wants one."""
    seen: dict[tuple[str, Decimal], tuple[str | None, str | None, SourceRow]] = {}
    for row, line in zip(rows, lines, strict=True):
        if line is None:
            continue
        label = row.prefix + "vat_exemption_reason"
        reason = (line.vat_exemption_reason, line.vat_exemption_code)
        if line.vat_category in EXEMPT_CATEGORIES and reason == (None, None):
            check.fail(f"VAT category {line.vat_category} needs an exemption reason (BT-120) or a VATEX code "
                       f"in vat_exemption_code (BT-121) (EN 16931 BR-{_RULE_PREFIX[line.vat_category]}-10)",
                       row, label)
        elif line.vat_category not in EXEMPT_CATEGORIES and reason != (None, None):
            check.fail(f"VAT category {line.vat_category} takes no exemption reason (EN 16931 "
                       f"BR-{_RULE_PREFIX.get(line.vat_category, line.vat_category)}-10)", row, label)
        key = (line.vat_category, line.vat_rate.normalize())
        if key in seen and seen[key][:2] != reason and line.vat_category in EXEMPT_CATEGORIES:
            check.fail(f"exemption reason {reason[0] or reason[1]!r} differs from "
                       f"{seen[key][0] or seen[key][1]!r} on {_where(seen[key][2])} for the same VAT category "
                       "and rate: EN 16931 has one reason per VAT breakdown", row, label)
        seen.setdefault(key, (*reason, row))


_RULE_PREFIX = {"E": "E", "AE": "AE", "K": "IC", "G": "G", "O": "O", "S": "S", "Z": "Z", "L": "AF", "M": "AG"}


def _where(row: SourceRow) -> str:
    return row.xpath or f"line {row.line}"


def _check_stated_totals(
    check: _Collector, rows: list[SourceRow], lines: list[InvoiceLine]
) -> tuple[tuple[str, Decimal, Decimal], ...]:
    """The ERP's own totals, when it gives them, checked against those EN 16931
    computes; returns the ERP's VAT per breakdown that is to be sent instead of the
    recomputed one (channel policy ``vat_rounding``).

    Amounts without VAT are exact (BR-CO-13). The VAT of a breakdown may differ by
    per-line rounding only (BR-CO-17); the total VAT is then the sum of the breakdowns
    sent (BR-CO-14), and the total with VAT the sum of both totals (BR-CO-15).
    """
    first = rows[0]
    totals = compute_totals(lines)
    stated = {name: check.number(first, name, name, required=False)
              for name in ("total_without_vat", "total_vat", "total_with_vat")}
    erp: dict[tuple[str, Decimal], Decimal] = {}
    errors_before = len(check.errors)
    if check.options.vat_rounding == "erp":
        erp = _erp_vat(check, rows, lines, stated["total_vat"], totals)
    vat = sum((erp.get((b.category, b.rate), b.tax_amount) for b in totals.breakdown), Decimal("0.00"))
    expected = {
        "total_without_vat": (totals.total_without_vat, "BR-CO-13"),
        "total_vat": (vat, "BR-CO-14"),
        "total_with_vat": (totals.total_without_vat + vat, "BR-CO-15"),
    }
    if len(check.errors) > errors_before:
        # The ERP's VAT was refused: totals built on it would only repeat the reason.
        del expected["total_vat"], expected["total_with_vat"]
    for name, (value, rule) in expected.items():
        if stated[name] is not None and stated[name] != value:
            how = "the VAT of its rates as sent" if erp and name != "total_without_vat" else "lines rounded to the cent"
            check.fail(f"the ERP's total {stated[name]} differs from the computed {value} ({how}, EN 16931 {rule})",
                       first, name)
    return tuple((category, rate, amount) for (category, rate), amount in erp.items()
                 if amount != _recomputed(totals, category, rate))


def _erp_vat(
    check: _Collector,
    rows: list[SourceRow],
    lines: list[InvoiceLine],
    total_vat: Decimal | None,
    totals: Totals,
) -> dict[tuple[str, Decimal], Decimal]:
    """The VAT of each breakdown as the ERP states it: the sum of its lines' vat_amount,
    or the stated total VAT when there is a single breakdown; each within what
    per-line rounding explains, else the invoice is held back naming BR-CO-17."""
    members: dict[tuple[str, Decimal], list[int]] = {}
    for index, line in enumerate(lines):
        members.setdefault((line.vat_category, line.vat_rate.normalize()), []).append(index)
    erp: dict[tuple[str, Decimal], Decimal] = {}
    field = "vat_amount"
    line_vat = [line.vat_amount for line in lines]
    if any(amount is not None for amount in line_vat):
        missing = [index for index, amount in enumerate(line_vat) if amount is None]
        if missing:
            row = rows[missing[0]]
            check.fail("the other lines state their VAT: give vat_amount on every line of the invoice, or on none",
                       row, row.prefix + field)
            return {}
        for key, indexes in members.items():
            erp[key] = sum((line_vat[index] or Decimal(0) for index in indexes), Decimal("0.00"))
    elif total_vat is not None and total_vat != totals.total_vat:
        if len(members) > 1:
            # Which rate's VAT differs cannot be told from the total alone.
            check.fail(f"the ERP's total VAT {total_vat} differs from the computed {totals.total_vat}, and with "
                       f"{len(members)} VAT rates the VAT of each rate is needed to send the ERP's: give vat_amount "
                       "on each line (EN 16931 BR-CO-14)", rows[0], "total_vat")
            return {}
        erp = {next(iter(members)): total_vat}
        field = "total_vat"
    for key, amount in erp.items():
        category, rate = key
        computed = _recomputed(totals, category, rate)
        indexes = members[key]
        row = rows[indexes[0]] if field == "vat_amount" else rows[0]
        label = row.prefix + field if field == "vat_amount" else field
        if rate == 0:
            if amount != 0:
                rule = f"BR-{_RULE_PREFIX.get(category, category)}-09"
                check.fail(f"the ERP's VAT {amount} for category {category} at 0 % must be 0 (EN 16931 {rule})",
                           row, label)
            continue
        tolerance = min(_ROUNDING_PER_LINE * len(indexes), _BR_CO_17_LIMIT)
        if abs(amount - computed) > tolerance:
            check.fail(f"the ERP's VAT {amount} for {category} {format(rate, 'f')} % differs from the computed "
                       f"{computed} by {abs(amount - computed)}, more than rounding its {len(indexes)} line(s) "
                       f"one by one explains ({tolerance}) (EN 16931 BR-CO-17)", row, label)
    return erp


def _recomputed(totals: Totals, category: str, rate: Decimal) -> Decimal:
    return next(b.tax_amount for b in totals.breakdown if (b.category, b.rate) == (category, rate))


def _party(check: _Collector, row: SourceRow, role: str) -> Party | None:
    siret = check.text(row, f"{role}_siret", required=True)
    name = check.text(row, f"{role}_name", required=True)
    country = check.code(row, f"{role}_country", _COUNTRY)
    if siret is None or name is None:
        return None
    return Party(
        siret=siret.replace(" ", ""),
        name=name,
        country=country,
        street=check.text(row, f"{role}_street"),
        address_line2=check.text(row, f"{role}_address_line2"),
        city=check.text(row, f"{role}_city"),
        postcode=check.text(row, f"{role}_postcode"),
        vat_id=check.text(row, f"{role}_vat"),
    )


def _line(check: _Collector, row: SourceRow, position: int) -> InvoiceLine | None:
    errors_before = len(check.errors)
    label = {name: row.prefix + name for name in LINE_FIELDS}
    item_name = check.text(row, "item_name", required=True, label=label["item_name"])
    quantity = check.number(row, "quantity", label["quantity"])
    unit_price = check.number(row, "unit_price", label["unit_price"])
    rate = check.number(row, "vat_rate", label["vat_rate"])
    vat_amount = check.number(row, "vat_amount", label["vat_amount"], required=False)
    category = check.code(row, "vat_category", VAT_CATEGORIES, label["vat_category"])
    exemption_code = check.text(row, "vat_exemption_code")
    if exemption_code is not None and not exemption_code.upper().startswith("VATEX-"):
        check.fail(f"{exemption_code!r} is not a VATEX code (e.g. VATEX-EU-132, VATEX-FR-FRANCHISE)", row,
                   label["vat_exemption_code"])
    if unit_price is not None and unit_price < 0:
        check.fail(f"{row.values['unit_price']!r}: a unit price cannot be negative (EN 16931 BR-27)", row,
                   label["unit_price"])
    if rate is not None and category in ZERO_RATE_CATEGORIES and rate != 0:
        check.fail(f"VAT category {category} requires a rate of 0, got {row.values['vat_rate']!r}", row,
                   label["vat_rate"])
    if rate is not None and category == "S" and rate <= 0:
        check.fail(f"VAT category S requires a rate above 0, got {row.values['vat_rate']!r}", row,
                   label["vat_rate"])
    if len(check.errors) > errors_before or item_name is None or None in (quantity, unit_price, rate):
        return None
    assert quantity is not None and unit_price is not None and rate is not None
    return InvoiceLine(
        line_id=row.values.get("line_id") or str(position),
        item_name=item_name,
        quantity=quantity,
        unit_code=check.text(row, "unit_code") or "C62",
        unit_price=unit_price,
        vat_category=category,
        vat_rate=rate,
        source_line=row.line,
        vat_exemption_reason=check.text(row, "vat_exemption_reason"),
        vat_exemption_code=exemption_code.upper() if exemption_code else None,
        vat_amount=vat_amount,
    )
