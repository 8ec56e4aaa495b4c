"""Crash points and failing partners: nothing lost, nothing sent twice."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from gateway.clock import FixedClock, SystemClock
from gateway.config import Config, default_config, ensure_layout
from gateway.domain import FlowStatus
from gateway.intake.sample import write_sample_export
from gateway.pipeline import PassSummary, Pipeline, attempts
from gateway.pipeline.outbox import flow_archive
from gateway.store.views import FlowView
from gateway.store import Store


@pytest.fixture
def config(tmp_path: Path) -> Config:
    base = default_config(tmp_path / "data")
    channels = tuple(dataclasses.replace(c, settle_seconds=0.0) for c in base.channels)
    config = dataclasses.replace(base, channels=channels, sandbox=dataclasses.replace(base.sandbox, enabled=False))
    ensure_layout(config)
    write_sample_export(config.channels[0].watch_dir / "export.csv", 4, with_errors=False)
    return config


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    store = Store.open(config.database_url)
    yield store
    store.close()


def _packed_flow(config: Config, store: Store) -> tuple[Pipeline, FlowView]:
    pipeline = Pipeline(config=config, store=store, clock=SystemClock())
    summary = PassSummary()
    pipeline.intake_channel(config.channels[0], summary)
    pipeline.pack(config.partners["sandbox"], summary)
    with store.transaction() as tx:
        [flow] = tx.list_flows()
    return pipeline, flow


def _crash_during_send(pipeline: Pipeline, store: Store, flow: FlowView, *, deposited: bool) -> None:
    """What a crash leaves: the attempt recorded in progress, the deposit done or not."""
    partner = pipeline.config.partners[flow.partner]
    with store.transaction() as tx:
        row = tx.flow(flow.id)
        attempts.start_attempt(tx, row, transport="local", remote_name=row.file_name, now=SystemClock().now())
        data = flow_archive(tx, pipeline.config.flows_dir, row)
    if deposited:
        pipeline.transport(partner).deposit(flow.file_name, data)


def test_attempt_interrupted_after_deposit_is_settled_without_resending(config: Config, store: Store) -> None:
    pipeline, flow = _packed_flow(config, store)
    _crash_during_send(pipeline, store, flow, deposited=True)

    summary = Pipeline(config=config, store=store, clock=SystemClock()).run_pass()

    assert summary.flows_sent == []  # settled, not sent again
    with store.transaction() as tx:
        row = tx.find_flow(flow.flow_id)
        attempts = tx.transmissions(row)
        assert row.status == FlowStatus.SENT.value
        assert [(a.attempt, a.outcome) for a in attempts] == [(1, "succeeded")]
        assert "settled after restart" in attempts[0].receipt
        assert {i.status for _m, i in tx.flow_members(row)} == {"sent"}


def test_attempt_interrupted_before_deposit_is_retried_once(config: Config, store: Store) -> None:
    pipeline, flow = _packed_flow(config, store)
    _crash_during_send(pipeline, store, flow, deposited=False)

    clock = FixedClock(datetime.now(UTC))
    restarted = Pipeline(config=config, store=store, clock=clock)
    assert restarted.run_pass().flows_sent == []  # settled as failed; the retry waits its backoff
    clock.advance(timedelta(seconds=config.partners["sandbox"].retry_initial_seconds * 1.2))
    assert restarted.run_pass().flows_sent == [flow.flow_id]

    outbound = config.partners["sandbox"].outbound_dir
    delivered = outbound / flow.file_name
    assert hashlib.sha256(delivered.read_bytes()).hexdigest() == flow.sha256
    assert [p.name for p in outbound.iterdir()] == [flow.file_name]  # no temporary left
    with store.transaction() as tx:
        attempts = tx.transmissions(tx.find_flow(flow.flow_id))
        assert [(a.attempt, a.outcome) for a in attempts] == [(1, "failed"), (2, "succeeded")]


def test_lost_archive_is_rebuilt_byte_for_byte(config: Config, store: Store) -> None:
    """The flow file is a pure function of its members: a resend sends the same bytes."""
    pipeline, flow = _packed_flow(config, store)
    (config.flows_dir / flow.file_name).unlink()
    pipeline.send(config.partners["sandbox"], PassSummary())
    sent = config.partners["sandbox"].outbound_dir / flow.file_name
    assert hashlib.sha256(sent.read_bytes()).hexdigest() == flow.sha256


def test_unreachable_partner_is_retried_then_failed_with_an_alert(config: Config, store: Store) -> None:
    partner = dataclasses.replace(config.partners["sandbox"], max_attempts=2)
    blocked = config.data_dir / "not-a-directory"
    blocked.write_text("the partner's directory is a file: every deposit fails")
    partner = dataclasses.replace(partner, outbound_dir=blocked)
    config = dataclasses.replace(config, partners={"sandbox": partner})
    pipeline, flow = _packed_flow(config, store)

    clock = FixedClock(datetime.now(UTC))
    pipeline.clock = clock
    with structlog.testing.capture_logs() as logs:
        first = PassSummary()
        pipeline.send(partner, first)
        with store.transaction() as tx:
            due = tx.find_flow(flow.flow_id).next_attempt_at
            waits = (due.replace(tzinfo=due.tzinfo or UTC) - clock.now()).total_seconds()  # SQLite drops the zone
        assert 0.8 * partner.retry_initial_seconds <= waits <= 1.2 * partner.retry_initial_seconds  # jitter
        early = PassSummary()
        pipeline.send(partner, early)  # before the backoff: no attempt
        clock.advance(timedelta(seconds=waits + 1))
        second = PassSummary()
        pipeline.send(partner, second)

    assert first.flows_failed == [] and early.flows_failed == [] and second.flows_failed == [flow.flow_id]
    with store.transaction() as tx:
        row = tx.find_flow(flow.flow_id)
        assert row.status == FlowStatus.FAILED.value
        assert [a.outcome for a in tx.transmissions(row)] == ["failed", "failed"]
    alerts = [entry for entry in logs if entry["event"] == "alert.flow_failed"]
    assert [a["flow"] for a in alerts] == [flow.flow_id]
