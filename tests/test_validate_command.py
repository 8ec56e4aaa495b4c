"""``gateway validate`` through the real CLI: layers in order, rule ids as the rule sets
name them, and a validator that cannot run is exit 2, never a pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree

from gateway.intake.sample import write_sample_export
from cli_runner import gateway

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


def test_cii_without_its_rule_set_is_a_validator_error_not_a_pass(tmp_path: Path) -> None:
    files = _mapped(tmp_path, "cii")
    code, results = _validate(str(files[0]))
    assert code == 2
    assert results[0]["valid"] is False and "no EN 16931 rule set for CII" in str(results[0]["validator_error"])
    text = gateway("validate", str(files[0]), check=False)
    assert text.returncode == 2 and text.stdout.startswith("ERROR")


def test_cii_with_the_cen_rule_set_is_valid(tmp_path: Path, corpus: Path) -> None:
    rules = corpus / "schematron" / "en16931" / "cii" / "xslt"
    if not rules.is_dir():
        pytest.skip(f"{rules} is absent")
    files = _mapped(tmp_path, "cii")
    code, results = _validate("--cii-rules", str(rules), *map(str, files))
    assert code == 0, results
    assert {r["syntax"] for r in results} == {"cii"}
