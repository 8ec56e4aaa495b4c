"""The fate of every invoice through the CLI: manual report intake, the overdue-report
ledger, corrections of rejected invoices, an invoice's timeline and filtered lists."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli_runner import gateway
from gateway.intake.sample import write_sample_export
from gateway.sandbox.cppstatut import flow_error_line, flow_status_document
from gateway.sandbox.directory import UNLISTED_BUYER_SIRET

STATUT = Path("examples") / "chorus-pro" / "statut"


def _site(tmp_path: Path, database_url: str, **replace: str) -> tuple[Path, dict[str, str]]:
    env = {"GATEWAY_DATABASE_URL": database_url}
    gateway("init", str(tmp_path / "site"), env=env)
    config = tmp_path / "site" / "gateway.toml"
    text = config.read_text().replace("settle_seconds = 2", "settle_seconds = 0")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    config.write_text(text)
    if database_url.startswith("postgresql"):
        gateway("--config", str(config), "db", "upgrade", env=env)
    return config, env


def _cli(config: Path, env: dict[str, str], *args: str, check: bool = True) -> object:
    result = gateway("--config", str(config), *args, env=env, check=check)
    return json.loads(result.stdout) if "--json" in args or args[:2] == ("run", "--once") else result


def test_real_status_samples_are_ingested_and_problems_flagged(tmp_path: Path, corpus: Path) -> None:
    config, env = _site(tmp_path, f"sqlite:///{tmp_path / 'g.db'}")
    samples = sorted((corpus / STATUT).glob("*.xml"))
    result = gateway("--config", str(config), "reports", "ingest", "--json", *map(str, samples), env=env, check=False)
    assert result.returncode == 1  # none of them names an invoice this gateway sent
    outcomes = {Path(row["file"]).name: row["outcome"] for row in json.loads(result.stdout)}
    assert outcomes == {
        "Example01-FactureStatut-ok.xml": "unmatched",
        "Example02-FactureStatut-ko.xml": "unmatched",  # also carries the undocumented code 17
        "Example03-FactureStatut-ko.xml": "invalid",  # month 15: flagged, not crashed on
        "Example04-FactureStatut-ko.xml": "unmatched",
    }
    problems = _cli(config, env, "reports", "list", "--problems", "--json")
    assert len(problems) == 4 and all(p["sha256"] for p in problems)
    again = gateway("--config", str(config), "reports", "ingest", "--json", str(samples[0]), env=env, check=False)
    assert "already stored" in json.loads(again.stdout)[0]["detail"]


def test_a_flow_without_report_is_overdue_once(tmp_path: Path) -> None:
    config, env = _site(tmp_path, f"sqlite:///{tmp_path / 'g.db'}",
                        **{"[sandbox]\nenabled = true": "[sandbox]\nenabled = false",
                           "max_attempts = 5": "max_attempts = 5\nreport_deadline_hours = 0.0002"})
    write_sample_export(tmp_path / "site" / "inbox" / "erp" / "export.csv", 2, with_errors=False)
    first = _cli(config, env, "run", "--once")
    assert len(first["flows_sent"]) == 1
    time.sleep(1)  # past the 0.72 s deadline

    logged = gateway("--config", str(config), "--log-format", "json", "run", "--once", env=env)
    alerts = [json.loads(line) for line in logged.stderr.splitlines() if "alert.report_overdue" in line]
    assert [a["flow"] for a in alerts] == first["flows_sent"] == json.loads(logged.stdout)["reports_overdue"]
    again = gateway("--config", str(config), "--log-format", "json", "run", "--once", env=env)
    assert "alert.report_overdue" not in again.stderr  # one alert per flow, not one per pass

    listed = gateway("--config", str(config), "reports", "overdue", "--json", env=env, check=False)
    assert listed.returncode == 1  # any flow listed: a probe alerts on the exit code alone
    [overdue] = json.loads(listed.stdout)
    assert overdue["flow_id"] == first["flows_sent"][0] and overdue["overdue_hours"] >= 0


def test_a_transmission_error_alerts_at_once_and_the_flow_says_how_to_send_it_again(tmp_path: Path) -> None:
    """Issue 12 item 11: a flow status 95 fails the flow at once, with the report's codes and labels."""
    config, env = _site(tmp_path, f"sqlite:///{tmp_path / 'g.db'}", **{'# scenario = "default"': 'scenario = "silent"'})
    write_sample_export(tmp_path / "site" / "inbox" / "erp" / "export.csv", 2, with_errors=False)
    [flow_id] = _cli(config, env, "run", "--once")["flows_sent"]
    report = tmp_path / "CSO1100A_AAA123_95.xml"
    report.write_bytes(flow_status_document(
        flow_id=flow_id, code="95", comment=None, timestamp=datetime.now(UTC), receiver_id="AAA123",
        errors=[flow_error_line(code="TRANSMISSION", label="flux tronqué")]))

    ingested = gateway("--config", str(config), "--log-format", "json", "reports", "ingest", str(report), env=env)
    [alert] = [json.loads(line) for line in ingested.stderr.splitlines() if "alert.flow_rejected" in line]
    assert (alert["flow"], alert["code"], alert["label"]) == (flow_id, "95", "Erreur de transmission")
    assert alert["errors"] == ["TRANSMISSION: flux tronqué"]
    assert alert["action"] == f"fix the cause, then: gateway flows retry {flow_id}"
    [flow] = _cli(config, env, "flows", "list", "--json")
    assert flow["status"] == "failed" and flow["next_step"] == alert["action"]
    assert "95 Erreur de transmission: TRANSMISSION: flux tronqué" in flow["reason"]
    assert {i["status"] for i in _cli(config, env, "invoices", "list", "--json")} == {"packed"}

    gateway("--config", str(config), "flows", "retry", flow_id, env=env)
    assert _cli(config, env, "run", "--once")["flows_sent"] == [flow_id]
    assert {i["status"] for i in _cli(config, env, "invoices", "list", "--json")} == {"sent"}


