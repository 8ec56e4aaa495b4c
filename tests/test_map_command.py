"""``gateway map`` through the real CLI: one document per invoice, one line per invoice,
and nothing written anywhere but the output directory."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from lxml import etree

from gateway.intake.records import HEADER_FIELDS, LINE_FIELDS
from gateway.intake.sample import SampleExport, write_sample_export
from gateway.validation.xsd import check_xsd
from cli_runner import gateway

#: Planted mistakes the reader catches; the others (a SIRET failing its checksum, a
#: buyer unknown to Chorus Pro) are found by validation and Chorus Pro, which ``map``
#: does not run: those invoices map.
READER_MISTAKES = {"empty item_name": "item_name", "non-numeric unit_price": "unit_price"}


def _isolated(tmp_path: Path) -> dict[str, str]:
    """An environment in which loading the configuration fails and any store would be
    created in a directory the test then finds absent."""
    return {"GATEWAY_CONFIG": str(tmp_path / "absent" / "gateway.toml"), "GATEWAY_DATA_DIR": str(tmp_path / "data")}


def _rows_by_invoice(path: Path, delimiter: str = ";") -> dict[str, list[tuple[int, dict[str, str]]]]:
    """Invoice number → its rows with their physical line (the samples write one line per row)."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows: dict[str, list[tuple[int, dict[str, str]]]] = {}
        for line, row in enumerate(csv.DictReader(handle, delimiter=delimiter), start=2):
            rows.setdefault(row["invoice_number"], []).append((line, row))
    return rows


def _error_line(mistake: str, rows: list[tuple[int, dict[str, str]]]) -> int:
    """The line the planted mistake is on (sample.py: the last row's item, the first row's price)."""
    return rows[-1][0] if mistake == "empty item_name" else rows[0][0]


def _map(tmp_path: Path, *args: str) -> tuple[int, list[str], str]:
    result = gateway("map", *args, env=_isolated(tmp_path), check=False)
    return result.returncode, result.stdout.splitlines(), result.stderr


def _assert_no_trace(tmp_path: Path, out: Path) -> None:
    assert not (tmp_path / "data").exists(), "map created the data directory"
    assert not (tmp_path / "absent").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "a temporary file was left behind"


def _schema_valid(path: Path, root: str) -> None:
    tree = etree.parse(str(path))
    assert etree.QName(tree.getroot()).localname == root
    assert check_xsd(tree) == [], path.name


@pytest.fixture
def sample(tmp_path: Path) -> SampleExport:
    manifest = write_sample_export(tmp_path / "in" / "export.csv", 25, seed=7, with_errors=True)
    assert set(manifest.planted.values()) >= set(READER_MISTAKES), "sample.py no longer plants these"
    return manifest


def test_one_valid_document_per_good_invoice_and_one_err_line_per_reader_mistake(
    tmp_path: Path, sample: SampleExport
) -> None:
    out = tmp_path / "out"
    code, lines, stderr = _map(tmp_path, str(sample.path), "--out", str(out))

    assert code == 1, stderr
    rows = _rows_by_invoice(sample.path)
    bad = {number: mistake for number, mistake in sample.planted.items() if mistake in READER_MISTAKES}
    good = [number for number in sample.expected if number not in bad]
    assert len(lines) == len(sample.expected)
    written = sorted(out.iterdir())
    assert len(written) == len(good)
    for path in written:
        _schema_valid(path, "Invoice")
    for number in good:
        first_line = rows[number][0][0]
        assert any(line.startswith(f"OK  {sample.path}:{first_line}  {number}  -> {out}/") for line in lines), number
    errors = [line for line in lines if line.startswith("ERR ")]
    assert len(errors) == len(bad)
    for number, mistake in bad.items():
        first_line = rows[number][0][0]
        (line,) = [e for e in errors if e.startswith(f"ERR {sample.path}:{first_line}  {number}  ")]
        field = READER_MISTAKES[mistake]
        assert f"field {field!r}" in line
        error_line = _error_line(mistake, rows[number])
        if error_line != first_line:
            assert f"line {error_line}, field {field!r}" in line
    assert f"{len(good)} mapped to ubl in {out}, {len(bad)} not mapped" in stderr
    _assert_no_trace(tmp_path, out)


