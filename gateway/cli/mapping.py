"""``gateway map``: ERP exports → one document per invoice in a directory, nothing else.

For an integrator checking a new export or an adapted stylesheet: it reads and maps
exactly as a channel does, but never loads the configuration nor opens the store, so
it runs anywhere and leaves no trace besides the documents it writes. It does not
validate (the documents are what the validation stage would be given).

Streamed end to end: one invoice in memory at a time, whatever the export's size.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from gateway.domain import Syntax
from gateway.errors import GatewayError, InputError, MappingError
from gateway.fs import is_temporary, temporary_name
from gateway.intake.csv_export import CsvOptions, encoding_problem
from gateway.intake.readers import INPUT_FORMATS, read_export, resolve_input_format
from gateway.intake.records import VAT_ROUNDING_POLICIES, RejectedRecord
from gateway.invoice import ExportedInvoice
from gateway.mapping import map_invoice
from gateway.xml.syntax import SYNTAXES

#: Longest file-name stem written: leaves room for a uniqueness suffix and the extension
#: under the 255-byte limit of common filesystems.
_MAX_STEM = 150
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Problem:
    """One reason an invoice (or a whole file) was not mapped, located as precisely as known."""

    file: str | None
    line: int | None
    field: str | None
    xpath: str | None
    message: str

    @classmethod
    def of_input(cls, error: InputError) -> Problem:
        return cls(error.file, error.line, error.field, error.xpath, error.reason)

    def describe(self, invoice_line: int | None) -> str:
        """The reason as an operator reads it; the invoice's own line is already on the row."""
        where = []
        if self.line is not None and self.line != invoice_line:
            where.append(f"line {self.line}")
        if self.xpath:
            where.append(f"at {self.xpath}")
        if self.field:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


