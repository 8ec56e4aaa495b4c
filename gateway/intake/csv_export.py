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
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gateway.errors import InputError
from gateway.intake.attachments import default_attachment_dir
from gateway.invoice import ExportedInvoice
from gateway.intake.records import (
    ALL_FIELDS,
    COLUMN_OF_RULE,
    HEADER_FIELDS,
    LINE_FIELDS,
    REQUIRED_FIELDS,
    TYPE_CODES,
    VAT_CATEGORIES,
    ZERO_RATE_CATEGORIES,
    InvoiceAssembler,
    InvoiceLimits,
    ReadOptions,
    RejectedRecord,
    SourceRow,
    oversized,
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
#: Control characters XML cannot carry (all but tab, line feed and carriage return). In
#: an ASCII-compatible encoding these bytes are never part of another character.
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")


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

    def __init__(self, handle: BinaryIO, file: str, encoding: str, max_bytes: int) -> None:
        self._handle = handle
        self._file = file
        self._encoding = encoding
        self._max_bytes = max_bytes
        self._strip_bom = encoding.replace("_", "-").lower() in ("utf-8", "utf8")
        self._taken: list[str] = []
        #: Bytes of the lines taken since the last ``take``.
        self.taken_bytes = 0

    def __iter__(self) -> Iterator[str]:
        # A line is read up to the byte limit of a whole invoice: a file without line
        # breaks must not be read into memory whole before anything can be said of it.
        physical = iter(lambda: self._handle.readline(self._max_bytes + 1), b"")
        for number, raw in enumerate(physical, start=1):
            if len(raw) > self._max_bytes and not raw.endswith(b"\n"):
                raise InputError(
                    f"the line is longer than {self._max_bytes} bytes, more than one invoice may weigh "
                    "(max_invoice_bytes): not a CSV export, or its line breaks are lost",
                    file=self._file,
                    line=number,
                )
            if number == 1 and self._strip_bom and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a BOM written by spreadsheet tools
            control = _CONTROL_BYTES.search(raw)
            if control:
                byte = raw[control.start()]
                raise InputError(
                    f"byte 0x{byte:02x}{' (NUL)' if byte == 0 else ''} at column {control.start() + 1} is a control "
                    "character, not text: an export holds text only (a file padded with zeros, or binary data?)",
                    file=self._file,
                    line=number,
                )
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
            self.taken_bytes += len(raw)
            yield text

    def take(self) -> str:
        text = "".join(self._taken)
        self._taken.clear()
        self.taken_bytes = 0
        return text


@dataclass
class _Group:
    """The rows of one invoice so far: its lines built as they come and its text kept for
    a held-back copy, both dropped once a limit is passed (the rest is only skipped)."""

    key: tuple[str, str]
    first: SourceRow
    assembler: InvoiceAssembler | None
    text: list[str]
    size: int = 0
    last_line: int = 0
    #: The row that passed a limit, and the line count then (None: the bytes passed it).
    beyond: tuple[SourceRow, int | None] | None = None

    def add(self, row: SourceRow, text: str, size: int, limits: InvoiceLimits) -> None:
        self.last_line = row.line
        self.size += size
        if self.assembler is None:
            return
        lines = self.assembler.line_count + 1
        if lines > limits.max_lines or self.size > limits.max_bytes:
            self.beyond = (row, lines if lines > limits.max_lines else None)
            self.assembler, self.text = None, []
            return
        self.assembler.add(row)
        self.text.append(text)

    def finish(self, file: str, header_text: str, limits: InvoiceLimits) -> ExportedInvoice | RejectedRecord:
        if self.beyond is not None:
            at, lines = self.beyond
            where = f"its rows are lines {self.first.line}–{self.last_line} of the export"
            return oversized(file, self.first, lines=lines, size=self.size, limits=limits, at=at, field=None,
                             where=where)
        assert self.assembler is not None
        return self.assembler.finish("".join([header_text, *self.text]))


def read_csv_export(
    path: Path,
    options: CsvOptions,
    attachment_dir: Path | None = None,
    vat_rounding: str = "erp",
    limits: InvoiceLimits | None = None,
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
        limits=limits or InvoiceLimits(),
    )
    with path.open("rb") as handle:
        lines = _Lines(handle, path.name, options.encoding, read.limits.max_bytes)
        reader = csv.reader(lines, delimiter=options.delimiter, strict=True)
        header = _read_header(reader, path.name)
        header_text = lines.take()
        group: _Group | None = None
        for line, raw in _records(reader, path.name):
            size = lines.taken_bytes
            text = lines.take()
            if not any(cell.strip() for cell in raw):
                continue  # blank line: ERPs write them at the end
            values = _row_values(raw, header, path.name, line)
            key = (values.get("supplier_siret", ""), values.get("invoice_number", ""))
            if group is not None and key != group.key:
                yield group.finish(path.name, header_text, read.limits)
                group = None
            row = SourceRow(line, values)
            if group is None:
                group = _Group(key=key, first=row, assembler=InvoiceAssembler(path.name, read), text=[])
            group.add(row, text, size, read.limits)
        if group is not None:
            yield group.finish(path.name, header_text, read.limits)


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
    "RejectedRecord",
    "read_csv_export",
]