def test_json_lines_say_the_same_as_the_text(tmp_path: Path, sample: SampleExport) -> None:
    _, text_lines, _ = _map(tmp_path, str(sample.path), "--out", str(tmp_path / "text"))
    code, json_lines, _ = _map(tmp_path, str(sample.path), "--out", str(tmp_path / "json"), "--json")

    assert code == 1
    objects = [json.loads(line) for line in json_lines]
    assert len(objects) == len(text_lines)
    rows = _rows_by_invoice(sample.path)
    for obj, text in zip(objects, text_lines, strict=True):
        assert set(obj) == {"source", "line", "invoice_number", "status", "output", "errors", "warnings"}
        assert text.startswith(f"{'OK ' if obj['status'] == 'mapped' else 'ERR'} {obj['source']}:{obj['line']}  "
                               f"{obj['invoice_number']}  ")
        if obj["status"] == "mapped":
            assert obj["errors"] == []
            assert Path(obj["output"]).is_file()
            assert Path(obj["output"]).name == text.rsplit("/", 1)[1]
            continue
        assert obj["output"] is None
        mistake = sample.planted[obj["invoice_number"]]
        (error,) = obj["errors"]
        assert error["file"] == sample.path.name
        assert error["field"] == READER_MISTAKES[mistake]
        assert error["line"] == _error_line(mistake, rows[obj["invoice_number"]])
        assert error["message"] and error["message"] in text


def test_cii(tmp_path: Path, sample: SampleExport) -> None:
    out = tmp_path / "out"
    code, lines, _ = _map(tmp_path, str(sample.path), "--syntax", "cii", "--out", str(out))

    assert code == 1
    written = sorted(out.iterdir())
    assert len(written) == sum(line.startswith("OK ") for line in lines) == len(sample.expected) - 2
    for path in written:
        _schema_valid(path, "CrossIndustryInvoice")


def _to_jsonl(csv_path: Path, jsonl_path: Path, renumber: dict[str, str]) -> None:
    """The same invoices as JSON Lines (docs/inputs.md), some numbers changed."""
    with jsonl_path.open("w", encoding="utf-8") as handle:
        for number, rows in _rows_by_invoice(csv_path).items():
            first = rows[0][1]
            invoice: dict[str, object] = {name: first[name] for name in HEADER_FIELDS if first.get(name)}
            invoice["invoice_number"] = renumber.get(number, number)
            invoice["lines"] = [{name: row[name] for name in LINE_FIELDS if row.get(name)} for _, row in rows]
            handle.write(json.dumps(invoice, ensure_ascii=False) + "\n")


def test_jsonl_input_and_numbers_that_are_not_file_names(tmp_path: Path) -> None:
    manifest = write_sample_export(tmp_path / "export.csv", 4, with_errors=False)
    first, second, third, _ = manifest.expected
    # Two numbers that only differ by characters unsafe in a file name, and one by case.
    renumber = {first: "A/1 ../x", second: "A:1 ../x", third: "a/1 ../X"}
    export = tmp_path / "export.jsonl"
    _to_jsonl(manifest.path, export, renumber)
    out = tmp_path / "out"

    code, lines, stderr = _map(tmp_path, str(export), "--input-format", "jsonl", "--out", str(out), "--json")

    assert code == 0, stderr
    objects = [json.loads(line) for line in lines]
    assert [o["line"] for o in objects] == [1, 2, 3, 4]
    assert [o["invoice_number"] for o in objects[:3]] == list(renumber.values())
    outputs = [Path(o["output"]) for o in objects]
    assert all(path.parent == out for path in outputs)
    assert len({path.name for path in outputs}) == 4
    assert [path.name for path in outputs[:3]] == [
        "40483304800022_A_1_.._x.xml",
        "40483304800022_A_1_.._x-2.xml",
        # Distinct on a case-sensitive filesystem; "-3" where the filesystem says it is taken.
        "40483304800022_a_1_.._X.xml" if _case_sensitive(out) else "40483304800022_a_1_.._X-3.xml",
    ]
    for path in outputs:
        _schema_valid(path, "Invoice")
    _assert_no_trace(tmp_path, out)


def _case_sensitive(directory: Path) -> bool:
    probe = directory / "Case-Probe"
    probe.touch()
    try:
        return not (directory / "case-probe").exists()
    finally:
        probe.unlink()


def _spoil_encoding(path: Path, numbers: list[int]) -> None:
    """Put a cp1252 byte into the supplier name on lines ``numbers`` (1-based) of a UTF-8 export."""
    lines = path.read_bytes().split(b"\n")
    for number in numbers:
        lines[number - 1] = lines[number - 1].replace(b"Exemplaires", b"Exemplaires \xe9", 1)
    path.write_bytes(b"\n".join(lines))


