"""One daemon per store, and claims: a flow deposited once, an invoice in one flow, a
report stored once, an export recorded once, whatever the number of processes; short
intake transactions that let an operator's commands write during a long intake."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli_runner import PROJECT, gateway
from gateway.clock import SystemClock
from gateway.config import Config, Partner, default_config, ensure_layout, load_config
from gateway.domain import FlowStatus, InvoiceStatus
from gateway.intake.sample import write_sample_export
from gateway.pipeline import PassSummary, Pipeline, attempts
from gateway.pipeline.reports import store_report
from gateway.store import Store
from gateway.store.lock import EXIT_STORE_HELD, DaemonLock, StoreHeld, hold_store

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _wait_for(condition: Callable[[], bool], what: str, deadline: float = 120.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.1)


# -- two daemons, real processes --------------------------------------------------


def _site(tmp_path: Path, url: str, invoices: int) -> tuple[Path, dict[str, str], Config]:
    """A local partner taking one invoice per flow (xml packaging), and an export."""
    config_path = tmp_path / "gateway.toml"
    config_path.write_text("""
[gateway]
data_dir = "data"
poll_seconds = 0.2
[sandbox]
enabled = false
[partners.chorus]
transport = "local"
partner_code = "AAA123"
outbound_dir = "out"
inbound_dir = "in"
packaging = "xml"
[channels.erp]
partner = "chorus"
settle_seconds = 0
""")
    env = {"GATEWAY_DATABASE_URL": url}
    config = load_config(config_path, env=env)
    ensure_layout(config)
    write_sample_export(config.channels[0].watch_dir / "export.csv", invoices, with_errors=False)
    return config_path, env, config


def _start_daemon(config_path: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")} | env
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config_path), "--log-format", "json", "run"],
            stdout=subprocess.DEVNULL, stderr=stderr, env=full_env, cwd=PROJECT,
        )


def _events(log: Path, name: str) -> list[dict]:
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [entry for entry in entries if entry.get("event") == name]


def test_a_second_daemon_is_refused_and_every_flow_is_deposited_once(
    database_url: str, tmp_path: Path, open_store: Callable[[str], Store]
) -> None:
    config_path, env, config = _site(tmp_path, database_url, invoices=12)
    store = open_store(database_url)
    pipeline = Pipeline(config=config, store=store, clock=SystemClock())
    try:
        pipeline.intake_channel(config.channels[0], PassSummary())
        pipeline.pack(config.partners["chorus"], PassSummary())
    finally:
        pipeline.close()
    with store.transaction() as tx:
        flows = {flow.flow_id: flow for flow in tx.list_flows(status=FlowStatus.PACKED.value)}
    assert len(flows) == 12  # all due at once, as after `gateway flows retry`

    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    daemons = [_start_daemon(config_path, env, log) for log in logs]
    try:
        _wait_for(lambda: any(d.poll() is not None for d in daemons), "one of the two daemons to be refused")
        [refused] = [i for i, d in enumerate(daemons) if d.poll() is not None]
        running = daemons[1 - refused]
        assert daemons[refused].returncode == EXIT_STORE_HELD
        message = logs[refused].read_text().strip()
        host = socket.gethostname()[:20]
        assert message.startswith(f"error: another gateway holds this store: pid {running.pid}, host {host}")
        assert message.count("\n") == 0 and "(started " in message

        def all_sent() -> bool:
            with store.transaction() as tx:
                return {f.status for f in tx.list_flows()} == {FlowStatus.SENT.value}

        _wait_for(all_sent, "the running daemon to send the 12 flows")
        # Read commands do not take the lock: they answer while the daemon runs.
        listed = json.loads(gateway("--config", str(config_path), "flows", "list", "--json", env=env).stdout)
        assert {row["status"] for row in listed} == {FlowStatus.SENT.value}
        running.send_signal(signal.SIGTERM)
        assert running.wait(timeout=60) == 0
    finally:
        for daemon in daemons:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()

    assert sorted(p.name for p in config.partners["chorus"].outbound_dir.iterdir()) == sorted(
        f.file_name for f in flows.values()
    )
    with store.transaction() as tx:
        for flow_id in flows:
            flow = tx.find_flow(flow_id)
            assert [(a.attempt, a.outcome) for a in tx.transmissions(flow)] == [(1, "succeeded")], flow_id
            assert [e.code for e in tx.status_events(flow_pk=flow.id)].count(FlowStatus.SENT.value) == 1
        sent_audits = Counter(e.subject_id for e in tx.audit_events() if e.action == "flow.sent")
    assert sent_audits == dict.fromkeys(flows, 1)
    assert Counter(e["flow"] for e in _events(logs[1 - refused], "flow.sent")) == dict.fromkeys(flows, 1)
    assert _events(logs[refused], "flow.sent") == []


# -- claims between two processes, interleaved at the worst moment ----------------


class _Rivalled(Pipeline):
    """A pipeline that lets a rival process pack or send in the instant after it read
    what is ready or due, and before it acts: the window two daemons shared."""

    rival: Pipeline | None = None

    def _pack_one(self, tx, partner, syntax, group, now):  # noqa: ANN001, ANN202
        if self.rival is not None:
            rival, self.rival = self.rival, None
            rival.pack(partner, PassSummary())
        return super()._pack_one(tx, partner, syntax, group, now)

    def _send_one(self, partner: Partner, flow_pk: int, summary: PassSummary) -> None:
        if self.rival is not None:
            rival, self.rival = self.rival, None
            rival.send(partner, PassSummary())
        super()._send_one(partner, flow_pk, summary)


def _local_config(tmp_path: Path, url: str, *, max_invoices_per_flow: int = 500) -> Config:
    base = default_config(tmp_path / "data")
    channels = tuple(dataclasses.replace(c, settle_seconds=0.0) for c in base.channels)
    partners = {name: dataclasses.replace(p, max_invoices_per_flow=max_invoices_per_flow)
                for name, p in base.partners.items()}
    config = dataclasses.replace(base, channels=channels, partners=partners, database_url=url,
                                 sandbox=dataclasses.replace(base.sandbox, enabled=False))
    ensure_layout(config)
    return config


def test_two_processes_never_pack_an_invoice_twice_nor_deposit_a_flow_twice(
    database_url: str, tmp_path: Path, open_store: Callable[[str], Store]
) -> None:
    config = _local_config(tmp_path, database_url, max_invoices_per_flow=1)
    write_sample_export(config.channels[0].watch_dir / "export.csv", 4, with_errors=False)
    partner = config.partners["sandbox"]
    rival = Pipeline(config=config, store=open_store(database_url), clock=SystemClock())
    first = _Rivalled(config=config, store=open_store(database_url), clock=SystemClock())
    try:
        first.intake_channel(config.channels[0], PassSummary())
        first.rival = rival
        packed = PassSummary()
        first.pack(partner, packed)
        first.rival = rival
        sent = PassSummary()
        first.send(partner, sent)
    finally:
        first.close()
        rival.close()

    assert packed.flows_packed == [] and sent.flows_sent == []  # the rival won every claim
    with first.store.transaction() as tx:
        flows = tx.list_flows()
        members = [invoice.id for flow in flows for _member, invoice in tx.flow_members(flow)]
        assert len(flows) == 4 and sorted(members) == sorted(set(members)) and len(members) == 4
        for flow in flows:
            assert [a.outcome for a in tx.transmissions(flow)] == ["succeeded"]
            assert flow.status == FlowStatus.SENT.value and flow.attempts == 1


def test_of_two_claimers_of_a_due_flow_exactly_one_sends(
    database_url: str, open_store: Callable[[str], Store]
) -> None:
    """Both read the flow as due before either claims it: the compare-and-set decides."""
    stores = [open_store(database_url), open_store(database_url)]
    with stores[0].transaction() as tx:
        flow_id = _packed_flow(tx).flow_id
    both_read = threading.Barrier(2, timeout=60)
    claims: list[object] = []

    def claim(store: Store) -> None:
        with store.transaction() as tx:
            [flow] = tx.flows_due("p", NOW)
            both_read.wait()
            claims.append(attempts.start_attempt(tx, flow, transport="local", remote_name=flow.file_name, now=NOW))

    threads = [threading.Thread(target=claim, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(claims) == 2 and sum(a is not None for a in claims) == 1
    with stores[1].transaction() as tx:
        flow = tx.find_flow(flow_id)
        assert flow.status == FlowStatus.SENDING.value and flow.attempts == 1
        assert [a.outcome for a in tx.transmissions(flow)] == ["in_progress"]


def _packed_flow(tx, number: str = "F-1"):  # noqa: ANN001, ANN202
    source = tx.add_source_file(channel="erp", name="x.csv", path="/x.csv", sha256="0" * 64, size=1, now=NOW)
    invoice = tx.add_invoice(now=NOW, status=InvoiceStatus.PACKED, supplier_siret="73282932000017",
                             invoice_number=number, issue_year=2026, source_file_id=source.id, source_line=2,
                             channel="erp", partner="p")
    flow = attempts.open_flow(tx, now=NOW, flow_id=f"AAA123{number}", partner="p", interface_code="FSO1110",
                              syntax="ubl", file_name=f"{number}.xml", sha256="0" * 64, size=1, invoice_count=1)
    tx.add_flow_member(flow, invoice, member_name=f"{number}.xml", sha256="0" * 64)
    return flow


def test_a_packer_that_lost_one_invoice_of_a_group_takes_none_of_it(
    database_url: str, open_store: Callable[[str], Store]
) -> None:
    first, second = open_store(database_url), open_store(database_url)
    with first.transaction() as tx:
        source = tx.add_source_file(channel="erp", name="x.csv", path="/x.csv", sha256="0" * 64, size=1, now=NOW)
        for number in ("F-1", "F-2"):
            tx.add_invoice(now=NOW, status=InvoiceStatus.VALID, supplier_siret="73282932000017",
                           invoice_number=number, issue_year=2026, source_file_id=source.id, source_line=2,
                           channel="erp", partner="p", syntax="ubl")
    with first.transaction() as tx:
        ready = list(tx.invoices_ready(partner="p", syntax="ubl"))
        with second.transaction() as rival:
            assert rival.claim_invoices_for_flow(rival.invoices_ready(partner="p", syntax="ubl")[1:])
        assert not tx.claim_invoices_for_flow(ready)
    with first.transaction() as tx:
        statuses = {i.invoice_number: i.status for i in tx.list_invoices()}
    assert statuses == {"F-1": InvoiceStatus.VALID.value, "F-2": InvoiceStatus.PACKED.value}


def test_a_report_picked_up_by_two_processes_is_stored_once(
    database_url: str, open_store: Callable[[str], Store]
) -> None:
    first, second = open_store(database_url), open_store(database_url)
    report = {"file_name": "CR.xml", "partner": "p", "now": NOW}
    digest = hashlib.sha256(b"<CR/>").hexdigest()
    with first.transaction() as tx:
        assert tx.find_report(digest) is None
        with second.transaction() as rival:
            stored_by_rival, stored = store_report(rival, b"<CR/>", **report)
        assert stored
        again, stored = store_report(tx, b"<CR/>", **report)
        assert (again.id, stored) == (stored_by_rival.id, False)  # no unique-key error: a no-op
    with first.transaction() as tx:
        assert [r.id for r in tx.list_reports()] == [stored_by_rival.id]
        assert [e.action for e in tx.audit_events()].count("report.received") == 1


def test_an_export_is_claimed_by_one_process_and_resumed_only_by_the_daemon_that_found_it_unfinished(
    database_url: str, open_store: Callable[[str], Store]
) -> None:
    first, second = open_store(database_url), open_store(database_url)
    export = {"channel": "erp", "name": "daily.csv", "path": "/in/daily.csv", "sha256": "b" * 64, "size": 9,
              "now": NOW}
    with first.transaction() as tx:
        claimed = tx.claim_source_file(**export)
    assert claimed is not None
    with second.transaction() as tx:
        assert tx.claim_source_file(**export) is None  # held by the first process
        assert tx.unfinished_source_files("erp") == {claimed.id}
    with second.transaction() as tx:  # a later pass resumes the intake left unfinished
        assert tx.claim_source_file(**export, resumable={claimed.id}).id == claimed.id
        assert len(tx.source_files()) == 1


# -- SQLite: short intake transactions, operators' writes wait ---------------------


def test_an_operator_can_write_between_the_batches_of_a_long_intake(tmp_path: Path) -> None:
    config = _local_config(tmp_path, f"sqlite:///{tmp_path / 'gateway.db'}")
    write_sample_export(config.channels[0].watch_dir / "export.csv", 5, with_errors=False)
    outcomes: list[str] = []

    class Observed(Pipeline):
        calls = 0

        def _accept(self, tx, channel, source, invoice):  # noqa: ANN001, ANN202
            self.calls += 1
            if self.calls == 3:  # the first invoice of the second batch
                operator = sqlite3.connect(tmp_path / "gateway.db", timeout=0)  # no waiting at all
                try:
                    operator.execute("INSERT INTO counters (name, value) VALUES ('operator', 1)")
                    operator.commit()
                    outcomes.append("written")
                except sqlite3.OperationalError as exc:
                    outcomes.append(str(exc))
                finally:
                    operator.close()
            return super()._accept(tx, channel, source, invoice)

    store = Store.open(config.database_url)
    pipeline = Observed(config=config, store=store, clock=SystemClock())
    pipeline.intake_batch_invoices, pipeline.intake_batch_seconds = 2, 3600.0
    try:
        summary = PassSummary()
        pipeline.intake_channel(config.channels[0], summary)
    finally:
        pipeline.close()
        store.close()
    assert outcomes == ["written"]  # before: "database is locked" for the whole export
    assert summary.invoices["valid"] == 5


def test_an_intake_interrupted_between_batches_resumes_without_loss_or_double(tmp_path: Path) -> None:
    config = _local_config(tmp_path, f"sqlite:///{tmp_path / 'gateway.db'}")
    manifest = write_sample_export(config.channels[0].watch_dir / "export.csv", 10)

    class Killed(Pipeline):
        def _accept(self, tx, channel, source, invoice):  # noqa: ANN001, ANN202
            if invoice.number == "F-2026-000006":  # in the second batch of three
                raise KeyboardInterrupt  # what a kill leaves: the batch in hand rolled back
            return super()._accept(tx, channel, source, invoice)

    store = Store.open(config.database_url)
    try:
        killed = Killed(config=config, store=store, clock=SystemClock())
        killed.intake_batch_invoices, killed.intake_batch_seconds = 3, 3600.0
        with pytest.raises(KeyboardInterrupt):
            killed.intake_channel(config.channels[0], PassSummary())
        killed.close()
        with store.transaction() as tx:
            [source] = tx.source_files()
            assert source.status == "received" and len(tx.list_invoices()) == 3

        restarted = Pipeline(config=config, store=store, clock=SystemClock())
        restarted.intake_batch_invoices, restarted.intake_batch_seconds = 3, 3600.0
        summary = PassSummary()
        try:
            restarted.intake_channel(config.channels[0], summary)
        finally:
            restarted.close()
        with store.transaction() as tx:
            [source] = tx.source_files()
            invoices = tx.list_invoices()
            quarantined = [i for i in invoices if i.status == InvoiceStatus.QUARANTINED.value]
            assert (source.status, source.invoice_count, source.quarantined_count) == (
                "processed", 10, len(quarantined))
    finally:
        store.close()
    assert sorted(i.invoice_number for i in invoices) == sorted(manifest.expected)  # each once
    assert summary.files == {"processed": 1} and summary.invoices["received"] == 10
    assert not any(config.channels[0].watch_dir.iterdir())  # archived


def test_an_operators_write_waits_for_a_write_transaction_instead_of_failing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    store = Store.open(url)
    with store.transaction() as tx:
        flow = _packed_flow(tx)
        attempt = attempts.start_attempt(tx, flow, transport="local", remote_name=flow.file_name, now=NOW)
        attempts.attempt_failed(tx, flow.id, attempt.id, error="partner down", retry_in=None, now=NOW)
    store.close()
    env = {"GATEWAY_DATABASE_URL": url, "GATEWAY_DATA_DIR": str(tmp_path / "data")}
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")} | env

    daemon = sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)
    daemon.execute("BEGIN IMMEDIATE")  # a long intake's write transaction, as it held the lock before
    daemon.execute("INSERT INTO counters (name, value) VALUES ('intake', 1)")
    retry = subprocess.Popen([sys.executable, "-m", "gateway", "flows", "retry", flow.flow_id],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd=PROJECT)
    try:
        time.sleep(3)  # shorter than the 30 s busy timeout
        assert retry.poll() is None, retry.communicate()  # waiting, not failed
    finally:
        daemon.execute("COMMIT")
        daemon.close()
    out, err = retry.communicate(timeout=120)
    assert retry.returncode == 0, err.decode()
    assert b"packed again" in out


@pytest.mark.postgres
def test_a_daemon_that_lost_its_postgresql_lock_takes_it_back_or_stops(postgres_url: str) -> None:
    """The advisory lock lives with a connection: a server restart or a killed backend
    ends it. The daemon's watcher takes it back, or stops the daemon if another took it."""
    import sqlalchemy as sa

    admin = sa.create_engine(postgres_url)
    ours = f"chorus-gateway pid={os.getpid()} host={socket.gethostname()}"[:63]

    def holder_backend() -> int | None:
        with admin.connect() as connection:
            return connection.execute(sa.text(
                "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = :name"
            ), {"name": ours}).scalar()

    def kill(backend: int | None) -> None:
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})

    def take() -> DaemonLock | None:
        try:
            return hold_store(postgres_url)
        except StoreHeld:
            return None

    held: list[DaemonLock | None] = []
    try:
        stop = threading.Event()
        held.append(hold_store(postgres_url))
        first = holder_backend()
        held[-1].watch(stop, interval=0.05)
        kill(first)
        _wait_for(lambda: holder_backend() not in (None, first), "the lock taken back on a new connection")
        assert not stop.is_set() and take() is None
        held[-1].release()

        stop = threading.Event()
        lost = hold_store(postgres_url)
        held.append(lost)
        kill(holder_backend())
        _wait_for(lambda: bool(held.append(take()) or held[-1]), "another process to take the lost lock")
        lost.watch(stop, interval=0.05)
        _wait_for(stop.is_set, "the daemon that lost its lock told to stop")
        assert lost.lost is not None and f"pid {os.getpid()}" in lost.lost.message
    finally:
        for lock in held:
            if lock is not None:
                lock.release()
        admin.dispose()
