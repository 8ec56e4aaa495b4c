"""Which reader reads a channel's exports, by its ``input_format``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from gateway.intake.csv_export import CsvOptions, read_csv_export
from gateway.intake.jsonl_export import read_jsonl_export
from gateway.intake.records import ExportedInvoice, RejectedRecord

INPUT_FORMATS = ("csv", "jsonl")


def read_export(
    path: Path, input_format: str, csv_options: CsvOptions | None = None
) -> Iterator[ExportedInvoice | RejectedRecord]:
    """The invoices of one export file, in file order (see docs/inputs.md)."""
    if input_format == "csv":
        return read_csv_export(path, csv_options or CsvOptions())
    if input_format == "jsonl":
        return read_jsonl_export(path)
    raise ValueError(f"unknown input format {input_format!r}; known: {', '.join(INPUT_FORMATS)}")


def source_encoding(input_format: str, csv_options: CsvOptions | None = None) -> str:
    """The encoding a held-back invoice is written back in: the ERP's own."""
    return (csv_options or CsvOptions()).encoding if input_format == "csv" else "utf-8"