def test_unreadable_file_is_one_err_line_and_other_files_are_still_mapped(tmp_path: Path) -> None:
    spoilt = write_sample_export(tmp_path / "in" / "a-spoilt.csv", 6, with_errors=False, number_prefix="A")
    good = write_sample_export(tmp_path / "in" / "b-good.csv", 5, with_errors=False, number_prefix="B")
    rows = _rows_by_invoice(spoilt.path)
    fourth = list(rows)[3]
    bad_line = rows[fourth][0][0]
    _spoil_encoding(spoilt.path, [line for line, _ in rows[fourth]])  # all its rows: header fields agree
    # A directory: its files in name order, skipping what an ERP is still writing.
    (tmp_path / "in" / ".c-being-written.csv").write_text("half a file", encoding="utf-8")
    (tmp_path / "in" / "d.csv.part").write_text("half a file", encoding="utf-8")
    out = tmp_path / "out"

    code, lines, _ = _map(tmp_path, str(tmp_path / "in"), "--out", str(out))

    assert code == 1
    # The reader knows the third invoice is complete only once it has read the next
    # row, the spoilt one: two invoices come out before the file-level error.
    assert len(lines) == 2 + 1 + 5
    assert all(line.startswith(f"OK  {spoilt.path}:") for line in lines[:2])
    assert lines[2].startswith(f"ERR {spoilt.path}:{bad_line}  -  byte 0xe9 at column ")
    assert "is not valid utf-8" in lines[2]
    assert all(line.startswith(f"OK  {good.path}:") for line in lines[3:])
    assert len(list(out.iterdir())) == 2 + 5

    # The same file in the ERP's real encoding is read whole.
    code, lines, _ = _map(tmp_path, str(spoilt.path), "--encoding", "cp1252", "--out", str(tmp_path / "out2"))
    assert code == 0
    assert len(lines) == 6


def test_same_number_twice_gets_two_files(tmp_path: Path) -> None:
    first = write_sample_export(tmp_path / "one.csv", 2, with_errors=False)
    second = write_sample_export(tmp_path / "two.csv", 2, with_errors=False, seed=2)
    out = tmp_path / "out"

    code, lines, _ = _map(tmp_path, str(first.path), str(second.path), "--out", str(out))

    assert code == 0
    names = sorted(path.name for path in out.iterdir())
    assert names == [
        "40483304800022_F-2026-000001-2.xml",
        "40483304800022_F-2026-000001.xml",
        "40483304800022_F-2026-000002-2.xml",
        "40483304800022_F-2026-000002.xml",
    ]
    assert lines[2].endswith("40483304800022_F-2026-000001-2.xml")


def test_a_missing_file_is_a_usage_error_and_nothing_is_mapped(tmp_path: Path, sample: SampleExport) -> None:
    out = tmp_path / "out"
    code, lines, stderr = _map(tmp_path, str(sample.path), str(tmp_path / "missing.csv"), "--out", str(out))

    assert code == 2
    assert lines == []
    assert "missing.csv" in stderr and "does not exist" in stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--input-format", "xlsx", "unknown input format 'xlsx'"),
        ("--input-format", "absent.xsl", "the stylesheet absent.xsl does not exist"),
        ("--syntax", "pdf", "'pdf' is not one of"),
        ("--delimiter", ";;", "must be one character"),
        ("--encoding", "klingon", "unknown encoding 'klingon'"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, sample: SampleExport, option: str, value: str,
                                      message: str) -> None:
    code, lines, stderr = _map(tmp_path, str(sample.path), "--out", str(tmp_path / "out"), option, value)

    assert code == 2
    assert lines == []
    assert message in stderr


def test_credit_note_as_invoice_is_refused_for_credit_notes_naming_the_rule(tmp_path: Path) -> None:
    """EN 16931 (BR-CL-01) refuses a credit note written as an Invoice of type 381: the
    flag refuses each credit note with that reason; invoices map as without it."""
    manifest = write_sample_export(tmp_path / "export.csv", 2, with_errors=False)
    text = manifest.path.read_text(encoding="utf-8")
    manifest.path.write_text(text.replace("F-2026-000001;2026-11-02;380;", "F-2026-000001;2026-11-02;381;"),
                             encoding="utf-8")
    credit_note = "40483304800022_F-2026-000001.xml"

    code, _, stderr = _map(tmp_path, str(manifest.path), "--out", str(tmp_path / "default"))
    assert code == 0, stderr
    _schema_valid(tmp_path / "default" / credit_note, "CreditNote")

    out = tmp_path / "as-invoice"
    code, lines, stderr = _map(tmp_path, str(manifest.path), "--out", str(out), "--credit-note-as-invoice")
    assert code == 1
    assert lines[0].startswith("ERR ") and "F-2026-000001" in lines[0] and "BR-CL-01" in lines[0]
    assert lines[1].startswith("OK ")
    assert [p.name for p in out.iterdir()] == ["40483304800022_F-2026-000002.xml"]
    _schema_valid(out / "40483304800022_F-2026-000002.xml", "Invoice")
    assert "Traceback" not in stderr


