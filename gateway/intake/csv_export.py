"""Read a CSV ERP export: one row per invoice line, header fields repeated.

Pure apart from reading the one file it is given. Rows are read as a stream and
grouped into invoices as they come (an invoice's rows are consecutive), so memory
holds one invoice at a time whatever the file's size.

Two kinds of problem, two outcomes:

- the file cannot be read as a whole (bytes not in the channel's encoding, a missing
  mandatory column, an unknown column, no data): ``InputError`` is raised and the
  pipeline quarantines the file, recording nothing of it;
- one invoice has bad values (empty mandatory field, non-numeric amount, bad date,
  header fields that differ between its rows): it is yielded as a ``RejectedRecord``
  naming each problem's line and field, and the other invoices go on.

The layout is documented in ``docs/inputs.md``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from gateway.errors import InputError

#: Fields that describe the invoice as a whole: repeated on each of its rows, and equal.
HEADER_FIELDS = (
    "invoice_number",  # BT-1
    "issue_date",  # BT-2
    "type_code",  # BT-3: 380 invoice, 381 credit note
    "currency",  # BT-5
    "due_date",  # BT-9
    "service_code",  # BT-10 (Chorus Pro "code service")
    "commitment_number",  # BT-13 (Chorus Pro "numéro d'engagement")
    "cadre",  # BT-23 (Chorus Pro "cadre de facturation"): A1, A2, A9, …
    "supplier_siret",  # BT-29/BT-30, scheme 0009
    "supplier_name",  # BT-27
    "supplier_vat",  # BT-31
    "supplier_street",  # BT-35
    "supplier_city",  # BT-37
    "supplier_postcode",  # BT-38
    "supplier_country",  # BT-40
    "buyer_siret",  # BT-46/BT-47, scheme 0009
    "buyer_name",  # BT-44
    "buyer_street",  # BT-50
    "buyer_city",  # BT-52
    "buyer_postcode",  # BT-53
    "buyer_country",  # BT-55
    "payment_means",  # BT-81
    "iban",  # BT-84
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
)
ALL_FIELDS = HEADER_FIELDS + LINE_FIELDS
REQUIRED_COLUMNS = (
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
#: Columns whose value may be left empty; the others named in REQUIRED_COLUMNS may not.
_DEFAULTS = {
    "type_code": "380",
    "currency": "EUR",
    "cadre": "A1",
    "supplier_country": "FR",
    "buyer_country": "FR",
    "unit_code": "C62",  # UN/ECE rec. 20 "one"
    "vat_category": "S",
}
#: The column a validation rule speaks of, so that a held-back invoice's reason names
#: the field the ERP team has to fix, not only an XPath of the mapped document.
COLUMN_OF_RULE = {
    "CHORUS-SIRET-SUPPLIER": "supplier_siret",
    "CHORUS-SIRET-BUYER": "buyer_siret",
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
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CADRE = re.compile(r"^A([1-9]|1[0-9]|2[0-5])$")


@dataclass(frozen=True)
class CsvOptions:
    """How one channel's ERP writes its CSV (``[channels.X.csv]`` in gateway.toml)."""

    delimiter: str = ";"
    encoding: str = "utf-8"
    decimal: str = "."
    date_format: str = "%Y-%m-%d"


@dataclass(frozen=True)
class InvoiceLine:
    line_id: str
    item_name: str
    quantity: Decimal
    unit_code: str
    unit_price: Decimal
    vat_category: str
    vat_rate: Decimal
    source_line: int


@dataclass(frozen=True)
class Party:
    siret: str
    name: str
    country: str = "FR"
    street: str | None = None
    city: str | None = None
    postcode: str | None = None
    vat_id: str | None = None


@dataclass(frozen=True)
class ExportedInvoice:
    """One invoice read from the export, typed, before any mapping."""

    file: str
    first_line: int
    number: str
    issue_date: date
    type_code: str
    currency: str
    supplier: Party
    buyer: Party
    lines: tuple[InvoiceLine, ...]
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    due_date: date | None = None
    service_code: str | None = None
    commitment_number: str | None = None
    cadre: str = "A1"
    payment_means: str | None = None
    iban: str | None = None

    @property
    def supplier_siret(self) -> str:
        return self.supplier.siret

    @property
    def buyer_siret(self) -> str:
        return self.buyer.siret

    @property
    def issue_year(self) -> int:
        return self.issue_date.year


@dataclass(frozen=True)
class RejectedRecord:
    """An invoice whose rows could not be read; held back with every problem found."""

    file: str
    first_line: int
    invoice_number: str | None
    supplier_siret: str | None
    errors: tuple[InputError, ...]
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass
class _Group:
    key: tuple[str, str]
    first_line: int
    rows: list[tuple[int, dict[str, str], tuple[str, ...]]] = field(default_factory=list)


