"""Read a JSON Lines ERP export: one invoice per line.

Each line is an object with the header fields of ``docs/inputs.md`` and a ``lines``
array of line objects; keys are the CSV column names. Numbers may be JSON numbers or
strings (read exactly, never through binary floats); dates are ``YYYY-MM-DD``.

Lines are independent, so any problem of one line, even one that is not JSON or not
UTF-8, holds back that invoice only. Streamed: one line in memory at a time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

from gateway.errors import InputError
from gateway.intake.attachments import default_attachment_dir
from gateway.invoice import ExportedInvoice
from gateway.intake.records import (
    HEADER_FIELDS,
    LINE_FIELDS,
    InvoiceLimits,
    ReadOptions,
    RejectedRecord,
    SourceRow,
    assemble,
    oversized,
)

#: Control characters XML cannot carry, which a JSON string may hold as escapes (\u0000).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
#: Skipped in chunks of this size: the rest of a line beyond the byte limit.
_SKIP_CHUNK = 1 << 20

def read_jsonl_export(
    path: Path, attachment_dir: Path | None = None, vat_rounding: str = "erp", limits: InvoiceLimits | None = None
) -> Iterator[ExportedInvoice | RejectedRecord]:
    """Yield the invoice of each non-blank line, in file order."""
    limits = limits or InvoiceLimits()
    options = ReadOptions(decimal=".", date_format="%Y-%m-%d",
                          attachment_dir=attachment_dir or default_attachment_dir(path), vat_rounding=vat_rounding,
                          limits=limits)
    with path.open("rb") as handle:
        # A line is read up to the limit: beyond it, the invoice is held back and the
        # rest of its line skipped, never read into memory.
        for number, raw in enumerate(iter(lambda: handle.readline(limits.max_bytes + 1), b""), start=1):
            if len(raw) > limits.max_bytes:
                size = len(raw) + (0 if raw.endswith(b"\n") else _skip_line(handle))
                yield _beyond_bytes(path.name, number, raw, size, limits)
                continue
            if not raw.strip():
                continue
            yield _invoice(path.name, number, raw, options)


def _skip_line(handle: BinaryIO) -> int:
    """Read to the end of the current line, keeping nothing; the bytes skipped."""
    skipped = 0
    while chunk := handle.readline(_SKIP_CHUNK):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def _beyond_bytes(file: str, line: int, raw: bytes, size: int, limits: InvoiceLimits) -> RejectedRecord:
    # The number and supplier are looked for in what was read, for the operator only.
    found = {key: match.group(1) for key in ("invoice_number", "supplier_siret")
             if (match := re.search(rb'"%s"\s*:\s*"([^"\\]{1,64})"' % key.encode(), raw[:_SKIP_CHUNK]))}
    values = {key: value.decode("utf-8", errors="replace") for key, value in found.items()}
    first = SourceRow(line, values)
    return oversized(file, first, lines=None, size=size, limits=limits, at=first, field=None,
                     where=f"it is line {line} of the export")


def _invoice(file: str, line: int, raw: bytes, options: ReadOptions) -> ExportedInvoice | RejectedRecord:
    def rejected(message: str, field: str | None = None, data: dict[str, Any] | None = None) -> RejectedRecord:
        data = data or {}
        return RejectedRecord(
            file=file,
            first_line=line,
            invoice_number=_scalar(data.get("invoice_number")) or None,
            supplier_siret=_scalar(data.get("supplier_siret")) or None,
            errors=(InputError(message, file=file, line=line, field=field),),
            original=raw.decode("utf-8", errors="replace"),
        )

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return rejected(f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not valid UTF-8")
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        return rejected(f"not a JSON object: {exc.msg} at column {exc.colno}")
    if not isinstance(data, dict):
        return rejected("not a JSON object: each line must be one invoice object")
    for key in data:
        if key != "lines" and key not in HEADER_FIELDS:
            return rejected("unknown key (misspelt? the keys are listed in docs/inputs.md)", key, data)
    items = data.get("lines")
    if not isinstance(items, list) or not items:
        return rejected("an invoice needs a non-empty array of lines", "lines", data)
    if len(items) > options.limits.max_lines:
        first = SourceRow(line, {"invoice_number": _scalar(data.get("invoice_number")),
                                 "supplier_siret": _scalar(data.get("supplier_siret"))})
        return oversized(file, first, lines=len(items), size=len(raw), limits=options.limits, at=first,
                         field="lines", where=f"it is line {line} of the export")
    header = {key: _scalar(value) for key, value in data.items() if key != "lines"}
    problem = _control_character(header, "")
    if problem:
        return rejected(*problem, data)
    rows = []
    for index, item in enumerate(items, start=1):
        prefix = f"lines[{index}]."
        if not isinstance(item, dict):
            return rejected("each line must be an object", prefix.rstrip("."), data)
        for key in item:
            if key not in LINE_FIELDS:
                return rejected("unknown key (misspelt? the keys are listed in docs/inputs.md)", prefix + key, data)
        values = {key: _scalar(value) for key, value in item.items()}
        problem = _control_character(values, prefix)
        if problem:
            return rejected(*problem, data)
        rows.append(SourceRow(line, {**header, **values}, prefix))
    return assemble(file, rows, text, options)


def _control_character(values: dict[str, str], prefix: str) -> tuple[str, str] | None:
    """(what is wrong, field) for the first value holding a control character (written
    as an escape such as \\u0000 in JSON), which XML cannot carry."""
    for key, value in values.items():
        if control := _CONTROL.search(value):
            return (f"holds the control character U+{ord(control.group()):04X} at position {control.start() + 1}, "
                    "which an invoice cannot carry: remove it from the ERP's data", prefix + key)
    return None


def _scalar(value: Any) -> str:
    """A JSON value as the text the shared checks read; null is an empty field.

    >>> _scalar(Decimal("12.50")), _scalar(3), _scalar(None), _scalar(" F-1 ")
    ('12.50', '3', '', 'F-1')
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, Decimal)):
        return format(value, "f") if isinstance(value, Decimal) else str(value)
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value)