def test_a_rejected_invoice_comes_back_as_its_correction_and_an_integrated_one_as_a_duplicate(
    tmp_path: Path, database_url: str
) -> None:
    config, env = _site(tmp_path, database_url)
    inbox = tmp_path / "site" / "inbox" / "erp"
    export = write_sample_export(inbox / "first.csv", 20, with_errors=True, number_prefix="C")
    [to_fix] = [n for n, mistake in export.planted.items() if mistake == "buyer unknown to Chorus Pro"]
    lines = export.path.read_text().splitlines()  # the export is archived once read
    _cli(config, env, "run", "--once")
    invoices = {i["invoice_number"]: i for i in _cli(config, env, "invoices", "list", "--json")}
    assert invoices[to_fix]["status"] == "rejected"
    integrated = next(n for n, i in invoices.items() if i["status"] == "integrated")

    # The ERP fixes the buyer and exports both again: the rejected one is corrected,
    # the integrated one is refused.
    again = [lines[0]] + [line.replace(UNLISTED_BUYER_SIRET, "11000000700010") for line in lines[1:]
                          if line.startswith((f"{to_fix};", f"{integrated};"))]
    (inbox / "second.csv").write_text("\n".join(again) + "\n")
    _cli(config, env, "run", "--once")
    rows = _cli(config, env, "invoices", "list", "--json")
    [correction] = [i for i in rows if i["invoice_number"] == to_fix and i["status"] != "rejected"]
    assert correction["status"] == "integrated" and correction["corrects"] == invoices[to_fix]["id"]
    [refused] = [i for i in rows if i["invoice_number"] == integrated and i["status"] == "quarantined"]
    assert "CHORUS-DUPLICATE" in refused["reason"]

    shown = _cli(config, env, "invoices", "show", str(invoices[to_fix]["id"]), "--json")
    codes = [event["code"] for event in shown["timeline"]]
    assert codes[:4] == ["valid", "packed", "sent", "rejected"] and codes[-1] == "corrected"
    [rejection] = [event for event in shown["timeline"] if event["code"] == "rejected"]
    assert rejection["source"] == "chorus" and rejection["report"]["file_name"].startswith("CSO")

    mine = _cli(config, env, "invoices", "list", "--siret", "11000000700010", "--json")
    assert mine and all("11000000700010" in (i["buyer_siret"], i["supplier_siret"]) for i in mine)
    assert _cli(config, env, "invoices", "list", "--since", "2999-01-01", "--json") == []


@pytest.mark.parametrize("reference", ["by-number", "unknown"])
def test_invoices_show_finds_by_number_or_says_what_to_do(tmp_path: Path, reference: str) -> None:
    config, env = _site(tmp_path, f"sqlite:///{tmp_path / 'g.db'}")
    write_sample_export(tmp_path / "site" / "inbox" / "erp" / "export.csv", 1, with_errors=False)
    _cli(config, env, "run", "--once")
    if reference == "by-number":
        shown = _cli(config, env, "invoices", "show", "F-2026-000001", "--json")
        assert shown["status"] == "integrated" and [e["code"] for e in shown["timeline"]][:3] == [
            "valid", "packed", "sent"]
        assert any(e["source"] == "chorus" and e["code"] == "01" for e in shown["timeline"])
        assert shown["lifecycle"].startswith("03")  # the sandbox's 01 then 03: the highest rank
    else:
        result = gateway("--config", str(config), "invoices", "show", "NOPE-1", env=env, check=False)
        assert result.returncode == 1 and "no invoice 'NOPE-1'" in result.stderr
