"""Fail closed: a validation layer that cannot run never reads as valid.

The rule sets here are small stand-ins registered under the official file name, so
that each way of failing (a crash, an endless loop, no report, a file changed after
registration) can be caused on purpose, through the worker and through the CLI.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli_runner import gateway
from gateway.clock import SystemClock
from gateway.config import ensure_layout, load_config, write_starter
from gateway.domain import Syntax, ValidatorFailure
from gateway.errors import ValidatorError
from gateway.intake.sample import write_sample_export
from gateway.pipeline import Pipeline
from gateway.store import Store
from gateway.validation.rulesets import UBL_DIR, RuleRegistry, scan_directory
from gateway.validation.worker import ValidationWorker
from gateway.validation_gate import reference_invoice

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)

RULES_FILE = "EN16931-UBL-validation.xslt"

# Fires one rule on every document; what it does besides depends on the invoice number.
_STAND_IN = """<xsl:stylesheet version="3.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:f="urn:test"
    xmlns:svrl="http://purl.oclc.org/dsdl/svrl"
    xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
  <xsl:function name="f:spin" as="xs:integer">
    <xsl:param name="n" as="xs:integer"/>
    <xsl:sequence select="if ($n lt 0) then 0 else f:spin($n + 1)"/>
  </xsl:function>
  <xsl:template match="/">
    <xsl:variable name="number" select="string(/*/cbc:ID)"/>
    <xsl:if test="{crash_test}"><xsl:sequence select="error((), 'stand-in rule set bug')"/></xsl:if>
    <xsl:if test="starts-with($number, 'LOOP')"><xsl:sequence select="f:spin(1)"/></xsl:if>
    <xsl:choose>
      <xsl:when test="starts-with($number, 'SILENT')"><svrl:schematron-output/></xsl:when>
      <xsl:otherwise><svrl:schematron-output><svrl:fired-rule context="/"/></svrl:schematron-output></xsl:otherwise>
    </xsl:choose>
  </xsl:template>
