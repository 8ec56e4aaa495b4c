"""Conformance on ../shared/corpus (skipped when absent): the gateway's XSD and EN 16931
layers accept every example that claims EN 16931, and report the rule ids the CEN unit
tests expect. Counts are printed (pytest -s) for the closing notes."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from gateway.validation.findings import Severity
from gateway.validation.schematron import check_en16931
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
