"""Conformance on ../shared/corpus (skipped when absent): the gateway's XSD and EN 16931
layers accept every example that claims EN 16931, and report the rule ids the CEN unit
tests expect; the Peppol BIS 3 rules, compiled from their Schematron sources, report the
ids the Peppol unit tests expect. Counts are printed (pytest -s) for the closing notes."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from gateway.validation.findings import Finding, Severity
from gateway.validation.rulesets import PEPPOL, RuleSet, scan_directory
from gateway.validation.schematron import check_en16931, run_rule_set, syntax_of
from gateway.validation.xsd import check_xsd

#: Examples that are not EN 16931 invoices by design: OASIS's own UBL samples (no BT-24),
#: and the Factur-X/ZUGFeRD profiles below EN 16931 or beyond its XSD.
_NOT_EN16931 = re.compile(r"oasis-ubl-2\.1/|_(MINIMUM|BASIC-WL|EXTENDED)_")


def test_every_example_claiming_en16931_passes_xsd_and_en16931(corpus: Path) -> None:
    rules = corpus / "schematron" / "en16931" / "cii" / "xslt"
    counts: Counter[tuple[str, str]] = Counter()
    failures = []
    for path in sorted((corpus / "examples").glob("*/*/**/*.xml")):
        kind, collection = path.relative_to(corpus / "examples").parts[:2]
        if kind not in ("ubl", "cii"):
            continue
        payload = path.read_bytes()
        tree = etree.ElementTree(etree.fromstring(payload))
        if _NOT_EN16931.search(path.relative_to(corpus / "examples").as_posix()):
            counts[f"{kind}/{collection}", "not EN 16931"] += 1
            continue
        fatal = [f for f in check_xsd(tree)] + [
            f for f in check_en16931(payload, tree.getroot().tag, rules) if f.severity is Severity.FATAL
        ]
        counts[f"{kind}/{collection}", "passed" if not fatal else "failed"] += 1
        if fatal:
            failures.append((path.name, [f.rule_id for f in fatal][:5]))
    print("\nvalid examples:", dict(sorted(counts.items())))
    assert not failures, failures
    # 82 of the 94 examples are EN 16931 invoices (see _NOT_EN16931 for the others).
    assert sum(n for (_, outcome), n in counts.items() if outcome == "passed") >= 82


def test_every_cen_unit_test_fires_the_rules_it_expects(corpus: Path) -> None:
    """The invalid fragments of the CEN unit tests (XSD-invalid by design: Schematron only)."""
    base = corpus / "examples" / "invalid"
    rules = corpus / "schematron" / "en16931" / "cii" / "xslt"
    cases = [c for c in json.loads((base / "expectations.json").read_text("utf-8"))
             if c["testset"].startswith("cen-unit/") and c["expect_error"]]
    if not cases:
        pytest.skip("no CEN unit test in the corpus")
    counts: Counter[tuple[str, bool]] = Counter()
    misses = []
    for case in cases:
        payload = (base / case["extracted"]).read_bytes()
        fired = {f.rule_id for f in check_en16931(payload, etree.fromstring(payload).tag, rules)}
        expected = {error["rule"] for error in case["expect_error"]}
        counts[case["testset"].split("/")[1], expected <= fired] += 1
        if not expected <= fired:
            misses.append((case["extracted"], sorted(expected - fired)))
    print("\nCEN unit tests (set, all expected ids reported):", dict(sorted(counts.items())))
    assert not misses, misses[:10]


# -- Peppol BIS 3 ----------------------------------------------------------------------
# Shipped only as Schematron sources: compiled (gateway.validation.compile_sch, the ISO
# XSLT 1 skeleton run by Saxon) into a temporary cache, the corpus being read-only.


@pytest.fixture(scope="module")
def peppol_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("peppol-compiled")


def _peppol_rules(corpus: Path, cache: Path) -> dict[str, RuleSet]:
    found = scan_directory(corpus / "schematron" / "peppol-bis-3", cache_dir=cache)
    assert {(r.layer, r.syntax) for r in found} == {(PEPPOL, "ubl"), (PEPPOL, "cii")}
    assert all(r.source_sha256 and r.path.parent == cache for r in found)
    return {r.syntax: r for r in found}


def _unit_cases(corpus: Path, kind: str) -> list[dict]:
    base = corpus / "examples" / "invalid"
    return [c for c in json.loads((base / "expectations.json").read_text("utf-8"))
            if c.get("extracted") and c[kind]]


def _findings(corpus: Path, case: dict, peppol: dict[str, RuleSet], expected: set[str]) -> list[Finding]:
    """Peppol's rules on a Peppol case, plus EN 16931's when an expected id is one of theirs."""
    payload = (corpus / "examples" / "invalid" / case["extracted"]).read_bytes()
    root_tag = etree.fromstring(payload).tag
    findings = run_rule_set(payload, peppol[syntax_of(root_tag)]) if case["testset"].startswith("peppol-") else []
    if case["testset"].startswith("cen-") or any(not rule.startswith("PEPPOL-") for rule in expected):
        findings += check_en16931(payload, root_tag, corpus / "schematron" / "en16931" / "cii" / "xslt")
    return findings


def test_every_peppol_unit_test_fires_the_rules_it_expects(corpus: Path, peppol_cache: Path) -> None:
    """Each expected id is reported, as fatal or error, as many times as ``number`` says when given."""
    peppol = _peppol_rules(corpus, peppol_cache)
    cases = [c for c in _unit_cases(corpus, "expect_error") if c["testset"].startswith("peppol-unit/")]
    if not cases:
        pytest.skip("no Peppol unit test in the corpus")
    counts: Counter[tuple[str, bool]] = Counter()
    misses = []
    for case in cases:
        expected = {error["rule"] for error in case["expect_error"]}
        findings = _findings(corpus, case, peppol, expected)
        fired = Counter(f.rule_id for f in findings if f.severity is not Severity.WARNING)
        wrong = sorted(
            (error["rule"], error.get("number"), fired[error["rule"]]) for error in case["expect_error"]
            if fired[error["rule"]] == 0 or ("number" in error and fired[error["rule"]] != int(error["number"]))
        )
        counts[case["testset"].split("/")[1], not wrong] += 1
        if wrong:
            misses.append((case["extracted"], wrong))
    print("\nPeppol unit tests, errors (set, all expected ids reported):", dict(sorted(counts.items())))
    assert not misses, misses[:10]
    assert len(cases) >= 142


def test_every_unit_test_expecting_a_warning_reports_it_as_a_warning(corpus: Path, peppol_cache: Path) -> None:
    """The fragments without an expected error (2 CEN, 22 Peppol) all expect a warning."""
    peppol = _peppol_rules(corpus, peppol_cache)
    cases = [c for c in _unit_cases(corpus, "expect_warning") if not c["expect_error"]]
    if not cases:
        pytest.skip("no unit test expecting a warning in the corpus")
    counts: Counter[tuple[str, bool]] = Counter()
    misses = []
    for case in cases:
        expected = {warning["rule"] for warning in case["expect_warning"]}
        findings = _findings(corpus, case, peppol, expected)
        warned = {f.rule_id for f in findings if f.severity is Severity.WARNING}
        # None of these cases lists an id that must succeed; were one added, it must not be reported.
        succeeded = {success["rule"] for success in case["expect_success"]} & {f.rule_id for f in findings}
        ok = expected <= warned and not succeeded
        counts["/".join(case["testset"].split("/")[:2]), ok] += 1
        if not ok:
            misses.append((case["extracted"], sorted(expected - warned), sorted(succeeded)))
    print("\nunit tests, warnings (set, all expected ids reported as warnings):", dict(sorted(counts.items())))
    assert not misses, misses[:10]
    assert len(cases) >= 24


def test_the_peppol_examples_pass_the_compiled_peppol_rules(corpus: Path, peppol_cache: Path) -> None:
    """The other way round: OpenPEPPOL's own valid examples report nothing fatal (a stylesheet
    that fired every assert would pass the tests above)."""
    peppol = _peppol_rules(corpus, peppol_cache)
    paths = sorted((corpus / "examples" / "ubl" / "peppol-bis3").rglob("*.xml"))
    if not paths:
        pytest.skip("no Peppol BIS 3 example in the corpus")
    counts: Counter[str] = Counter()
    failures = []
    for path in paths:
        blocking = [f.rule_id for f in run_rule_set(path.read_bytes(), peppol["ubl"])
                    if f.severity is not Severity.WARNING]
        counts["passed" if not blocking else "failed"] += 1
        if blocking:
            failures.append((path.name, blocking[:5]))
    print("\nPeppol BIS 3 examples on the compiled Peppol UBL rules:", dict(counts))
    assert not failures, failures
