"""The sandbox's scenarios, lifecycle over time and CDAR answers: the logic, then the
whole path through the real CLI (`gateway run --once`, `gateway sandbox --advance`)."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree
from test_sandbox import BUYERS, FLOW_ID, FLOW_NAME, SUPPLIER, flow, ubl

from cli_runner import gateway
from gateway.clock import FixedClock
from gateway.config import SandboxConfig, load_config, write_starter
from gateway.errors import ConfigError, GatewayError
from gateway.intake.sample import write_sample_export
from gateway.reports import parse_report
from gateway.reports.cdar import ROOT as CDAR_ROOT
from gateway.reports.cdar import parse_report as parse_cdar
from gateway.sandbox.directory import UNLISTED_BUYER_SIRET
from gateway.sandbox.runner import advance_clock, load_state, run_sandbox_once, run_sandbox_pass
from gateway.sandbox.scenarios import LifecycleSchedule, ScheduledInvoice, emit_due
from gateway.sandbox.simulator import SandboxSettings, process_flow
from gateway.store import Store, db

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
CR_NAME = f"CSO1100A_AAA123_{FLOW_ID}.xml"
STEPS = ("01", "03", "07", "08", "11")
HOUR = 3600


def _flow_of_three() -> bytes:
    return flow(ubl("F-1"), ubl("F-2", UNLISTED_BUYER_SIRET), ubl("F-3", BUYERS[1]))


# -- the scenarios' verdicts ----------------------------------------------------------------


def test_all_integrated_integrates_what_the_default_checks_reject() -> None:
    default = process_flow(FLOW_NAME, _flow_of_three(), settings=SandboxSettings(), now=NOW)
    assert (default.status_code, [r.invoice_number for r in default.rejected]) == ("96", ["F-2"])

    forced = process_flow(FLOW_NAME, _flow_of_three(), settings=SandboxSettings(scenario="all-integrated"), now=NOW)
    assert (forced.status_code, forced.rejected) == ("90", ())
    assert [i.invoice_number for i in forced.integrated] == ["F-1", "F-2", "F-3"]
    # The technical checks still hold: an invoice that does not validate is rejected.
    broken = process_flow(
        FLOW_NAME,
        flow(ubl("F-1"), ubl("F-9", supplier="73282932000018")),  # a supplier SIRET failing its Luhn check
        settings=SandboxSettings(scenario="all-integrated"),
        now=NOW,
    )
    assert (broken.status_code, [r.code for r in broken.rejected]) == ("96", ["VALIDATION"])


def test_partial_rejects_the_named_invoices_with_the_chosen_code_and_label() -> None:
    settings = SandboxSettings(
        scenario="partial", reject=frozenset({"F-3"}), reject_code="MONTANT", reject_label="montant incohérent"
    )
    outcome = process_flow(FLOW_NAME, _flow_of_three(), settings=settings, now=NOW)
    assert outcome.status_code == "96"
    assert [i.invoice_number for i in outcome.integrated] == ["F-1", "F-2"]  # F-2's unknown buyer is not checked
    [status] = parse_report(dict(outcome.files)[CR_NAME]).flow_statuses
    assert [(e.invoice_number, e.supplier_id, e.code, e.label) for e in status.errors] == [
        ("F-3", SUPPLIER, "MONTANT", "montant incohérent")
    ]


def test_cdar_answers_name_each_rejection_as_its_own_invoice_status() -> None:
    settings = SandboxSettings(report_format="cdar", lifecycle=("01", "03", "07", "08"))
    outcome = process_flow(FLOW_NAME, _flow_of_three(), settings=settings, now=NOW)
    assert outcome.status_code == "96"  # the verdict is the same whatever the format
    files = dict(outcome.files)
    [status] = parse_cdar(files[CR_NAME]).flow_statuses
    assert (status.flow_id, status.code, status.errors) == (FLOW_ID, "500", ())  # recevable: no invoice line
    entries = parse_cdar(files[f"FEN1201A_AAA123_{FLOW_ID}.xml"]).invoice_statuses
    assert [(e.invoice_number, e.code) for e in entries if e.invoice_number == "F-2"] == [("F-2", "213")]
    assert next(e for e in entries if e.code == "213").comment.startswith("ANNUAIRE: destinataire inconnu")
    # 07 and 08 are both 204 "Prise en charge" in CDAR: sent once.
    assert [e.code for e in entries if e.invoice_number == "F-1"] == ["200", "203", "204"]
    assert outcome.schedule is None

    refused = process_flow(FLOW_NAME, _flow_of_three(), settings=replace(settings, scenario="rejected"), now=NOW)
    [(name, data)] = refused.files
    [status] = parse_cdar(data).flow_statuses
    assert (name, status.code, [(e.nature, e.code) for e in status.errors]) == (CR_NAME, "501", [("FLUX", "SCENARIO")])
    with pytest.raises(ValueError, match="no CDAR equivalent"):
        replace(settings, lifecycle=("01", "17"))


def test_rejected_refuses_the_whole_flow_and_silent_answers_nothing() -> None:
    rejected = process_flow(FLOW_NAME, _flow_of_three(), settings=SandboxSettings(scenario="rejected"), now=NOW)
    assert (rejected.status_code, rejected.integrated, len(rejected.files)) == ("93", (), 1)
    [status] = parse_report(rejected.files[0][1]).flow_statuses
    assert [(e.nature, e.code) for e in status.errors] == [("FLUX", "SCENARIO")]
    assert "scenario rejected" in status.errors[0].label

    silent = process_flow(FLOW_NAME, _flow_of_three(), settings=SandboxSettings(scenario="silent"), now=NOW)
    assert (silent.flow_id, silent.files, silent.answered, silent.integrated) == (FLOW_ID, (), False, ())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scenario": "chaos"}, "scenario: must be one of"),
        ({"scenario": "partial"}, "reject: "),
        ({"reject": frozenset({"F-1"})}, 'only to scenario "partial"'),
        ({"lifecycle_interval_seconds": -1.0}, "lifecycle_interval_seconds"),
        ({"report_format": "edifact"}, "report_format"),
    ],
)
def test_settings_refuse_a_wrong_combination(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        SandboxSettings(**fields)


def test_per_run_options_override_the_file() -> None:
    file = SandboxConfig(scenario="partial", reject=("F-1",), lifecycle=STEPS, lifecycle_interval_seconds=60)
    assert SandboxSettings.from_config(file).reject == {"F-1"}
    other = SandboxSettings.from_config(file, scenario="all-integrated", reject=None, report_format=None)
    assert (other.scenario, other.reject, other.lifecycle) == ("all-integrated", frozenset(), STEPS)
    implied = SandboxSettings.from_config(SandboxConfig(), reject=("F-9",))
    assert (implied.scenario, implied.reject) == ("partial", {"F-9"})


# -- the lifecycle over time ----------------------------------------------------------------


def test_a_schedule_emits_each_status_once_when_it_comes_due() -> None:
    invoice = ScheduledInvoice(SUPPLIER, BUYERS[0], "F-1", None)
    schedule: LifecycleSchedule | None = LifecycleSchedule(FLOW_ID, NOW, STEPS, HOUR, (invoice,))
    emitted: list[tuple[str, str, datetime]] = []
    for elapsed in (0, 0.5, 2, 2, 10):
        assert schedule is not None
        files, schedule = emit_due(
            schedule, NOW + timedelta(hours=elapsed), report_format="cppstatut", partner_code="AAA123"
        )
        for name, data in files:
            emitted += [(name, e.code, e.timestamp) for e in parse_report(data).invoice_statuses]
    assert schedule is None  # every step emitted: nothing left to keep
    assert emitted == [
        (f"FEN1201A_AAA123_{FLOW_ID}.xml", "01", NOW),
        (f"FEN1201A_AAA123_{FLOW_ID}_01.xml", "03", NOW + timedelta(hours=1)),
        (f"FEN1201A_AAA123_{FLOW_ID}_01.xml", "07", NOW + timedelta(hours=2)),
        (f"FEN1201A_AAA123_{FLOW_ID}_03.xml", "08", NOW + timedelta(hours=3)),
        (f"FEN1201A_AAA123_{FLOW_ID}_03.xml", "11", NOW + timedelta(hours=4)),
    ]


def test_the_runner_keeps_the_schedule_and_the_clock_offset_across_runs(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    (root / "inbox").mkdir(parents=True)
    (root / "inbox" / FLOW_NAME).write_bytes(flow(ubl("F-1"), ubl("F-2", BUYERS[1])))
    settings = SandboxSettings(lifecycle=STEPS, lifecycle_interval_seconds=HOUR)
    clock = FixedClock(NOW)

    [outcome] = run_sandbox_once(root, settings, clock)
    assert outcome.status_code == "90" and outcome.schedule is not None and outcome.schedule.emitted == 1
    assert run_sandbox_pass(root, settings, clock).lifecycle_files == []  # nothing new is due

    assert advance_clock(root, timedelta(hours=2)) == timedelta(hours=2)
    later = run_sandbox_pass(root, settings, clock)  # the same clock: only the stored offset moved
    assert (later.now, later.lifecycle_files) == (NOW + timedelta(hours=2), [f"FEN1201A_AAA123_{FLOW_ID}_01.xml"])
    codes = [e.code for e in parse_report((root / "outbox" / later.lifecycle_files[0]).read_bytes()).invoice_statuses]
    assert codes == ["03", "07", "03", "07"]
    assert run_sandbox_pass(root, settings, clock).lifecycle_files == []  # emitted once, not at every run
    [left] = load_state(root / "state.json").schedules
    assert (left.emitted, left.flow_id) == (3, FLOW_ID)

    with pytest.raises(ValueError, match="forward"):
        advance_clock(root, timedelta(0))


def test_a_version_1_state_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "integrated": [[SUPPLIER, "F-1"]]}))
    state = load_state(path)
    assert (state.integrated, state.clock_offset, state.schedules) == ({(SUPPLIER, "F-1")}, timedelta(0), [])
    path.write_text(json.dumps({"version": 7, "integrated": []}))
    with pytest.raises(GatewayError, match="version 7"):
        load_state(path)


# -- the configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "key", "message"),
    [
        ('scenario = "chaos"', "sandbox.scenario", "one of default, all-integrated"),
        ('reject = ["F-1"]', "sandbox.reject", 'only to scenario "partial"'),
        ('scenario = "partial"\nreject = [1]', "sandbox.reject", "list of strings"),
        ('lifecycle = ["01", "99"]', "sandbox.lifecycle", "'99'"),
        ("lifecycle_interval_seconds = -5", "sandbox.lifecycle_interval_seconds", "0 or more"),
        ('report_format = "pdf"', "sandbox.report_format", "cppstatut, cdar"),
    ],
)
def test_config_names_the_wrong_sandbox_key(tmp_path: Path, lines: str, key: str, message: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f"[sandbox]\n{lines}\n")
    with pytest.raises(ConfigError) as error:
        load_config(config, env={})
    assert error.value.key == key and message in error.value.message


# -- end to end through the CLI ---------------------------------------------------------------


def _site(tmp_path: Path, sandbox: str = "") -> tuple[Path, Path]:
    """A site as `gateway init` writes it, files taken at once, with ``sandbox`` keys added."""
    config = write_starter(tmp_path / "site")
    text = config.read_text().replace("settle_seconds = 2", "settle_seconds = 0")
    config.write_text(text.replace('dir = "sandbox"\n', f'dir = "sandbox"\n{sandbox}\n', 1))
    return config, tmp_path / "site"


def _cli(config: Path, *args: str) -> list[dict]:
    return json.loads(gateway("--config", str(config), *args).stdout)


def _run(config: Path) -> dict:
    return json.loads(gateway("--config", str(config), "run", "--once").stdout)


def _lifecycle_codes(site: Path) -> dict[str, list[str]]:
    """Invoice number → its status, then the lifecycle codes recorded from Chorus Pro's reports, in order."""
    store = Store(db.make_engine(f"sqlite:///{site / 'gateway.db'}"))
    try:
        with store.transaction() as tx:
            return {
                invoice.invoice_number: [
                    invoice.status,
                    *(e.code for e in tx.status_events(invoice_id=invoice.id) if re.fullmatch("[0-9]{2}", e.code)),
                ]
                for invoice in tx.list_invoices()
            }
    finally:
        store.close()


