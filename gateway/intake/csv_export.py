"""Read a CSV ERP export: one row per invoice line, header fields repeated.

Pure apart from reading the one file it is given. Rows are read as a stream and
grouped into invoices as they come (an invoice's rows are consecutive), so memory
holds one invoice at a time whatever the file's size.

Two kinds of problem, two outcomes:

- the file cannot be read as a whole (bytes not in the channel's encoding, a missing
  mandatory column, an unknown column, a malformed record, no header): ``InputError``
  is raised and the pipeline quarantines the file, recording nothing of it;
- one invoice has bad values (empty mandatory field, non-numeric amount, bad date,
  header fields that differ between its rows): it is yielded as a ``RejectedRecord``
  naming each problem's line and field, and the other invoices go on.

The layout is documented in ``docs/inputs.md``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import InputError
from gateway.intake.attachments import default_attachment_dir
from gateway.intake.records import (
    ALL_FIELDS,
    COLUMN_OF_RULE,
    HEADER_FIELDS,
    LINE_FIELDS,
    REQUIRED_FIELDS,
    TYPE_CODES,
    VAT_CATEGORIES,
    ZERO_RATE_CATEGORIES,
    ExportedInvoice,
    InvoiceLine,
    Party,
    ReadOptions,
    RejectedRecord,
    SourceRow,
    assemble,
)

#: Columns a CSV header must name.
REQUIRED_COLUMNS = REQUIRED_FIELDS


@dataclass(frozen=True)
class CsvOptions:
    """How one channel's ERP writes its CSV (``[channels.X.csv]`` in gateway.toml)."""

    delimiter: str = ";"
    encoding: str = "utf-8"
    decimal: str = "."
    date_format: str = "%Y-%m-%d"


#: Bytes the reader relies on being themselves: it cuts lines on 0A before decoding, so
#: that memory holds one line and a bad byte is reported on its own line.
_ASCII_PROBE = "0123456789.,;\t|\"-/ \r\n"


def encoding_problem(encoding: str) -> str | None:
    """Why ``encoding`` cannot be read, or None: unknown, or not ASCII-compatible (UTF-16…)."""
    try:
        same = _ASCII_PROBE.encode(encoding) == _ASCII_PROBE.encode("ascii")
    except LookupError:
        return f"unknown encoding {encoding!r} (e.g. utf-8, cp1252, latin-1)"
    if not same:
        return (f"{encoding!r} writes line breaks and digits on more than one byte (UTF-16, UTF-32…), "
                "which the streamed reader does not take: ask the ERP for UTF-8 or cp1252")
    return None


class _Lines:
    """Decoded physical lines, remembering those taken since the last ``take``.

    Decoding line by line reports a wrong encoding with its line; keeping the text
    lets a held-back invoice be written back exactly as the ERP wrote it.
    """

    def __init__(self, handle: Iterable[bytes], file: str, encoding: str) -> None:
        self._handle = handle
        self._file = file
        self._encoding = encoding
        self._strip_bom = encoding.replace("_", "-").lower() in ("utf-8", "utf8")
        self._taken: list[str] = []

    def __iter__(self) -> Iterator[str]:
        for number, raw in enumerate(self._handle, start=1):
            if number == 1 and self._strip_bom and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a BOM written by spreadsheet tools
            try:
                text = raw.decode(self._encoding)
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not valid {self._encoding}; "
                    f"set [channels.<name>.csv] encoding to the ERP's encoding (e.g. cp1252)",
                    file=self._file,
                    line=number,
                ) from None
            self._taken.append(text)
            yield text

    def take(self) -> str:
        text = "".join(self._taken)
        self._taken.clear()
        return text


@dataclass
class _Group:
    key: tuple[str, str]
    rows: list[SourceRow]
    text: list[str]


def read_csv_export(
    path: Path, options: CsvOptions, attachment_dir: Path | None = None, vat_rounding: str = "erp"
) -> Iterator[ExportedInvoice | RejectedRecord]:
    """Yield the invoices of one export in file order.

    Raises ``InputError`` when the file cannot be read as a whole; the caller must
    then drop whatever it already took from this file.
    """
    problem = encoding_problem(options.encoding)
    if problem:
        raise InputError(problem, file=path.name)
    read = ReadOptions(
        decimal=options.decimal,
        date_format=options.date_format,
        attachment_dir=attachment_dir or default_attachment_dir(path),
        vat_rounding=vat_rounding,
    )
    with path.open("rb") as handle:
        lines = _Lines(handle, path.name, options.encoding)
        reader = csv.reader(lines, delimiter=options.delimiter, strict=True)
        header = _read_header(reader, path.name)
        header_text = lines.take()
        group: _Group | None = None
        for line, raw in _records(reader, path.name):
            text = lines.take()
            if not any(cell.strip() for cell in raw):
                continue  # blank line: ERPs write them at the end
            values = _row_values(raw, header, path.name, line)
            key = (values.get("supplier_siret", ""), values.get("invoice_number", ""))
            if group is not None and key != group.key:
                yield assemble(path.name, group.rows, header_text + "".join(group.text), read)
                group = None
            if group is None:
                group = _Group(key=key, rows=[], text=[])
            group.rows.append(SourceRow(line, values))
            group.text.append(text)
        if group is not None:
            yield assemble(path.name, group.rows, header_text + "".join(group.text), read)


def _records(reader: Iterator[list[str]], file: str) -> Iterator[tuple[int, list[str]]]:
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
    seen: set[str] = set()
    for name in names:
        if name not in ALL_FIELDS:
            raise InputError(
                "unknown column (misspelt? the columns are listed in docs/inputs.md)", file=file, line=1, field=name
            )
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


__all__ = [
    "ALL_FIELDS",
    "COLUMN_OF_RULE",
    "HEADER_FIELDS",
    "LINE_FIELDS",
    "REQUIRED_COLUMNS",
    "TYPE_CODES",
    "VAT_CATEGORIES",
    "ZERO_RATE_CATEGORIES",
    "CsvOptions",
    "ExportedInvoice",
    "InvoiceLine",
    "Party",
    "RejectedRecord",
    "read_csv_export",
]
