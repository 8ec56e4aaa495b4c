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


def _events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def _wait_for(condition, what: str, process: subprocess.Popen, log: Path, deadline: float = 60) -> None:  # noqa: ANN001
    """Poll ``condition()`` until true while the daemon lives; conditions, never durations,
    so that load cannot fail the test."""
    end = time.monotonic() + deadline
    while not condition():
        if process.poll() is not None or time.monotonic() > end:
            state = f"the daemon exited {process.returncode}" if process.returncode is not None else f"{deadline} s"
            raise AssertionError(f"{what}: not seen ({state}); log:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


def _integrated(store: Store) -> list[str]:
    try:
        with store.transaction() as tx:
            return [i.invoice_number for i in tx.list_invoices() if i.status == "integrated"]
    except StoreError:  # the daemon has not created its schema yet
        return []


def test_daemon_outlives_a_failing_pass_and_a_failing_file_then_stops_on_sigterm(tmp_path: Path) -> None:
    """`gateway run` with its flows and archive directories replaced by files while it runs:
    each failing pass is logged (then one line per repetition, backing off), the export whose
    archiving fails waits and is quarantined after 3 passes, and once the directories are
    back the daemon sends what it had and takes a later file; SIGTERM is logged, then the stop."""
    config, env = _site(tmp_path, f"sqlite:///{tmp_path / 'g.db'}")
    site = tmp_path / "site"
    text = config.read_text().replace("poll_seconds = 5", "poll_seconds = 0.5")
    config.write_text(text)
    log = tmp_path / "daemon.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), "run"],
            env={**os.environ, **env},
            cwd=PROJECT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
    store = Store(db.make_engine(env["GATEWAY_DATABASE_URL"]))
    try:
        _wait_for(lambda: any(e["event"] == "daemon.started" for e in _events(log)), "daemon.started", process, log)
        for name in ("flows", "archive"):
            (site / name).rmdir()
            (site / name).write_text("not a directory\n")
        staging = tmp_path / "export.csv"
        write_sample_export(staging, 3, with_errors=False, number_prefix="LIVE")
        os.replace(staging, site / "inbox" / "erp" / "export.csv")

        def quarantined() -> bool:
            return any((site / "quarantine" / "erp").glob("*export.csv.reason"))

        _wait_for(lambda: quarantined() and any(e["event"] == "alert.pass_failed_again" for e in _events(log)),
                  "the export quarantined after 3 failed passes, and a repeated pass failure", process, log)
        for name in ("flows", "archive"):
            (site / name).unlink()
            (site / name).mkdir()
        write_sample_export(staging, 3, with_errors=False, number_prefix="LATE")
        os.replace(staging, site / "inbox" / "erp" / "later.csv")
        _wait_for(lambda: len(_integrated(store)) == 6, "6 invoices integrated", process, log)
    finally:
        store.close()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    events = _events(log)
    assert process.returncode == 0, log.read_text()[-4000:]
    assert all(line.startswith("{") for line in log.read_text().splitlines()), "a line that is not the JSON log"

    [first] = [e for e in events if e["event"] == "alert.pass_failed"]
    assert first["error_type"] == "FileExistsError" and "flows" in first["error"]
    assert "Traceback" in first["exception"]  # a bug's traceback: in the JSON log only
    again = [e for e in events if e["event"] == "alert.pass_failed_again"]
    assert [e["repeats"] for e in again] == list(range(1, len(again) + 1))
    assert "exception" not in again[0] and again[0]["retry_in_seconds"] > first["retry_in_seconds"]
    assert any(e["event"] == "daemon.recovered" for e in events)

    file_failures = [e for e in events if e["event"] == "alert.file_failed" and e["file"] == "export.csv"]
    assert [e["failed_passes"] for e in file_failures] == [1, 2, 3]
    assert file_failures[0]["channel"] == "erp" and "archive" in file_failures[0]["error"]
    [reason] = (site / "quarantine" / "erp").glob("*export.csv.reason")
    assert "intake failed 3 passes in a row" in reason.read_text()
    assert [p.name for p in (site / "archive" / "erp").iterdir()][0].endswith("later.csv")

    stopping = [e for e in events if e["event"] == "daemon.stopping"]
    assert [e["signal"] for e in stopping] == ["SIGTERM"]
    assert events[-1]["event"] == "daemon.stopped" and events.index(stopping[0]) < len(events) - 1