def test_cli_all_integrated(tmp_path: Path) -> None:
    config, site = _site(tmp_path, 'scenario = "all-integrated"')
    export = write_sample_export(site / "inbox" / "erp" / "export.csv", 6, with_errors=True)
    unlisted = [number for number, mistake in export.planted.items() if mistake.startswith("buyer")]
    assert len(unlisted) == 1  # what the default scenario rejects

    _run(config)
    [flow_row] = _cli(config, "flows", "list", "--json")
    assert (flow_row["status"], flow_row["integrated"], flow_row["rejected"]) == ("integrated", 3, 0)
    statuses = {i["invoice_number"]: i["status"] for i in _cli(config, "invoices", "list", "--json")}
    assert Counter(statuses.values()) == {"integrated": 3, "quarantined": 3}
    assert statuses[unlisted[0]] == "integrated"


def test_cli_partial_rejects_only_the_named_invoices_with_the_reason(tmp_path: Path) -> None:
    config, site = _site(
        tmp_path, 'scenario = "partial"\nreject = ["F-2026-000002"]\nreject_code = "MONTANT"\nreject_label = "écart"'
    )
    write_sample_export(site / "inbox" / "erp" / "export.csv", 3, with_errors=False)

    _run(config)
    [flow_row] = _cli(config, "flows", "list", "--json")
    assert (flow_row["status"], flow_row["integrated"], flow_row["rejected"]) == ("partially_integrated", 2, 1)
    invoices = {i["invoice_number"]: i for i in _cli(config, "invoices", "list", "--json")}
    assert {n: i["status"] for n, i in invoices.items()} == {
        "F-2026-000001": "integrated",
        "F-2026-000002": "rejected",
        "F-2026-000003": "integrated",
    }
    assert invoices["F-2026-000002"]["reason"] == "MONTANT: écart"