@dataclass(frozen=True)
class Outcome:
    """What became of one invoice, or of a whole file when it could not be read."""

    source: str
    line: int | None
    invoice_number: str | None
    output: Path | None = None
    problems: tuple[Problem, ...] = ()
    #: What the operator should know of a mapped invoice (``ExportedInvoice.warnings``).
    warnings: tuple[str, ...] = ()

    @property
    def mapped(self) -> bool:
        return not self.problems

    def as_text(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        number = self.invoice_number or "-"
        if self.mapped:
            return f"OK  {where}  {number}  -> {self.output}"
        reasons = "; ".join(problem.describe(self.line) for problem in self.problems)
        return f"ERR {where}  {number}  {reasons}"

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "line": self.line,
            "invoice_number": self.invoice_number,
            "status": "mapped" if self.mapped else "rejected",
            "output": None if self.output is None else str(self.output),
            "errors": [vars(problem) for problem in self.problems],
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class Mapped:
    """One invoice's document, not yet written anywhere."""

    invoice: ExportedInvoice
    document: bytes


def map_export(
    path: Path,
    input_format: str,
    syntax: Syntax,
    csv_options: CsvOptions | None = None,
    stylesheet: Path | None = None,
    *,
    credit_note_as_invoice: bool = False,
    partner_code: str | None = None,
    attachment_dir: Path | None = None,
    vat_rounding: str = "erp",
) -> Iterator[Mapped | Outcome]:
    """Each invoice of ``path`` mapped to ``syntax``, or the ``Outcome`` saying why not.

    A file that cannot be read as a whole yields one last ``Outcome`` with no invoice
    number; the invoices yielded before it were read and mapped correctly, but the
    pipeline would quarantine the whole file.
    """
    source = str(path)
    records: Iterator[ExportedInvoice | RejectedRecord] = iter(())
    try:
        records = iter(read_export(path, input_format, csv_options, stylesheet, attachment_dir=attachment_dir,
                                   vat_rounding=vat_rounding))
        for record in records:
            yield _map_record(source, record, syntax, credit_note_as_invoice, partner_code)
    except InputError as exc:
        yield Outcome(source, exc.line, None, problems=(Problem.of_input(exc),))
    except OSError as exc:
        problem = Problem(path.name, None, None, None, f"cannot read the file: {exc.strerror or exc}")
        yield Outcome(source, None, None, problems=(problem,))
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()  # a reader stopped early by the consumer must still close its file


def _map_record(
    source: str,
    record: ExportedInvoice | RejectedRecord,
    syntax: Syntax,
    credit_note_as_invoice: bool,
    partner_code: str | None,
) -> Mapped | Outcome:
    if isinstance(record, RejectedRecord):
        problems = tuple(Problem.of_input(error) for error in record.errors)
        return Outcome(source, record.first_line, record.invoice_number, problems=problems)
    try:
        document = map_invoice(
            record, syntax, credit_note_as_invoice=credit_note_as_invoice, partner_code=partner_code
        )
        return Mapped(record, document)
    except (InputError, MappingError) as exc:
        problem = Problem(record.file, record.first_line, None, None, exc.message)
        return Outcome(source, record.first_line, record.number, problems=(problem,))


class OutputDir:
    """A new or empty directory the documents are written into, one file per invoice.

    Empty, so that no document of an earlier run lies beside this run's (an invoice
    rejected now would still seem mapped), and so that the directory itself tells which
    names are taken: a second invoice with the same name gets ``-2``, ``-3``… without
    remembering names, so memory stays flat however many invoices there are.

    Each document is written under a temporary name (``.x….part``, which the gateway's
    own readers skip), then hard-linked to its name, which fails rather than replace a
    file: a reader of the directory never sees half a document, and two invoices (or
    two runs) never share a file, on case-insensitive filesystems too. No fsync: this is
    an inspection tool, not a delivery path, and 100,000 fsyncs would dominate the run.
    """

    def __init__(self, directory: Path, extension: str) -> None:
        self.directory = directory
        self.extension = extension
        # The pid keeps two runs writing into one directory from sharing a temporary file.
        self._temporary = directory / temporary_name(f"gateway-map-{os.getpid()}")

    @classmethod
    def create(cls, directory: Path, extension: str) -> OutputDir:
        if directory.is_dir() and any(directory.iterdir()):
            raise click.BadParameter(
                f"{directory} is not empty; give a new or empty directory, so that no document "
                "of an earlier run is taken for one of this run",
                param_hint="'--out'",
            )
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GatewayError(f"cannot create the output directory {directory}: {exc.strerror or exc}") from exc
        return cls(directory, extension)

    def write(self, invoice: ExportedInvoice, document: bytes) -> Path:
        stem = _stem(invoice.supplier_siret, invoice.number)
        try:
            self._temporary.write_bytes(document)
            return self._publish(stem)
        except OSError as exc:
            # Nothing later can succeed either (disk full, directory removed): stop.
            raise GatewayError(f"cannot write {self.directory / stem}.{self.extension}: {exc.strerror or exc}") from exc
        finally:
            self._temporary.unlink(missing_ok=True)

    def _publish(self, stem: str) -> Path:
        """Link the temporary file to the first free name: stem, stem-2, stem-3…"""
        for suffix in itertools.chain([""], (f"-{n}" for n in itertools.count(2))):
            target = self.directory / f"{stem}{suffix}.{self.extension}"
            try:
                os.link(self._temporary, target)
                return target
            except FileExistsError:
                pass
        raise AssertionError("unreachable: the suffixes never end")


def _stem(supplier_siret: str, number: str) -> str:
    """``<siret>_<number>`` with anything but letters, digits, ``.``, ``_``, ``-`` replaced."""
    stem = _UNSAFE.sub("_", f"{supplier_siret}_{number}").strip("._-")
    return stem[:_MAX_STEM] or "invoice"


def export_files(inputs: Iterable[Path]) -> Iterator[Path]:
    """Each INPUT, or the files of an INPUT directory (not recursive) in name order,
    skipping the temporary names an ERP writes under (``.x``, ``*.part``, ``*.tmp``)."""
    for path in inputs:
        if path.is_dir():
            yield from sorted(
                entry for entry in path.iterdir() if entry.is_file() and not is_temporary(entry.name)
            )
        else:
            yield path


def _check_input_format(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, Path | None]:
    try:
        reader, stylesheet = resolve_input_format(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if stylesheet is not None and not stylesheet.is_file():
        raise click.BadParameter(f"the stylesheet {stylesheet} does not exist (a path relative to {Path.cwd()})")
    return reader, stylesheet


def _check_delimiter(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if len(value) != 1:
        raise click.BadParameter(f"must be one character, got {value!r}")
    return value


def _check_encoding(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    problem = encoding_problem(value)
    if problem:
        raise click.BadParameter(problem)
    return value


@click.command("map")
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--input-format", "input_format", default="csv", show_default=True, callback=_check_input_format,
              help=f"How the exports are written: {', '.join(f for f in INPUT_FORMATS if f != 'xslt')}, "
              "or the path of your own .xsl stylesheet (see docs/inputs.md).")
@click.option("--syntax", type=click.Choice([s.value for s in Syntax]), default=Syntax.UBL.value,
              show_default=True, help="Syntax of the documents written.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A new or empty directory to write one document per invoice into.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per invoice instead of a line of text.")
@click.option("--delimiter", default=";", show_default=True, callback=_check_delimiter, help="CSV delimiter.")
@click.option("--encoding", default="utf-8", show_default=True, callback=_check_encoding, help="CSV encoding.")
@click.option("--decimal", type=click.Choice([".", ","]), default=".", show_default=True,
              help="CSV decimal separator.")
@click.option("--date-format", default="%Y-%m-%d", show_default=True, help="CSV date format (strptime).")
@click.option("--credit-note-as-invoice", is_flag=True,
              help="UBL: a credit note (381) as an Invoice of type 381. Refused, naming the rule: EN 16931 "
              "(BR-CL-01) puts 381 only in a CreditNote.")
@click.option("--partner-code", default=None,
              help="CPP Facture Mixte: your Chorus Pro EDI partner code, the emitter of the envelope.")
@click.option("--vat-rounding", type=click.Choice(list(VAT_ROUNDING_POLICIES)), default="erp", show_default=True,
              help="The VAT the ERP states: sent when rounding line by line explains it (erp), or recomputed per "
              "rate (recompute), as a channel's vat_rounding.")
@click.option("--attachments", "attachment_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where invoice_pdf and attachments are read from (default: attachments/ beside each export).")
def map_command(
    inputs: tuple[Path, ...],
    input_format: tuple[str, Path | None],
    syntax: str,
    out_dir: Path,
    as_json: bool,
    delimiter: str,
    encoding: str,
    decimal: str,
    date_format: str,
    credit_note_as_invoice: bool,
    partner_code: str | None,
    vat_rounding: str,
    attachment_dir: Path | None,
) -> None:
    """Map each invoice of the INPUT exports (files, or directories of files) to a syntax.

    Writes one document per invoice into --out, named <supplier SIRET>_<invoice
    number>, and prints one line per invoice: OK with the document written, or ERR
    with every reason. Documents are not validated, and neither the configuration
    nor the store is used.

    Exit code 0 when every invoice was mapped, 1 when any was not.
    """
    reader, stylesheet = input_format
    target = Syntax(syntax)
    options = CsvOptions(delimiter=delimiter, encoding=encoding, decimal=decimal, date_format=date_format)
    output = OutputDir.create(out_dir, SYNTAXES[target].extension)
    mapped = failed = 0
    for path in export_files(inputs):
        results = map_export(path, reader, target, options, stylesheet, credit_note_as_invoice=credit_note_as_invoice,
                             partner_code=partner_code, attachment_dir=attachment_dir, vat_rounding=vat_rounding)
        for result in results:
            outcome = _written(result, output, str(path))
            click.echo(json.dumps(outcome.as_json(), ensure_ascii=False) if as_json else outcome.as_text())
            if not as_json:
                # On stderr, so that stdout stays one line per invoice.
                for warning in outcome.warnings:
                    click.echo(f"warning: {outcome.source}:{outcome.line}  {outcome.invoice_number}  {warning}",
                               err=True)
            if outcome.mapped:
                mapped += 1
            else:
                failed += 1
    # On stderr, so that stdout stays one line per invoice for a script to read.
    click.echo(f"{mapped} mapped to {target.value} in {out_dir}, {failed} not mapped", err=True)
    if failed:
        sys.exit(1)


def _written(result: Mapped | Outcome, output: OutputDir, source: str) -> Outcome:
    if isinstance(result, Outcome):
        return result
    invoice = result.invoice
    return Outcome(source, invoice.first_line, invoice.number, output=output.write(invoice, result.document),
                   warnings=invoice.warnings)
