"""``gateway validate`` through the real CLI: layers in order, rule ids as the rule sets
name them, and a validator that cannot run is exit 2, never a pass."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from lxml import etree

from gateway.config import STARTER_CONFIG
from gateway.intake.sample import write_sample_export
from gateway.validation.rulesets import CEN_CII_ZIP, CEN_RELEASE, CEN_RELEASE_PAGE
from cli_runner import PROJECT, gateway

CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"


def _mapped(tmp_path: Path, syntax: str) -> list[Path]:
    export = tmp_path / "in" / "export.csv"
    write_sample_export(export, 4, seed=5, with_errors=False)
    out = tmp_path / f"out-{syntax}"
    gateway("map", str(export), "--syntax", syntax, "--out", str(out))
    return sorted(out.glob("*.xml"))


def _validate(*args: str) -> tuple[int, list[dict[str, object]]]:
    result = gateway("validate", "--format", "json", *args, check=False)
    return result.returncode, json.loads(result.stdout) if result.stdout.strip() else []


def test_mapped_ubl_is_valid_and_a_cent_off_fails_the_rule_that_guards_it(tmp_path: Path) -> None:
    files = _mapped(tmp_path, "ubl")
    code, results = _validate(*map(str, files))
    assert code == 0, results
    assert [r["valid"] for r in results] == [True] * len(files) and {r["syntax"] for r in results} == {"ubl"}

    tree = etree.parse(str(files[0]))
    payable = tree.find(f"{{{CAC}}}LegalMonetaryTotal/{{{CBC}}}PayableAmount")
    assert payable is not None
    payable.text = str(round(float(payable.text or "0") + 0.01, 2))
    tree.write(str(files[0]), xml_declaration=True, encoding="UTF-8")
    code, results = _validate(str(files[0]), str(files[1]))
    assert code == 1
    assert results[0]["valid"] is False and results[1]["valid"] is True
    findings = results[0]["findings"]
    assert isinstance(findings, list)
    assert any(f["layer"] == "en16931" and f["rule_id"] == "BR-CO-16" and f["severity"] == "fatal"
               for f in findings), findings


def test_a_document_that_is_not_xml_stops_at_the_parse_layer(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_text("<Invoice><unclosed></Invoice>", "utf-8")
    code, [result] = _validate(str(broken))
    assert code == 1 and result["valid"] is False
    assert [f["layer"] for f in result["findings"]] == ["parse"]  # type: ignore[union-attr]


#: What an operator must be told to get EN 16931 for CII: the official source, the release
#: (the corpus's, ../shared/corpus/SOURCES.md S1), the zip, where its XSLT is, the line to run.
CEN_CII_INSTRUCTIONS = (
    "github.com/ConnectingEurope/eInvoicing-EN16931/releases/tag/validation-1.3.16",
    "en16931-cii-1.3.16.zip",
    "unzip en16931-cii-1.3.16.zip -d en16931-cii-1.3.16",
    "xslt/ directory holds EN16931-CII-validation.xslt",
    "gateway rules add en16931-cii-1.3.16/xslt",
)


def test_cii_without_its_rule_set_is_a_validator_error_not_a_pass(tmp_path: Path) -> None:
    """Exit 2, and the message says what to download and the line that registers it."""
    files = _mapped(tmp_path, "cii")
    code, results = _validate(str(files[0]))
    assert code == 2
    reason = str(results[0]["validator_error"])
    assert results[0]["valid"] is False and "no EN 16931 rule set for CII" in reason
    assert [part for part in CEN_CII_INSTRUCTIONS if part not in reason] == [], reason
    assert "--cii-rules en16931-cii-1.3.16/xslt" in reason
    text = gateway("validate", str(files[0]), check=False)
    assert text.returncode == 2 and text.stdout.startswith("ERROR")


def test_the_cen_release_named_to_operators_is_the_corpus_one(corpus: Path) -> None:
    """The release the instructions name is the one the tests run (SOURCES.md S1, and the
    version in the XSLT's header), and the README's first section and `gateway init`'s
    gateway.toml name it too."""
    sources = (corpus / "SOURCES.md").read_text("utf-8")
    [tag] = re.findall(r"\| S1 \| ConnectingEurope/eInvoicing-EN16931 \| .*?tag (validation-[\d.]+)\)", sources)
    assert (tag, CEN_CII_ZIP) == (CEN_RELEASE, f"en16931-cii-{tag.removeprefix('validation-')}.zip")
    xslt = corpus / "schematron/en16931/cii/xslt/EN16931-CII-validation.xslt"
    assert f"Schematron version {tag.removeprefix('validation-')}" in xslt.read_text("utf-8")[:4096]
    readme = (PROJECT / "README.md").read_text("utf-8")
    first_section = readme.split("\n## ")[0]
    for part in CEN_CII_INSTRUCTIONS[:3] + ("rules add en16931-cii-1.3.16/xslt",):
        assert part in first_section, part
    for part in CEN_CII_INSTRUCTIONS[1:3] + (CEN_RELEASE_PAGE, "gateway --config gateway.toml rules add "
                                            "en16931-cii-1.3.16/xslt", "xslt/ holds EN16931-CII-validation.xslt"):
        assert part in STARTER_CONFIG, part


def test_cii_with_the_cen_rule_set_is_valid(tmp_path: Path, corpus: Path) -> None:
    rules = corpus / "schematron" / "en16931" / "cii" / "xslt"
    if not rules.is_dir():
        pytest.skip(f"{rules} is absent")
    files = _mapped(tmp_path, "cii")
    code, results = _validate("--cii-rules", str(rules), *map(str, files))
    assert code == 0, results
    assert {r["syntax"] for r in results} == {"cii"}


# -- CII received from others: the widest XSD, then EN 16931 --------------------------

_ZUGFERD = "examples/cii/zugferd-2.3-factur-x"
#: The ZUGFeRD 2.3 EXTENDED examples that the Factur-X EN16931 profile XSD refuses
#: (EXTENDED elements: TestIndicator, line-level notes, advance payments, ...), and the
#: fatal EN 16931 rule ids each reports once it gets there. Fremdwaehrung and
#: Rechnungskorrektur are EN 16931-valid (warnings only); Kostenrechnung and
#: Warenrechnung break BR-S-08/BR-CO-12; Projektabschlussrechnung uses a D22B element
#: (ram:InvoiceSpecifiedReferencedDocument on a line, ../shared/corpus/SOURCES.md) and
#: dates the D16B rules refuse (CII-DT-027).
EXTENDED_VERDICTS = {
    "zugferd_2p3_EXTENDED_Fremdwaehrung.xml": set(),
    "zugferd_2p3_EXTENDED_Rechnungskorrektur.xml": set(),
    "zugferd_2p3_EXTENDED_Kostenrechnung.xml": {"BR-S-08", "BR-CO-12"},
    "zugferd_2p3_EXTENDED_Warenrechnung.xml": {"BR-S-08", "BR-CO-12"},
    "zugferd_2p3_EXTENDED_Projektabschlussrechnung.xml": {"CII-DT-027"},
}


def _cen_cii_rules(corpus: Path) -> Path:
    rules = corpus / "schematron" / "en16931" / "cii" / "xslt"
    if not rules.is_dir():
        pytest.skip(f"{rules} is absent")
    return rules


def _by_name(results: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {Path(str(r["file"])).name: r for r in results}


def _fatal(result: dict[str, object], layer: str) -> set[str]:
    findings = result["findings"]
    assert isinstance(findings, list)
    return {f["rule_id"] for f in findings if f["layer"] == layer and f["severity"] == "fatal"}


def test_received_cii_with_extended_elements_passes_the_xsd_layer_and_reaches_en16931(corpus: Path) -> None:
    """Without a registered D16B XSD, a file given to `gateway validate` is checked against
    the Factur-X EXTENDED XSD that factur-x ships, not the EN16931 profile one."""
    files = [corpus / _ZUGFERD / name for name in EXTENDED_VERDICTS]
    code, results = _validate("--cii-rules", str(_cen_cii_rules(corpus)), *map(str, files))
    assert code == 1, results  # German invoices: the Chorus Pro layer finds no SIRET, at least
    for name, result in _by_name(results).items():
        assert _fatal(result, "xsd") == set(), (name, result["findings"])
        validated_with = result["validated_with"]
        assert isinstance(validated_with, list)
        assert [(a["kind"], a["name"]) for a in validated_with] == [
            ("xsd", "Factur-X_EXTENDED.xsd"), ("schematron:en16931", "EN16931-CII-validation.xslt")], name
        assert _fatal(result, "en16931") == EXTENDED_VERDICTS[name], name
        print(f"\n{name}: EN 16931 fatal {sorted(_fatal(result, 'en16931')) or 'none'}")


def test_a_registered_d16b_xsd_checks_received_cii(tmp_path: Path, corpus: Path) -> None:
    """`gateway rules add` on a directory holding the UN/CEFACT D16B XSD registers its
    decoupled modules; files given to `gateway validate` are then checked against it."""
    data = tmp_path / "data"
    d16b = corpus / "schemas" / "cii-d16b"  # coupled and uncoupled modules, as the CEN repository has them
    added = gateway("--data-dir", str(data), "rules", "add", str(d16b))
    assert "registered xsd for CII" in added.stdout and "/uncoupled/" in added.stdout and "100.D16B" in added.stdout
    files = [corpus / _ZUGFERD / name for name in EXTENDED_VERDICTS]
    result = gateway("--data-dir", str(data), "validate", "--format", "json", "--cii-rules",
                     str(_cen_cii_rules(corpus)), *map(str, files), check=False)
    assert result.returncode == 1, result.stderr
    by_name = _by_name(json.loads(result.stdout))
    for name, outcome in by_name.items():
        validated_with = outcome["validated_with"]
        assert isinstance(validated_with, list)
        assert validated_with[0]["name"] == "CrossIndustryInvoice_100pD16B.xsd", name
        assert validated_with[0]["version"] == "100.D16B" and len(validated_with[0]["sha256"]) == 64
        if name.endswith("Projektabschlussrechnung.xml"):
            # Not D16B: it uses an element of a later release. Refused at the XSD layer, as it should.
            assert _fatal(outcome, "xsd") == {"XSD"} and len(validated_with) == 1
            continue
        assert _fatal(outcome, "xsd") == set() and _fatal(outcome, "en16931") == EXTENDED_VERDICTS[name], name
