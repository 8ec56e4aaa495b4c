"""The whole path through the real CLI: ERP export → sandbox → reconciled store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path


from gateway.errors import StoreError
from gateway.intake.sample import write_sample_export
from gateway.sandbox.directory import UNLISTED_BUYER_SIRET
from gateway.store import Store, db
from cli_runner import gateway

PROJECT = Path(__file__).resolve().parent.parent



def _site(tmp_path: Path, database_url: str) -> tuple[Path, dict[str, str]]:
    """A site made by `gateway init`, files taken at once, on the given database."""
    gateway("init", str(tmp_path / "site"))
    config = tmp_path / "site" / "gateway.toml"
    config.write_text(config.read_text().replace("settle_seconds = 2", "settle_seconds = 0"))
    env = {"GATEWAY_DATABASE_URL": database_url}
    if database_url.startswith("postgresql"):
        gateway("--config", str(config), "db", "upgrade", env=env)
    return config, env


def _invoices(config: Path, env: dict[str, str]) -> list[dict]:
    return json.loads(gateway("--config", str(config), "invoices", "list", "--json", env=env).stdout)


def test_demo_runs_the_whole_path_and_explains_each_failure(tmp_path: Path) -> None:
    """`gateway demo`: wrong invoices quarantined or rejected with reasons, the rest integrated."""
    result = gateway("demo", "--dir", str(tmp_path / "demo"))
    assert "Flows" in result.stdout and "Invoices held back or rejected" in result.stdout

    invoices = json.loads(gateway("--data-dir", str(tmp_path / "demo"), "invoices", "list", "--json").stdout)
    statuses = Counter(invoice["status"] for invoice in invoices)
    assert statuses == {"integrated": 16, "quarantined": 3, "rejected": 1}
    rejected = next(i for i in invoices if i["status"] == "rejected")
    assert rejected["buyer_siret"] == UNLISTED_BUYER_SIRET
    assert UNLISTED_BUYER_SIRET in rejected["reason"]
    for invoice in invoices:
        if invoice["status"] == "quarantined":
            assert "line" in invoice["reason"], invoice
        if invoice["status"] == "integrated":
            assert invoice["lifecycle"] and invoice["lifecycle"].startswith("03"), invoice
    reasons = sorted((tmp_path / "demo" / "quarantine").rglob("*.reason"))
    assert len(reasons) == 3


def test_run_once_reconciles_flows_and_quarantines_a_broken_file(tmp_path: Path, database_url: str) -> None:
    """`gateway run --once` on SQLite and PostgreSQL: final states are in the store."""
    config, env = _site(tmp_path, database_url)
    inbox = tmp_path / "site" / "inbox" / "erp"
    manifest = write_sample_export(inbox / "export-1.csv", 12, seed=7, number_prefix="E2E")
    (inbox / "export-2.csv").write_bytes(b"invoice_number;issue_date\nF-1;2026-11-02\n")

    result = gateway("--config", str(config), "run", "--once", env=env)
    summary = json.loads(result.stdout)
    assert summary["files"] == {"processed": 1, "quarantined": 1}
    assert len(summary["flows_sent"]) == 1

    invoices = {i["invoice_number"]: i for i in _invoices(config, env) if i["invoice_number"]}
    for number, fate in manifest.expected.items():
        assert invoices[number]["status"] == fate, (number, invoices[number]["reason"])

    broken = list((tmp_path / "site" / "quarantine" / "erp").glob("*export-2.csv.reason"))
    assert len(broken) == 1
    assert "line 1" in broken[0].read_text() and "'" in broken[0].read_text()
    assert sorted(p.name for p in inbox.iterdir()) == []
    [flow] = json.loads(gateway("--config", str(config), "flows", "list", "--json", env=env).stdout)
    assert flow["status"] == "partially_integrated"
    assert (flow["integrated"], flow["rejected"]) == (
        list(manifest.expected.values()).count("integrated"),
        1,
    )

    # A second pass finds nothing new to do and changes nothing.
    again = json.loads(gateway("--config", str(config), "run", "--once", env=env).stdout)
    assert again["flows_packed"] == [] and again["invoices"] == {}
    assert {i["invoice_number"]: i["status"] for i in _invoices(config, env) if i["invoice_number"]} == {
        n: i["status"] for n, i in invoices.items()
    }


def test_a_report_that_does_not_parse_is_kept_and_flagged(tmp_path: Path) -> None:
    config, env = _site(tmp_path, f"sqlite:///{tmp_path / 'g.db'}")
    outbox = tmp_path / "site" / "sandbox" / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / "CSO1100A_AAA123_garbage.xml").write_bytes(b"<CPPStatut><Enveloppe>")
    gateway("--config", str(config), "run", "--once", env=env)
    problems = json.loads(gateway("--config", str(config), "reports", "list", "--problems", "--json", env=env).stdout)
    assert [(p["file_name"], p["outcome"]) for p in problems] == [("CSO1100A_AAA123_garbage.xml", "invalid")]
    assert "line" in problems[0]["detail"]


def test_config_check_names_the_wrong_key(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[channels.erp]\npartner = "nobody"\n')
    result = gateway("--config", str(config), "config", "check", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("configuration error: channels.erp.partner:")


def test_daemon_processes_a_dropped_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`gateway run` picks up a file while running and exits cleanly on SIGTERM."""
    config, env = _site(tmp_path, f"sqlite:///{tmp_path / 'g.db'}")
    text = config.read_text().replace("poll_seconds = 5", "poll_seconds = 0.5")
    config.write_text(text)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config), "run"],
        env={**os.environ, **env},
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        staging = tmp_path / "export.csv"
        write_sample_export(staging, 3, with_errors=False, number_prefix="LIVE")
        os.replace(staging, tmp_path / "site" / "inbox" / "erp" / "export.csv")
        store = Store(db.make_engine(env["GATEWAY_DATABASE_URL"]))
        deadline = time.monotonic() + 60
        statuses: list[str] = []
        while time.monotonic() < deadline:
            try:
                with store.transaction() as tx:
                    statuses = [i.status for i in tx.list_invoices()]
            except StoreError:  # the daemon has not created its schema yet
                statuses = []
            if statuses and all(s == "integrated" for s in statuses):
                break
            time.sleep(0.3)
        store.close()
        assert statuses == ["integrated"] * 3
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "daemon.stopped" in stderr
