"""Which reader reads a channel's exports, by its ``input_format``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from gateway.intake.csv_export import CsvOptions, read_csv_export
from gateway.intake.jsonl_export import read_jsonl_export
from gateway.intake.records import InvoiceLimits, RejectedRecord
from gateway.invoice import ExportedInvoice
from gateway.intake.xml_export import read_xml_export
from gateway.resources import mapping_path

#: ``xslt`` needs a stylesheet of the channel's (``input_stylesheet``).
INPUT_FORMATS = ("csv", "jsonl", "idoc", "xslt")
#: An input format given as a path with one of these endings is ``xslt`` with that stylesheet.
STYLESHEET_SUFFIXES = (".xsl", ".xslt")
#: The built-in stylesheet of the ``idoc`` format (``mappings/``).
IDOC_STYLESHEET = "idoc-invoic02-to-records.xsl"


def resolve_input_format(text: str) -> tuple[str, Path | None]:
    """An input format as given on a command line or in a config: a name, or the path
    of a stylesheet (``my-erp.xsl``), which means ``xslt`` with that stylesheet.

    Raises ``ValueError`` with a message for the operator. The path is returned as
    given; the caller says what it is relative to, and checks that it exists.

    >>> resolve_input_format("idoc"), resolve_input_format("maps/erp.XSL")
    (('idoc', None), ('xslt', PosixPath('maps/erp.XSL')))
    """
    if text.lower().endswith(STYLESHEET_SUFFIXES):
        return "xslt", Path(text)
    if text == "xslt":
        raise ValueError("the input format xslt needs a stylesheet: give its path (ending .xsl or .xslt) instead")
    if text not in INPUT_FORMATS:
        raise ValueError(
            f"unknown input format {text!r}; known: {', '.join(INPUT_FORMATS[:-1])}, "
            f"or the path of an XSLT stylesheet (.xsl, .xslt)"
        )
    return text, None


def read_export(
    path: Path,
    input_format: str,
    csv_options: CsvOptions | None = None,
    stylesheet: Path | None = None,
    *,
    attachment_dir: Path | None = None,
    vat_rounding: str = "erp",
    limits: InvoiceLimits | None = None,
) -> Iterator[ExportedInvoice | RejectedRecord]:
    """The invoices of one export file, in file order (see docs/inputs.md).

    ``stylesheet``: the channel's own, for ``xslt``. ``attachment_dir``: where the
    files named by ``invoice_pdf`` and ``attachments`` are; by default
    ``attachments/`` beside the export. ``vat_rounding``: the channel's policy for the
    VAT the ERP states (``records.VAT_ROUNDING_POLICIES``). ``limits``: how big one
    invoice may be (default ``InvoiceLimits()``); one beyond is held back unread.
    """
    if input_format == "csv":
        return read_csv_export(path, csv_options or CsvOptions(), attachment_dir, vat_rounding, limits)
    if input_format == "jsonl":
        return read_jsonl_export(path, attachment_dir, vat_rounding, limits)
    if input_format == "idoc":
        return read_xml_export(path, mapping_path(IDOC_STYLESHEET), attachment_dir, vat_rounding, limits)
    if input_format == "xslt":
        if stylesheet is None:
            raise ValueError("the input format xslt needs a stylesheet")
        return read_xml_export(path, stylesheet, attachment_dir, vat_rounding, limits)
    raise ValueError(f"unknown input format {input_format!r}; known: {', '.join(INPUT_FORMATS)}")


def source_encoding(input_format: str, csv_options: CsvOptions | None = None) -> str:
    """The encoding a held-back invoice is written back in: the ERP's own (XML exports:
    UTF-8, which the held-back file's XML declaration says)."""
    return (csv_options or CsvOptions()).encoding if input_format == "csv" else "utf-8"
