"""Read a JSON Lines ERP export: one invoice per line.

Each line is an object with the header fields of ``docs/inputs.md`` and a ``lines``
array of line objects; keys are the CSV column names. Numbers may be JSON numbers or
strings (read exactly, never through binary floats); dates are ``YYYY-MM-DD``.

Lines are independent, so any problem of one line, even one that is not JSON or not
UTF-8, holds back that invoice only. Streamed: one line in memory at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.errors import InputError
from gateway.intake.attachments import default_attachment_dir
from gateway.intake.records import (
    HEADER_FIELDS,
    LINE_FIELDS,
    ExportedInvoice,
    ReadOptions,
    RejectedRecord,
    SourceRow,
    assemble,
)

def read_jsonl_export(
    path: Path, attachment_dir: Path | None = None, vat_rounding: str = "erp"
) -> Iterator[ExportedInvoice | RejectedRecord]:
    """Yield the invoice of each non-blank line, in file order."""
    options = ReadOptions(decimal=".", date_format="%Y-%m-%d",
                          attachment_dir=attachment_dir or default_attachment_dir(path), vat_rounding=vat_rounding)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            yield _invoice(path.name, number, raw, options)


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
    header = {key: _scalar(value) for key, value in data.items() if key != "lines"}
    rows = []
    for index, item in enumerate(items, start=1):
        prefix = f"lines[{index}]."
        if not isinstance(item, dict):
            return rejected("each line must be an object", prefix.rstrip("."), data)
        for key in item:
            if key not in LINE_FIELDS:
                return rejected("unknown key (misspelt? the keys are listed in docs/inputs.md)", prefix + key, data)
        values = {**header, **{key: _scalar(value) for key, value in item.items()}}
        rows.append(SourceRow(line, values, prefix))
    return assemble(file, rows, text, options)


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
