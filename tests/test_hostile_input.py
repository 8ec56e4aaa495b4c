"""Exports an ERP (or someone writing into its directory) makes hostile or huge: the
readers' per-invoice limits, control characters, attachments that are links.

The end-to-end run of these through the CLI is in test_csv_export.py
(``test_one_pass_sends_a_9_5_mb_pdf_…``); the flow archives in test_sandbox.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gateway.errors import InputError
from gateway.intake.csv_export import CsvOptions, read_csv_export
from gateway.intake.jsonl_export import read_jsonl_export
from gateway.intake.records import InvoiceLimits, RejectedRecord
from gateway.invoice import ExportedInvoice
from test_csv_export import csv_text, row

LIMITS = InvoiceLimits(max_lines=3, max_bytes=4000)


def test_an_invoice_beyond_a_limit_is_held_back_unread_and_its_neighbours_go_on(tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    heavy = [row("A-3", line_id=str(n), item_name="x" * 1500) for n in range(1, 4)]  # the third passes 4000 bytes
    export.write_text(csv_text(
        row("A-1"),
        *(row("A-2", line_id=str(n)) for n in range(1, 6)),  # lines 3-7: the 4th row is one too many
        *heavy,  # lines 8-10
        row("A-4"),
    ), "utf-8")

    first, lines, size, last = read_csv_export(export, CsvOptions(), limits=LIMITS)

    assert isinstance(first, ExportedInvoice) and isinstance(last, ExportedInvoice)
    assert isinstance(lines, RejectedRecord) and isinstance(size, RejectedRecord)
    assert (lines.first_line, lines.invoice_number, lines.original) == (3, "A-2", "")
    [error] = lines.errors
    assert (error.file, error.line, error.field) == ("export.csv", 6, None)
    assert error.reason.startswith("invoice A-2 has more than 3 lines, the channel's max_lines_per_invoice: held "
                                   "back unread from here on; its rows are lines 3–7 of the export. If it is "
                                   "genuine, raise [channels.<name>] max_lines_per_invoice")
    [error] = size.errors
    assert (size.first_line, error.line, size.original) == (8, 10, "")
    size_in_all = sum(len(text.encode()) + 1 for text in heavy)
    assert f"invoice A-3 weighs {size_in_all} bytes in the export, more than the channel's max_invoice_bytes (4000)" \
           in error.reason
    assert "its rows are lines 8–10 of the export" in error.reason


def test_a_csv_line_longer_than_an_invoice_may_weigh_is_not_read_whole(tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    export.write_text(csv_text(row("A-1"), row("A-2", item_name="y" * 10_000)), "utf-8")
    with pytest.raises(InputError, match="export.csv, line 3: the line is longer than 4000 bytes"):
        list(read_csv_export(export, CsvOptions(), limits=LIMITS))


def test_json_lines_limits_and_control_characters(tmp_path: Path) -> None:
    def invoice(number: str, lines: int, **values: str) -> str:
        item = {"item_name": "Ramettes", "quantity": "1", "unit_price": "4.15", "vat_rate": "20"}
        header = {"invoice_number": number, "issue_date": "2026-11-02", "supplier_siret": "40483304800022",
                  "supplier_name": "Fournitures", "buyer_siret": "11000000700010", "buyer_name": "Ministère"}
        return json.dumps({**header, "lines": [{**item, **values} for _ in range(lines)]})

    export = tmp_path / "export.jsonl"
    export.write_text("\n".join([
        invoice("J-1", 1),
        invoice("J-2", 4),
        invoice("J-3", 1, item_name="z" * 5000),
        invoice("J-4", 1, item_name="nul \u0000 here"),
        invoice("J-5", 1),
    ]) + "\n", "utf-8")

    good, lines, size, control, last = read_jsonl_export(export, limits=LIMITS)

    assert isinstance(good, ExportedInvoice) and isinstance(last, ExportedInvoice) and last.first_line == 5
    assert isinstance(lines, RejectedRecord) and isinstance(size, RejectedRecord)
    assert [(e.line, e.field) for e in lines.errors] == [(2, "lines")]
    assert "more than 3 lines" in lines.errors[0].reason and "it is line 2 of the export" in lines.errors[0].reason
    assert (size.invoice_number, size.original, [e.line for e in size.errors]) == ("J-3", "", [3])
    assert "weighs 5" in size.errors[0].reason
    assert "bytes in the export, more than the channel's max_invoice_bytes (4000)" in size.errors[0].reason
    assert isinstance(control, RejectedRecord)
    assert [(e.line, e.field) for e in control.errors] == [(4, "lines[1].item_name")]
    assert "control character U+0000 at position 5" in control.errors[0].reason


def test_attachments_links_are_told_apart(tmp_path: Path) -> None:
    """A second name inside attachments/ is no escape; a directory that is a link is."""
    attachments = tmp_path / "in" / "attachments"
    attachments.mkdir(parents=True)
    (attachments / "F-1.pdf").write_bytes(b"%PDF-1.7 facture")
    os.link(attachments / "F-1.pdf", attachments / "copie.pdf")
    export = tmp_path / "in" / "export.csv"
    export.write_text(csv_text(row("F-1", invoice_pdf="copie.pdf")), "utf-8")
    [taken] = read_csv_export(export, CsvOptions())
    assert isinstance(taken, ExportedInvoice) and taken.attachments[0].content == b"%PDF-1.7 facture"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "F-1.pdf").write_bytes(b"%PDF-1.7 not the ERP's")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "attachments").symlink_to(elsewhere)
    (linked / "export.csv").write_text(csv_text(row("F-1", invoice_pdf="F-1.pdf")), "utf-8")
    [refused] = read_csv_export(linked / "export.csv", CsvOptions())
    assert isinstance(refused, RejectedRecord)
    [error] = refused.errors
    assert (error.line, error.field) == (2, "invoice_pdf")
    assert "is a symbolic link or not a directory" in error.reason