def read_csv_export(path: Path, options: CsvOptions) -> Iterator[ExportedInvoice | RejectedRecord]:
    """Yield the invoices of one export in file order.

    Raises ``InputError`` when the file cannot be read as a whole; the caller must
    then drop whatever it already took from this file.
    """
    with path.open("rb") as handle:
        lines = _decoded_lines(handle, path.name, options.encoding)
        reader = csv.reader(lines, delimiter=options.delimiter, strict=True)
        header = _read_header(reader, path.name)
        group: _Group | None = None
        for row in _rows(reader, path.name):
            line, raw = row
            if not any(cell.strip() for cell in raw):
                continue  # blank line: ERPs write them at the end
            values = _row_values(raw, header, path.name, line)
            key = (values.get("supplier_siret", ""), values.get("invoice_number", ""))
            if group is not None and key != group.key:
                yield _build(group, header, path.name, options)
                group = None
            if group is None:
                group = _Group(key=key, first_line=line)
            group.rows.append((line, values, tuple(raw)))
        if group is not None:
            yield _build(group, header, path.name, options)


def _decoded_lines(handle: Iterable[bytes], file: str, encoding: str) -> Iterator[str]:
    """Decode line by line, so that a wrong encoding is reported with its line."""
    for number, raw in enumerate(handle, start=1):
        if number == 1 and encoding.replace("_", "-").lower() in ("utf-8", "utf8") and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a BOM written by spreadsheet tools
        try:
            yield raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not valid {encoding}; "
                f"set [channels.<name>.csv] encoding to the ERP's encoding (e.g. cp1252)",
                file=file,
                line=number,
            ) from None


def _rows(reader: Iterator[list[str]], file: str) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record with the physical line it starts on."""
    while True:
        start = reader.line_num + 1  # type: ignore[attr-defined]
        try:
            raw = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"not a well-formed CSV record: {exc}", file=file, line=start) from None
        yield start, raw


def _read_header(reader: Iterator[list[str]], file: str) -> tuple[str, ...]:
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("the file is empty: no header line", file=file, line=1) from None
    except csv.Error as exc:
        raise InputError(f"the header line is not well-formed CSV: {exc}", file=file, line=1) from None
    names = tuple(name.strip().lower() for name in header)
    for name in names:
        if name not in ALL_FIELDS:
            raise InputError(
                "unknown column (misspelt? the columns are listed in docs/inputs.md)", file=file, line=1, field=name
            )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError("column appears twice", file=file, line=1, field=name)
        seen.add(name)
    for name in REQUIRED_COLUMNS:
        if name not in seen:
            raise InputError("mandatory column is missing from the header", file=file, line=1, field=name)
    return names


def _row_values(raw: Sequence[str], header: Sequence[str], file: str, line: int) -> dict[str, str]:
    if len(raw) != len(header):
        raise InputError(
            f"{len(raw)} fields where the header has {len(header)} (wrong delimiter or unquoted value?)",
            file=file,
            line=line,
        )
    return {name: value.strip() for name, value in zip(header, raw, strict=True)}


class _Collector:
    """Gathers every problem of one invoice instead of stopping at the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[InputError] = []

    def fail(self, message: str, line: int, name: str) -> None:
        self.errors.append(InputError(message, file=self.file, line=line, field=name))

    def text(self, values: dict[str, str], name: str, line: int, *, required: bool = False) -> str | None:
        value = values.get(name, "") or _DEFAULTS.get(name, "")
        if not value:
            if required:
                self.fail("mandatory field is empty", line, name)
            return None
        return value

    def number(self, values: dict[str, str], name: str, line: int, decimal: str) -> Decimal | None:
        text = self.text(values, name, line, required=True)
        if text is None:
            return None
        return self.parse_number(text, name, line, decimal)

    def parse_number(self, text: str, name: str, line: int, decimal: str) -> Decimal | None:
        other = "," if decimal == "." else "."
        if other in text:
            self.fail(f"{text!r} is not a number with decimal separator {decimal!r}", line, name)
            return None
        try:
            value = Decimal(text.replace(decimal, "."))
        except InvalidOperation:
            self.fail(f"{text!r} is not a number", line, name)
            return None
        if not value.is_finite():
            self.fail(f"{text!r} is not a number", line, name)
            return None
        sign, digits, exponent = value.as_tuple()
        decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        if decimals > _MAX_DECIMALS or len(digits) > _MAX_DIGITS:
            self.fail(
                f"{text!r} has more than {_MAX_DIGITS} digits or {_MAX_DECIMALS} decimals (Chorus Pro's limit)",
                line,
                name,
            )
            return None
        return value

    def date(self, values: dict[str, str], name: str, line: int, fmt: str, *, required: bool) -> date | None:
        text = self.text(values, name, line, required=required)
        if text is None:
            return None
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            self.fail(f"{text!r} is not a date in the format {fmt!r}", line, name)
            return None

    def code(self, values: dict[str, str], name: str, line: int, allowed: frozenset[str] | re.Pattern[str]) -> str:
        value = self.text(values, name, line, required=True) or ""
        value = value.upper()
        ok = value in allowed if isinstance(allowed, frozenset) else bool(allowed.match(value))
        if value and not ok:
            expected = ", ".join(sorted(allowed)) if isinstance(allowed, frozenset) else allowed.pattern
            self.fail(f"{value!r} is not an accepted code (expected {expected})", line, name)
        return value