def test_out_must_be_new_or_empty(tmp_path: Path, sample: SampleExport) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "40483304800022_F-2026-000001.xml").write_text("from an earlier run", encoding="utf-8")

    code, lines, stderr = _map(tmp_path, str(sample.path), "--out", str(out))

    assert code == 2
    assert lines == []
    assert "is not empty; give a new or empty directory" in stderr
    assert [p.name for p in out.iterdir()] == ["40483304800022_F-2026-000001.xml"]


def test_idoc_input(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "idoc-invoic02.xml"
    out = tmp_path / "out"

    code, lines, stderr = _map(tmp_path, str(example), "--input-format", "idoc", "--out", str(out), "--json")

    assert code == 0, stderr
    objects = [json.loads(line) for line in lines]
    assert objects and all(o["status"] == "mapped" for o in objects)
    for obj in objects:
        _schema_valid(Path(obj["output"]), "Invoice")


def _with_pdfs(tmp_path: Path) -> Path:
    """A two-invoice export whose first invoice names its PDF; the second names none."""
    from test_facturx import text_pdf

    source = tmp_path / "in" / "export.csv"
    write_sample_export(source, 2, seed=3, with_errors=False)
    with source.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    first = rows[0]["invoice_number"]
    export = tmp_path / "in" / "with-pdf.csv"
    with export.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0], "invoice_pdf"], delimiter=";")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "invoice_pdf": "facture.pdf" if row["invoice_number"] == first else ""})
    (tmp_path / "in" / "attachments").mkdir()
    (tmp_path / "in" / "attachments" / "facture.pdf").write_bytes(text_pdf())
    source.unlink()
    return export


def test_cpp_facture_mixte_carries_the_pdf_and_passes_the_project_xsd(tmp_path: Path) -> None:
    import base64

    export = _with_pdfs(tmp_path)
    out = tmp_path / "out"
    code, lines, _ = _map(tmp_path, str(export), "--syntax", "cpp", "--out", str(out))
    assert code == 1, "without --partner-code no CPP envelope can be written"
    assert [line.startswith("ERR") and "--partner-code" in line for line in lines] == [True, False], lines
    out2 = tmp_path / "out2"
    code, lines, _ = _map(tmp_path, str(export), "--syntax", "cpp", "--partner-code", "AAA123", "--out", str(out2))
    assert code == 1 and lines[0].startswith("OK") and "invoice_pdf" in lines[1], lines
    schema = etree.XMLSchema(etree.parse(str(Path(__file__).parent.parent / "schemas" / "cpp-facture-mixte.xsd")))
    documents = sorted(out2.glob("*.xml"))
    assert len(documents) == 1
    pdfs = []
    for document in documents:
        tree = etree.parse(str(document), etree.XMLParser(huge_tree=True))
        assert schema.validate(tree), schema.error_log
        assert tree.findtext("Enveloppe/EnveloppeUnitaire/Partenaires/Emetteur/Id") == "AAA123"
        pdfs += [base64.b64decode(text) for text in tree.xpath("//PJ/Contenu/text()")]
    assert pdfs == [(tmp_path / "in" / "attachments" / "facture.pdf").read_bytes()]


def test_factur_x_embeds_the_cii_into_the_invoice_pdf(tmp_path: Path) -> None:
    from gateway.mapping.facturx import extract_cii

    export = _with_pdfs(tmp_path)
    out = tmp_path / "out"
    code, lines, _ = _map(tmp_path, str(export), "--syntax", "facturx", "--out", str(out))
    assert code == 1, lines
    ok = [line for line in lines if line.startswith("OK")]
    err = [line for line in lines if line.startswith("ERR")]
    assert len(ok) == 1 and len(err) == 1 and "invoice_pdf" in err[0], lines
    [pdf] = out.glob("*.pdf")
    cii = etree.fromstring(extract_cii(pdf.read_bytes()))
    assert check_xsd(etree.ElementTree(cii)) == []
    number = ok[0].split()[2]
    assert cii.findtext("{*}ExchangedDocument/{*}ID") == number
    _assert_no_trace(tmp_path, out)