def test_cli_rejected_rejects_the_flow_and_every_invoice(tmp_path: Path) -> None:
    config, site = _site(tmp_path, 'scenario = "rejected"\nreject_label = "flux illisible"')
    write_sample_export(site / "inbox" / "erp" / "export.csv", 2, with_errors=False)

    _run(config)
    [flow_row] = _cli(config, "flows", "list", "--json")
    assert (flow_row["status"], flow_row["rejected"]) == ("rejected", 2)
    invoices = _cli(config, "invoices", "list", "--json")
    assert [(i["status"], i["reason"]) for i in invoices] == [("rejected", "SCENARIO: flux illisible")] * 2


def test_cli_silent_sends_no_report_and_the_flow_stays_sent(tmp_path: Path) -> None:
    config, site = _site(tmp_path, 'scenario = "silent"')
    write_sample_export(site / "inbox" / "erp" / "export.csv", 2, with_errors=False)

    sent = _run(config)["flows_sent"]
    assert len(sent) == 1
    [flow_row] = _cli(config, "flows", "list", "--json")
    assert flow_row["status"] == "sent"
    assert [p.name for p in (site / "sandbox" / "received").iterdir()] == [flow_row["file_name"]]  # it was read
    assert [p for p in (site / "sandbox" / "outbox").rglob("*") if p.is_file()] == []