def _build(group: _Group, header: tuple[str, ...], file: str, options: CsvOptions) -> ExportedInvoice | RejectedRecord:
    first_line, first, _ = group.rows[0]
    check = _Collector(file)
    for line, values, _raw in group.rows[1:]:
        for name in HEADER_FIELDS:
            if name in values and values[name] != first.get(name):
                check.fail(
                    f"{values[name]!r} differs from {first.get(name)!r} on line {first_line} of the same invoice",
                    line,
                    name,
                )
    number = check.text(first, "invoice_number", first_line, required=True)
    supplier = _party(check, first, "supplier", first_line)
    buyer = _party(check, first, "buyer", first_line)
    issue_date = check.date(first, "issue_date", first_line, options.date_format, required=True)
    due_date = check.date(first, "due_date", first_line, options.date_format, required=False)
    type_code = check.code(first, "type_code", first_line, TYPE_CODES)
    currency = check.code(first, "currency", first_line, _CURRENCY)
    cadre = check.code(first, "cadre", first_line, _CADRE)
    payment_means = check.text(first, "payment_means", first_line)
    lines = [_line(check, values, line, position, options) for position, (line, values, _) in enumerate(group.rows, 1)]
    rows = tuple(raw for _, _, raw in group.rows)
    if check.errors or None in lines or number is None or supplier is None or buyer is None or issue_date is None:
        return RejectedRecord(
            file=file,
            first_line=first_line,
            invoice_number=first.get("invoice_number") or None,
            supplier_siret=first.get("supplier_siret") or None,
            errors=tuple(check.errors),
            header=header,
            rows=rows,
        )
    return ExportedInvoice(
        file=file,
        first_line=first_line,
        number=number,
        issue_date=issue_date,
        type_code=type_code,
        currency=currency,
        supplier=supplier,
        buyer=buyer,
        lines=tuple(line for line in lines if line is not None),
        header=header,
        rows=rows,
        due_date=due_date,
        service_code=check.text(first, "service_code", first_line),
        commitment_number=check.text(first, "commitment_number", first_line),
        cadre=cadre,
        payment_means=payment_means,
        iban=(check.text(first, "iban", first_line) or "").replace(" ", "") or None,
    )


def _party(check: _Collector, values: dict[str, str], role: str, line: int) -> Party | None:
    siret = check.text(values, f"{role}_siret", line, required=True)
    name = check.text(values, f"{role}_name", line, required=True)
    country = check.code(values, f"{role}_country", line, _COUNTRY)
    if siret is None or name is None:
        return None
    return Party(
        siret=siret.replace(" ", ""),
        name=name,
        country=country,
        street=check.text(values, f"{role}_street", line),
        city=check.text(values, f"{role}_city", line),
        postcode=check.text(values, f"{role}_postcode", line),
        vat_id=check.text(values, f"{role}_vat", line),
    )


def _line(
    check: _Collector, values: dict[str, str], line: int, position: int, options: CsvOptions
) -> InvoiceLine | None:
    errors_before = len(check.errors)
    item_name = check.text(values, "item_name", line, required=True)
    quantity = check.number(values, "quantity", line, options.decimal)
    unit_price = check.number(values, "unit_price", line, options.decimal)
    rate = check.number(values, "vat_rate", line, options.decimal)
    category = check.code(values, "vat_category", line, VAT_CATEGORIES)
    if unit_price is not None and unit_price < 0:
        check.fail(f"{values['unit_price']!r}: a unit price cannot be negative (EN 16931 BR-27)", line, "unit_price")
    if rate is not None and category in ZERO_RATE_CATEGORIES and rate != 0:
        check.fail(f"VAT category {category} requires a rate of 0, got {values['vat_rate']!r}", line, "vat_rate")
    if rate is not None and category == "S" and rate <= 0:
        check.fail(f"VAT category S requires a rate above 0, got {values['vat_rate']!r}", line, "vat_rate")
    if len(check.errors) > errors_before or None in (item_name, quantity, unit_price, rate):
        return None
    assert item_name is not None and quantity is not None and unit_price is not None and rate is not None
    return InvoiceLine(
        line_id=values.get("line_id") or str(position),
        item_name=item_name,
        quantity=quantity,
        unit_code=check.text(values, "unit_code", line) or "C62",
        unit_price=unit_price,
        vat_category=category,
        vat_rate=rate,
        source_line=line,
    )


__all__ = [
    "ALL_FIELDS",
    "COLUMN_OF_RULE",
    "REQUIRED_COLUMNS",
    "CsvOptions",
    "ExportedInvoice",
    "InvoiceLine",
    "Party",
    "RejectedRecord",
    "read_csv_export",
]