</xsl:stylesheet>
"""


def stand_in(directory: Path, *, always_crash: bool = False) -> Path:
    """A rule-set directory whose UBL EN 16931 rules crash on invoices numbered BOOM…
    (or on every invoice), loop forever on LOOP…, and fire nothing on SILENT…"""
    directory.mkdir(parents=True, exist_ok=True)
    crash = "true()" if always_crash else "starts-with($number, 'BOOM')"
    (directory / RULES_FILE).write_text(_STAND_IN.replace("{crash_test}", crash), encoding="utf-8")
    return directory


def numbered(number: str) -> bytes:
    return reference_invoice(Syntax.UBL).replace(b"F-2026-000001", number.encode())


def test_a_crash_an_endless_rule_and_a_silent_report_are_validator_errors(tmp_path: Path) -> None:
    registry = RuleRegistry.default(scan_directory(stand_in(tmp_path / "rules")))
    with ValidationWorker(registry.all(), time_budget=3) as worker:
        assert worker.schema_layers(numbered("OK-1"), "en16931").findings == []
        with pytest.raises(ValidatorError, match="crashed: .*stand-in rule set bug"):
            worker.schema_layers(numbered("BOOM-1"), "en16931")
        with pytest.raises(ValidatorError, match="fired no rule"):
            worker.schema_layers(numbered("SILENT-1"), "en16931")
        assert worker.starts == 1
        with pytest.raises(ValidatorError) as exceeded:
            worker.schema_layers(numbered("LOOP-1"), "en16931")
        assert exceeded.value.failure is ValidatorFailure.TIME_BUDGET
        assert "validation exceeded its time budget of 3 s" in exceeded.value.message
        # The stuck worker was killed; the next document gets a fresh one.
        assert worker.schema_layers(numbered("OK-2"), "en16931").findings == []
        assert worker.starts == 2


def test_a_rule_set_changed_after_registration_is_refused(tmp_path: Path) -> None:
    directory = stand_in(tmp_path / "rules")
    registry = RuleRegistry.default(scan_directory(directory))
    (directory / RULES_FILE).write_text((directory / RULES_FILE).read_text() + "<!-- edited -->\n")
    with pytest.raises(ValidatorError, match="changed since it was registered"):
        registry.for_profile("en16931", "ubl")


def test_a_profile_needing_a_missing_rule_set_fails_closed() -> None:
    with pytest.raises(ValidatorError, match="no EN 16931 rule set for CII"):
        RuleRegistry.default().for_profile("en16931", "cii")
    assert [r.layer for r in RuleRegistry.default().for_profile("fr", "ubl")] == ["en16931", "br-fr"]


def _site(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    env = {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}"}
    site = tmp_path / "site"
    gateway("init", str(site), env=env)
    config = site / "gateway.toml"
    config.write_text(config.read_text().replace("settle_seconds = 2", "settle_seconds = 0"))
    return config, env, site / "inbox" / "erp"


def _run(config: Path, env: dict[str, str], code: int = 0) -> tuple[dict, list[dict]]:
    """One pass; ``code``: the exit code it must give (README, "Exit codes")."""
    result = gateway("--config", str(config), "--log-format", "json", "run", "--once", env=env, check=False)
    assert result.returncode == code, result.stderr
    return json.loads(result.stdout), [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


def _invoices(config: Path, env: dict[str, str]) -> dict[str, dict]:
    listed = json.loads(gateway("--config", str(config), "invoices", "list", "--json", env=env).stdout)
    return {i["invoice_number"]: i for i in listed}


def test_one_invoice_that_breaks_the_validator_waits_and_the_others_go(tmp_path: Path) -> None:
    config, env, inbox = _site(tmp_path)
    gateway("--config", str(config), "rules", "add", str(stand_in(tmp_path / "rules")), env=env)
    write_sample_export(inbox / "a.csv", 3, with_errors=False, number_prefix="F")
    write_sample_export(inbox / "b.csv", 1, with_errors=False, number_prefix="BOOM")

    summary, events = _run(config, env)
    assert summary["invoices"] == {"received": 4, "valid": 3, "quarantined": 0, "validation-error": 1}
    assert len(summary["flows_sent"]) == 1  # the validator passed its probe: the channel goes on
    [alert] = [e for e in events if e["event"] == "alert.validation_error"]
    assert alert["invoice"].startswith("BOOM") and "stand-in rule set bug" in alert["reason"]
    invoices = _invoices(config, env)
    [boom] = [i for n, i in invoices.items() if n.startswith("BOOM")]
    assert boom["status"] == "validation-error" and "crashed" in boom["reason"]

    # The operator registers the official rule set again: the waiting invoice is
    # validated at the next pass and sent, without being exported a second time.
    gateway("--config", str(config), "rules", "add", str(UBL_DIR), env=env)
    summary, _ = _run(config, env)
    assert summary["invoices"] == {"revalidated valid": 1} and len(summary["flows_sent"]) == 1
    assert _invoices(config, env)[boom["invoice_number"]]["status"] == "integrated"


def test_a_validator_broken_for_every_invoice_stops_the_channel(tmp_path: Path) -> None:
    config, env, inbox = _site(tmp_path)
    gateway("--config", str(config), "rules", "add", str(stand_in(tmp_path / "rules", always_crash=True)), env=env)
    write_sample_export(inbox / "a.csv", 2, with_errors=False)

    summary, events = _run(config, env, code=4)  # a channel halted
    assert summary["files"] == {} and summary["flows_packed"] == [] and summary["flows_sent"] == []
    assert list(summary["channels_halted"]) == ["erp"]
    [alert] = [e for e in events if e["event"] == "alert.validator_unhealthy"]
    assert "stand-in rule set bug" in alert["reason"] and "sends nothing" in alert["effect"]
    assert (inbox / "a.csv").is_file()  # untouched: nothing is lost

    # `gateway validate` with the same registry says the same: exit 2, not a verdict.
    document = tmp_path / "one.xml"
    document.write_bytes(numbered("OK-1"))
    checked = gateway("--config", str(config), "validate", "--format", "json", str(document), env=env, check=False)
    assert checked.returncode == 2
    assert "stand-in rule set bug" in json.loads(checked.stdout)[0]["validator_error"]

    gateway("--config", str(config), "rules", "add", str(UBL_DIR), env=env)
    summary, _ = _run(config, env)
    assert summary["files"] == {"processed": 1} and len(summary["flows_sent"]) == 1


def test_an_invoice_that_ran_out_of_time_is_not_validated_again_at_each_pass(tmp_path: Path) -> None:
    """Why its validator could not run is recorded with the invoice (``ValidatorFailure``), not searched in its
    reason: one that ran out of its time budget waits for the operator; a pass does not stall on it again."""
    path = write_starter(tmp_path / "site")
    path.write_text(path.read_text().replace("settle_seconds = 2", "settle_seconds = 0")
                    .replace("time_budget_seconds = 60", "time_budget_seconds = 2"))
    config = load_config(path, env={"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}"})
    ensure_layout(config)
    store = Store.open(config.database_url)
    pipeline = Pipeline(config=config, store=store, clock=SystemClock())
    try:
        with store.transaction() as tx:
            for rule_set in scan_directory(stand_in(tmp_path / "rules")):
                tx.add_rule_set(layer=rule_set.layer, syntax=rule_set.syntax, path=str(rule_set.path),
                                version=rule_set.version, sha256=rule_set.sha256, origin="operator", now=NOW)
        write_sample_export(config.channels[0].watch_dir / "a.csv", 1, with_errors=False, number_prefix="LOOP")
        assert pipeline.run_pass().invoices["validation-error"] == 1
        with store.transaction() as tx:
            [invoice] = tx.list_invoices()
        assert (invoice.status, invoice.validation_failure) == ("validation-error", ValidatorFailure.TIME_BUDGET)

        again = pipeline.run_pass()
        assert not any(key.startswith("revalidated") for key in again.invoices)
        with store.transaction() as tx:
            assert [i.status for i in tx.list_invoices()] == ["validation-error"]
    finally:
        pipeline.close()
        store.close()