def test_cli_lifecycle_progresses_as_the_sandbox_clock_advances(tmp_path: Path) -> None:
    config, site = _site(
        tmp_path, f'scenario = "all-integrated"\nlifecycle = {json.dumps(STEPS)}\nlifecycle_interval_seconds = {HOUR}'
    )
    write_sample_export(site / "inbox" / "erp" / "export.csv", 2, with_errors=False)

    _run(config)
    assert _lifecycle_codes(site) == {"F-2026-000001": ["integrated", "01"], "F-2026-000002": ["integrated", "01"]}

    advanced = gateway("--config", str(config), "sandbox", "--advance", "2h").stdout
    assert "moved forward by 2:00:00" in advanced and "_01.xml" in advanced
    _run(config)
    assert _lifecycle_codes(site) == {n: ["integrated", "01", "03", "07"] for n in ("F-2026-000001", "F-2026-000002")}

    gateway("--config", str(config), "sandbox", "--advance", "1d")
    _run(config)  # 08 and 11 only: what was emitted before is not emitted again
    assert _lifecycle_codes(site) == {n: ["integrated", *STEPS] for n in ("F-2026-000001", "F-2026-000002")}
    assert load_state(site / "sandbox" / "state.json").schedules == []  # nothing left to come


def test_cli_cdar_reports_are_written_and_reconciled(tmp_path: Path) -> None:
    config, site = _site(tmp_path, 'report_format = "cdar"\nscenario = "partial"\nreject = ["F-2026-000002"]')
    write_sample_export(site / "inbox" / "erp" / "export.csv", 3, with_errors=False)

    _run(config)
    answers = sorted(p for p in (site / "sandbox" / "outbox").rglob("*.xml"))  # picked up: moved to outbox/done
    assert [p.name[:8] for p in answers] == ["CSO1100A", "FEN1201A"]
    for path in answers:
        assert etree.parse(path).getroot().tag == CDAR_ROOT
    cr, lifecycle = (parse_cdar(path.read_bytes()) for path in answers)
    assert [(s.code, s.errors) for s in cr.flow_statuses] == [("500", ())]
    assert [(e.invoice_number, e.code) for e in lifecycle.invoice_statuses] == [
        ("F-2026-000002", "213"),
        *((number, code) for number in ("F-2026-000001", "F-2026-000003") for code in ("200", "203")),
    ]

    # The gateway reads CDAR too: 200 integrates an invoice, 213 rejects it with its reason.
    invoices = {i["invoice_number"]: i for i in _cli(config, "invoices", "list", "--json")}
    assert {n: i["status"] for n, i in invoices.items()} == {
        "F-2026-000001": "integrated",
        "F-2026-000002": "rejected",
        "F-2026-000003": "integrated",
    }
    assert "scenario partial" in invoices["F-2026-000002"]["reason"]
