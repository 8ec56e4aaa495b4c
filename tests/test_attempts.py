"""The flow and attempt state machine (``pipeline/attempts.py``): its tables, its refusals, and that nothing
else moves a flow or an attempt."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.domain import AttemptOutcome, FlowEvent, FlowStatus, InvoiceStatus
from gateway.errors import TransitionError
from gateway.pipeline import attempts
from gateway.store import Store, Tx
from gateway.store.rows import FlowRow

PROJECT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
#: The store's writers of a flow's status and an attempt's outcome.
_MOVES = ("add_flow", "claim_flow_for_attempt", "move_flow", "settle_attempt")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'gateway.db'}")
    try:
        yield opened
    finally:
        opened.close()


def _sending(tx: Tx) -> tuple[FlowRow, int]:
    source = tx.add_source_file(channel="erp", name="x.csv", path="/x.csv", sha256="0" * 64, size=1, now=NOW)
    invoice = tx.add_invoice(now=NOW, status=InvoiceStatus.PACKED, supplier_siret="1" * 14, invoice_number="F-1",
                             issue_year=2026, source_file_id=source.id, source_line=2, channel="erp", partner="p")
    flow = attempts.open_flow(tx, now=NOW, flow_id="AAA1231100000000000000001", partner="p",
                              interface_code="FSO1100A", syntax="ubl", file_name="F1.xml", sha256="0" * 64, size=1,
                              invoice_count=1)
    tx.add_flow_member(flow, invoice, member_name="F1.xml", sha256="0" * 64)
    attempt = attempts.start_attempt(tx, flow, transport="local", remote_name="F1.xml", now=NOW)
    assert attempt is not None
    return flow, attempt.id


def test_only_the_state_machine_calls_the_stores_moves() -> None:
    calls = re.compile(r"\.(" + "|".join(_MOVES) + r")\(")
    owner = PROJECT / "gateway" / "pipeline" / "attempts.py"
    found = [
        f"{path.relative_to(PROJECT)}:{number}: {line.strip()}"
        for path in sorted((PROJECT / "gateway").rglob("*.py"))
        if path != owner and "store" not in path.relative_to(PROJECT / "gateway").parts[:1]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if calls.search(line)
    ]
    assert found == []


def test_the_table_reaches_every_status_and_a_report_applies_in_any() -> None:
    assert {target for target in attempts.FLOW_TRANSITIONS.values()} == set(FlowStatus)
    for status in FlowStatus:
        assert attempts.FLOW_TRANSITIONS[(status, FlowEvent.REPORTED_INTEGRATED)] is FlowStatus.INTEGRATED
    assert [s for s, e in attempts.FLOW_TRANSITIONS if e is FlowEvent.RETRY] == [FlowStatus.FAILED]
    assert {o for o in attempts.ATTEMPT_TRANSITIONS.values()} == set(AttemptOutcome)


def test_a_retry_of_a_flow_that_is_not_failed_is_refused_and_changes_nothing(store: Store) -> None:
    with store.transaction() as tx:
        flow, _attempt = _sending(tx)
    with pytest.raises(TransitionError, match=r"^flow AAA1231100000000000000001 is sending; only a failed flow is "
                                              r"sent again$"), store.transaction() as tx:
        attempts.retry(tx, flow.flow_id, now=NOW)
    with store.transaction() as tx:
        assert tx.flow(flow.id).status == FlowStatus.SENDING


def test_an_attempt_is_ended_once(store: Store) -> None:
    with store.transaction() as tx:
        flow, attempt_id = _sending(tx)
        attempts.attempt_failed(tx, flow.id, attempt_id, error="partner down", retry_in=60, now=NOW)
        with pytest.raises(TransitionError, match="is already failed"):
            attempts.attempt_delivered(tx, flow.id, attempt_id, now=NOW, receipt="late")


def test_a_receipt_after_the_report_ends_the_attempt_and_leaves_the_flow_where_the_report_put_it(
    store: Store,
) -> None:
    """Before, an asynchronous MDN arriving after the integration report moved the flow back to sent."""
    with store.transaction() as tx:
        flow, attempt_id = _sending(tx)
        attempts.reported(tx, flow, FlowEvent.REPORTED_INTEGRATED, now=NOW, reason=None,
                          report_id=tx.store_report(sha256="a" * 64, file_name="CR.xml", partner="p", raw=b"<CR/>",
                                                    now=NOW)[0].id)
    with store.transaction() as tx:
        assert attempts.attempt_delivered(tx, flow.id, attempt_id, now=NOW, receipt="MDN, late") is False
    with store.transaction() as tx:
        assert tx.flow(flow.id).status == FlowStatus.INTEGRATED
        assert [a.outcome for a in tx.transmissions(flow)] == [AttemptOutcome.SUCCEEDED]


def test_a_failed_attempt_is_due_again_after_its_backoff_or_fails_the_flow(store: Store) -> None:
    with store.transaction() as tx:
        flow, attempt_id = _sending(tx)
        assert attempts.attempt_failed(tx, flow.id, attempt_id, error="down", retry_in=90, now=NOW) \
            is FlowStatus.PACKED
        row = tx.flow(flow.id)
        assert (row.reason, row.next_attempt_at) == ("down", datetime(2026, 12, 1, 8, 1, 30, tzinfo=UTC))
        assert attempts.start_attempt(tx, flow, transport="local", remote_name="F1.xml", now=NOW) is None  # not due
        later = datetime(2026, 12, 1, 8, 2, tzinfo=UTC)
        second = attempts.start_attempt(tx, flow, transport="local", remote_name="F1.xml", now=later)
        assert second is not None and second.attempt == 2
        assert attempts.attempt_failed(tx, flow.id, second.id, error="host key", retry_in=None, now=later) \
            is FlowStatus.FAILED
        assert tx.flow(flow.id).next_attempt_at is None
