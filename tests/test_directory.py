"""``gateway directory`` through the real CLI, on the examples of ``docs/directory.md``:
what an import loads, what it refuses, and that a refused import changes nothing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from stdnum.fr import siret as stdnum_siret

from gateway.directory import DirectoryEntry
from gateway.store import Store, Tx
from gateway.store import db
from cli_runner import PROJECT, gateway

EXAMPLES = PROJECT / "docs" / "examples" / "directory"
STRUCTURES = EXAMPLES / "structures.csv"
SERVICES = EXAMPLES / "services.csv"
XML = EXAMPLES / "directory.xml"

#: What the examples hold, as the validation layer will read it.
EXPECTED = {
    "11000000700010": DirectoryEntry(
        "11000000700010",
        "Ministère de l'Exemple",
        service_required=True,
        services={"ACHATS": True, "COMPTA": True, "ANCIEN": False},
    ),
    "21750001600019": DirectoryEntry("21750001600019", "Commune de Démonstration", commitment_required=True),
    "26750000700013": DirectoryEntry(
        "26750000700013", "Centre hospitalier de Répétition", service_or_commitment=True, services={"URGENCES": True}
    ),
    # Written with 13 digits, as a spreadsheet leaves it.
    "02175001300019": DirectoryEntry(
        "02175001300019", "Syndicat intercommunal des Zéros", service_required=True, services={"SIEGE": False}
    ),
    "22750000600019": DirectoryEntry("22750000600019", "Établissement public fermé", active=False),
    # Fails the Luhn check, as some real directory identifiers do.
    "13000000000001": DirectoryEntry("13000000000001", "Office de la Clé Fausse"),
}
SUMMARY = re.compile(
    r"directory imported: (?P<structures>\d+) structures, (?P<services>\d+) services, "
    r"(?P<skipped>\d+) skipped \(not SIRET\), (?P<services_skipped>\d+) services skipped, "
    r"(?P<padded>\d+) SIRETs padded; file (?P<file>.+); sha256 (?P<sha256>[0-9a-f]{64})$"
)


class Site:
    """A data directory (and so a SQLite store of its own), or the given database."""

    def __init__(self, tmp_path: Path, database_url: str | None = None) -> None:
        self.data = tmp_path / "data"
        self.url = database_url or f"sqlite:///{self.data / 'gateway.db'}"
        self.env = {"GATEWAY_DATABASE_URL": self.url}
        if database_url and database_url.startswith("postgresql"):
            self.run("db", "upgrade")

    @classmethod
    def copy_of(cls, template: Site, tmp_path: Path) -> Site:
        """A site whose store starts as a copy of ``template``'s (SQLite only)."""
        shutil.copytree(template.data, tmp_path / "data")
        return cls(tmp_path)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return gateway("--data-dir", str(self.data), *args, env=self.env, check=check)

    def load(self, *files: Path, extra: tuple[str, ...] = ()) -> dict[str, str]:
        args = [str(files[0])] + (["--services", str(files[1])] if len(files) > 1 else [])
        line = self.run("directory", "import", *args, *extra).stdout.strip()
        match = SUMMARY.fullmatch(line)
        assert match, line
        return match.groupdict()

    def refused(self, *args: str) -> str:
        """The one-line message of an import that must fail with exit 1."""
        result = self.run("directory", "import", *args, check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        message = result.stderr.strip().splitlines()[-1]
        assert message.startswith("error: "), message
        return message

    def status(self) -> dict[str, Any]:
        return json.loads(self.run("directory", "status", "--json").stdout)

    def entries(self) -> dict[str, DirectoryEntry]:
        """The examples' SIRETs found in the store, checked to be all the store holds."""
        with self.transaction() as tx:
            found = {s: tx.directory_entry(s) for s in EXPECTED}
            size = tx.directory_size()
        entries = {s: e for s, e in found.items() if e is not None}
        assert size == len(entries), "the store holds a structure the examples do not name"
        return entries

    def snapshot(self) -> tuple[Any, ...]:
        """The last import's row and the entries: what a refused import must leave as it was."""
        with self.transaction() as tx:
            last = tx.last_directory_import()
            row = (last.id, last.file_name, last.sha256, last.structures, last.services) if last else None
        return row, self.entries()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        store = Store(db.make_engine(self.url))
        try:
            with store.transaction() as tx:
                yield tx
        finally:
            store.close()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """A store holding the CSV examples, imported once and copied by the tests that start from it."""
    site = Site(tmp_path_factory.mktemp("loaded"))
    site.load(STRUCTURES, SERVICES)
    return site


def _write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _with_cell(text: str, line: int, column: str, value: str) -> str:
    """The CSV text with one cell replaced (line 1 is the header)."""
    lines = text.splitlines(keepends=True)
    position = lines[0].rstrip("\r\n").split(";").index(column)
    cells = lines[line - 1].rstrip("\r\n").split(";")
    cells[position] = value
    lines[line - 1] = ";".join(cells) + "\n"
    return "".join(lines)


def _without_column(text: str, column: str) -> str:
    rows = [line.split(";") for line in text.splitlines()]
    position = rows[0].index(column)
    return "".join(";".join(r[:position] + r[position + 1 :]) + "\n" for r in rows)


# -- what an import loads ------------------------------------------------------------------


def test_the_examples_are_what_the_docs_say() -> None:
    """One SIRET fails Luhn, one is written with 13 digits; the others are valid SIRETs."""
    assert not stdnum_siret.is_valid("13000000000001")
    assert all(stdnum_siret.is_valid(s) for s in EXPECTED if s != "13000000000001")
    assert ";2175001300019;" in STRUCTURES.read_text(encoding="utf-8")


def test_csv_with_services_loads_requirements_and_services(tmp_path: Path) -> None:
    """Structures and services CSV: every SIRET entry with its flags and services; `show` prints them."""
    site = Site(tmp_path)
    summary = site.load(STRUCTURES, SERVICES)
    assert summary | {"sha256": ""} == {
        "structures": "6",
        "services": "5",
        "skipped": "1",
        "services_skipped": "1",
        "padded": "1",
        "file": "structures.csv + services.csv",
        "sha256": "",
    }
    assert site.entries() == EXPECTED

    shown = json.loads(site.run("directory", "show", "11000000700010", "--json").stdout)
    assert shown == {
        "siret": "11000000700010",
        "name": "Ministère de l'Exemple",
        "active": True,
        "service_required": True,
        "commitment_required": False,
        "service_or_commitment": False,
        "services": [
            {"code": "ACHATS", "active": True},
            {"code": "ANCIEN", "active": False},
            {"code": "COMPTA", "active": True},
        ],
    }
    text = site.run("directory", "show", "26750000700013").stdout
    assert "Centre hospitalier de Répétition" in text and "URGENCES  active" in text

    status = site.status()
    assert status["structures"] == 6
    assert status["last_import"] | {"imported_at": None} == {
        "file": "structures.csv + services.csv",
        # The digest of both files one after the other: `cat structures.csv services.csv | sha256sum`.
        "sha256": summary["sha256"],
        "imported_at": None,
        "structures": 6,
        "services": 5,
    }


def test_xml_gives_the_same_entries_as_the_csv(tmp_path: Path) -> None:
    """The XML example is the CSV pair in the documented XML shape: same entries, same counts."""
    site = Site(tmp_path)
    summary = site.load(XML)
    assert (summary["structures"], summary["services"], summary["skipped"], summary["padded"]) == ("6", "5", "1", "1")
    # The RIDET structure's nested service goes with it.
    assert summary["services_skipped"] == "1"
    assert site.entries() == EXPECTED


def test_padded_siret_is_stored_with_14_digits(loaded: Site) -> None:
    """A SIRET that lost its leading zero is stored with 14 digits, and `show` pads as import does."""
    assert loaded.entries()["02175001300019"].services == {"SIEGE": False}
    shown = json.loads(loaded.run("directory", "show", "2175001300019", "--json").stdout)
    assert (shown["siret"], shown["services"]) == ("02175001300019", [{"code": "SIEGE", "active": False}])


def test_non_siret_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    """The RIDET row is neither an entry nor an error; it and its service are counted as skipped."""
    site = Site(tmp_path)
    summary = site.load(STRUCTURES, SERVICES)
    assert (summary["structures"], summary["skipped"], summary["services_skipped"]) == ("6", "1", "1")
    assert "00000001234567" not in site.entries()
    absent = site.run("directory", "show", "1234567", check=False)
    assert absent.returncode == 1
    assert "00000001234567 is not in the directory of 6 structures" in absent.stderr


def test_reimport_replaces_the_directory(loaded: Site, tmp_path: Path) -> None:
    """A structure absent from the new file is gone, with its services (and no services file is warned of)."""
    site = Site.copy_of(loaded, tmp_path)
    first_three = "".join(STRUCTURES.read_text(encoding="utf-8").splitlines(keepends=True)[:3])
    result = site.run("directory", "import", str(_write(tmp_path, "structures.csv", first_three)))
    summary = SUMMARY.fullmatch(result.stdout.strip())
    assert summary, result.stdout
    assert (summary["structures"], summary["services"], summary["file"]) == ("2", "0", "structures.csv")
    events = [json.loads(line)["event"] for line in result.stderr.splitlines() if line.startswith("{")]
    assert events == ["directory.without_services", "directory.imported"]
    entries = site.entries()
    assert sorted(entries) == ["11000000700010", "21750001600019"]
    assert entries["11000000700010"].services == {}


def test_encodings_utf8_with_bom_and_cp1252(tmp_path: Path) -> None:
    """A UTF-8 export with a BOM and a cp1252 one give the same names."""
    text = STRUCTURES.read_text(encoding="utf-8")
    for encoding, name in (("utf-8-sig", "bom.csv"), ("cp1252", "windows.csv")):
        site = Site(tmp_path / encoding)
        site.load(_write(tmp_path, name, text, encoding))
        entries = site.entries()
        assert entries["22750000600019"].name == "Établissement public fermé", encoding


def test_format_from_the_option_when_the_extension_says_nothing(tmp_path: Path) -> None:
    site = Site(tmp_path)
    renamed = _write(tmp_path, "annuaire.txt", XML.read_text(encoding="utf-8"))
    assert "pass --format csv or xml" in site.refused(str(renamed))
    assert site.load(renamed, extra=("--format", "xml"))["structures"] == "6"
    mixed = site.run("directory", "import", str(XML), "--services", str(SERVICES), check=False)
    assert mixed.returncode == 2 and "--services goes with a structures CSV" in mixed.stderr


# -- what an import refuses, and that nothing changes then -----------------------------------

_TEXT = STRUCTURES.read_text(encoding="utf-8")
_XML_TEXT = XML.read_text(encoding="utf-8")

BAD_FILES = {
    "bad flag": (
        "structures.csv",
        _with_cell(_TEXT, 3, "GestionEngagement", "peut-être"),
        ["structures.csv, line 3, field 'GestionEngagement'", "'peut-être' is not a flag"],
    ),
    "empty flag": (
        "structures.csv",
        _with_cell(_TEXT, 4, "GestionService", ""),
        ["structures.csv, line 4, field 'GestionService'", "'' is not a flag"],
    ),
    "letters in a SIRET": (
        "structures.csv",
        _with_cell(_TEXT, 4, "Identifiant", "2675000070001X"),
        ["structures.csv, line 4, field 'Identifiant'", "digits only"],
    ),
    "SIRET too long": (
        "structures.csv",
        _with_cell(_TEXT, 2, "Identifiant", "110000007000100"),
        ["structures.csv, line 2, field 'Identifiant'", "15 digits, at most 14"],
    ),
    "missing column": (
        "structures.csv",
        _without_column(_TEXT, "GestionServiceEngagement"),
        ["structures.csv, line 1, field 'GestionServiceEngagement'", "missing column GestionServiceEngagement"],
    ),
    "duplicate SIRET": (
        "structures.csv",
        _with_cell(_TEXT, 6, "Identifiant", "21750001600019"),
        ["structures.csv, line 6, field 'Identifiant'", "already on line 3"],
    ),
    "shifted row": (
        "structures.csv",
        _with_cell(_TEXT, 5, "RaisonSociale", "Syndicat; intercommunal"),
        ["structures.csv, line 5", "22 fields where the header has 21"],
    ),
    "no SIRET structure": (
        "structures.csv",
        "".join(row for row in _TEXT.splitlines(keepends=True) if not row.startswith(("SIRET;", "1;"))),
        ["structures.csv: no structure identified by SIRET"],
    ),
    "XML bad flag": (
        "directory.xml",
        _XML_TEXT.replace("<GestionService>1</GestionService>", "<GestionService>\n2</GestionService>"),
        ["directory.xml, line 53, field 'GestionService'", "'2' is not a flag"],
    ),
    "XML missing element": (
        "directory.xml",
        _XML_TEXT.replace("<RaisonSociale>Commune de Démonstration</RaisonSociale>", ""),
        ["directory.xml, line 27, field 'RaisonSociale'", "<Structure> has no <RaisonSociale>"],
    ),
    "XML not well-formed": (
        "directory.xml",
        _XML_TEXT.replace("</Identifiant>\n    <RaisonSociale>Office", "</Identifant>\n    <RaisonSociale>Office"),
        ["directory.xml, line 71", "not well-formed XML"],
    ),
    "XML with a DOCTYPE": (
        "directory.xml",
        _XML_TEXT.replace("<Annuaire>", '<!DOCTYPE Annuaire [<!ENTITY x "y">]>\n<Annuaire>'),
        ["directory.xml: the XML has a DOCTYPE"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_is_refused_and_the_directory_is_unchanged(loaded: Site, tmp_path: Path, case: str) -> None:
    """All or nothing: one line naming file, line and column; exit 1; the previous import stands."""
    site = Site.copy_of(loaded, tmp_path)
    before = site.snapshot()
    name, text, expected = BAD_FILES[case]
    message = site.refused(str(_write(tmp_path, name, text)))
    for part in expected:
        assert part in message, message
    assert site.snapshot() == before
    assert before[1] == EXPECTED


def test_a_bad_services_file_is_refused_with_its_line(loaded: Site, tmp_path: Path) -> None:
    site = Site.copy_of(loaded, tmp_path)
    before = site.snapshot()
    text = _with_cell(SERVICES.read_text(encoding="utf-8"), 3, "EstActif", "actif")
    services = _write(tmp_path, "services.csv", text)
    message = site.refused(str(STRUCTURES), "--services", str(services))
    assert "services.csv, line 3, field 'EstActif': 'actif' is not a flag" in message
    assert site.snapshot() == before


# -- both store backends -------------------------------------------------------------------


def test_import_replace_and_refusal_on_each_backend(tmp_path: Path, database_url: str) -> None:
    """The same import, re-import and refused import on SQLite and PostgreSQL."""
    site = Site(tmp_path, database_url)
    site.load(XML)
    assert site.entries() == EXPECTED
    site.load(STRUCTURES, SERVICES)
    assert site.entries() == EXPECTED
    before = site.snapshot()
    assert before[0][1] == "structures.csv + services.csv"
    bad = _with_cell(_TEXT, 7, "Identifiant", "1300000000000A")
    assert "line 7, field 'Identifiant'" in site.refused(str(_write(tmp_path, "structures.csv", bad)))
    assert site.snapshot() == before
    assert site.status()["structures"] == len(EXPECTED)


# -- streaming --------------------------------------------------------------------------------


def test_a_directory_of_100000_structures_imports_in_reasonable_time(tmp_path: Path) -> None:
    """100,000 structures and 50,000 services: counts right, well under 20 s."""
    header = _TEXT.splitlines()[0]
    flags = "false;false;true;true;false;false;false;false;true;;;;75001;Paris;;;FR;France"
    structures = tmp_path / "big.csv"
    with structures.open("w", encoding="utf-8") as handle:
        handle.write(header + "\n")
        for number in range(100_000):
            handle.write(f"SIRET;{10**13 + number};Structure {number};{flags}\n")
        for number in range(100):
            handle.write(f"RIDET;{number};Structure calédonienne {number};{flags}\n")
    services = tmp_path / "big-services.csv"
    with services.open("w", encoding="utf-8") as handle:
        handle.write("Identifiant;CodeService;LibelleService;EstActif\n")
        for number in range(0, 100_000, 2):
            handle.write(f"{10**13 + number};S{number};Service {number};true\n")

    site = Site(tmp_path)
    started = time.monotonic()
    summary = site.load(structures, services)
    elapsed = time.monotonic() - started
    assert (summary["structures"], summary["services"], summary["skipped"]) == ("100000", "50000", "100")
    with site.transaction() as tx:
        assert tx.directory_size() == 100_000
    assert elapsed < 20, elapsed


def test_gateway_validate_reads_the_imported_directory(tmp_path: Path) -> None:
    """The directory's requirements reach the Chorus rules: the sample buyer requires a
    service code, and only its active services pass."""
    from lxml import etree

    from gateway.domain import Syntax
    from gateway.validation_gate import reference_invoice

    CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"

    data = ["--data-dir", str(tmp_path / "data")]
    gateway(*data, "directory", "import", str(EXAMPLES / "structures.csv"), "--services",
            str(EXAMPLES / "services.csv"))
    document = reference_invoice(Syntax.UBL)
    assert b"<cbc:BuyerReference>" not in document and b">11000000700010<" in document

    def validate(service: str | None) -> tuple[int, set[str]]:
        root = etree.fromstring(document)
        if service is not None:  # BT-10 comes right after the currency in UBL's sequence
            currency = root.find(f"{{{CBC}}}DocumentCurrencyCode")
            reference = etree.Element(f"{{{CBC}}}BuyerReference")
            reference.text = service
            currency.addnext(reference)
        payload = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
        path = tmp_path / f"invoice-{service}.xml"
        path.write_bytes(payload)
        result = gateway(*data, "validate", "--format", "json", str(path), check=False)
        [report] = json.loads(result.stdout)
        return result.returncode, {f["rule_id"] for f in report["findings"]}

    assert validate(None) == (1, {"CHORUS-SERVICE-REQUIRED"})
    assert validate("ANCIEN") == (1, {"CHORUS-SERVICE-INACTIVE"})
    assert validate("COMPTA") == (0, set())
    # Without the store, the same file passes: no directory, no directory rule.
    plain = gateway("validate", str(tmp_path / "invoice-None.xml"), check=False)
    assert plain.returncode == 0, plain.stdout
