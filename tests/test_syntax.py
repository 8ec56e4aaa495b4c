"""gateway.xml.syntax: one registry of what each invoice syntax is, which the stages read."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from gateway.domain import Syntax
from gateway.intake.csv_export import CsvOptions, read_csv_export
from gateway.intake.sample import write_sample_export
from gateway.invoice import ExportedInvoice
from gateway.mapping import map_invoice
from gateway.resources import mapping_path
from gateway.validation.invoice import validate_document
from gateway.validation.xsd import schema_files
from gateway.xml import syntax


@pytest.fixture(scope="module")
def invoice(tmp_path_factory: pytest.TempPathFactory) -> ExportedInvoice:
    path = tmp_path_factory.mktemp("syntax") / "export.csv"
    write_sample_export(path, 1, with_errors=False)
    [first] = list(read_csv_export(path, CsvOptions()))
    assert isinstance(first, ExportedInvoice)
    return first


def test_every_syntax_is_known_once() -> None:
    assert set(syntax.SYNTAXES) == set(Syntax)
    assert all(known.syntax is key for key, known in syntax.SYNTAXES.items())
    codes = [known.interface_code for known in syntax.SYNTAXES.values()]
    assert len(set(codes)) == len(codes)
    assert all(syntax.of_interface(code).interface_code == code for code in codes)
    assert syntax.VALIDATED == (Syntax.UBL, Syntax.CII)


def test_the_files_it_names_are_installed() -> None:
    for known in syntax.SYNTAXES.values():
        if known.stylesheet is not None:
            assert mapping_path(known.stylesheet).is_file()
    files = schema_files()
    assert set(files) == {root for known in syntax.SYNTAXES.values() for root in known.roots}
    assert all(path.is_file() for path in files.values())


@pytest.mark.parametrize("target", [Syntax.UBL, Syntax.CII])
def test_what_mapping_writes_is_what_the_registry_says(target: Syntax, invoice: ExportedInvoice) -> None:
    """The stylesheet's output has one of the syntax's roots, carries its interface code,
    holds one line element per invoice line and puts BT-1 where the rules read it; and
    validation, reading the same registry, takes it for that syntax."""
    document = map_invoice(invoice, target)
    root = etree.fromstring(document)
    known = syntax.of_root(root.tag)
    assert known is not None and known.syntax is target
    assert known.interface_code.encode() in document
    lines = list(root.iter(*known.line_tags))
    assert len(lines) == len(invoice.lines)
    terms = known.terms
    assert terms is not None
    assert root.xpath(f"string({terms.number})", namespaces=syntax.NS) == invoice.number
    assert validate_document(document, profile=None).syntax == target.value


def test_credit_notes_have_their_own_root(invoice: ExportedInvoice) -> None:
    credit_note = dataclasses.replace(invoice, type_code="381")
    root = etree.fromstring(map_invoice(credit_note, Syntax.UBL))
    assert root.tag == syntax.UBL_CREDIT_NOTE_ROOT and syntax.of_root(root.tag).syntax is Syntax.UBL


def test_reading_the_registry_loads_no_xml_library() -> None:
    """The configuration may read it (which syntaxes exist, their interface codes) without
    paying for lxml, Saxon or factur-x."""
    probe = ("import sys, gateway.xml.syntax; "
             "print(sorted(m for m in ('lxml', 'saxonche', 'facturx') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.stdout.strip() == "[]"
