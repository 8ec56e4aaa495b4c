"""Ingest and reconcile invoice lifecycle statuses against sent invoices.

    .venv/bin/python benchmarks/bench_reports.py --invoices 100000 --per-file 1000
    .venv/bin/python benchmarks/bench_reports.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test

Issue 6 asks for ≥ 2,000 events/s on SQLite over 100,000 status events against 100,000
invoices, and the figure on PostgreSQL. The invoices are inserted directly as `sent`
(the set-up is not measured); the events are CPPStatut invoice-status files of
``--per-file`` entries, stored raw then reconciled, one transaction per file, exactly as
`gateway run` and `gateway reports ingest` do.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
import structlog

from gateway.reports.model import InvoiceStatusEntry
from gateway.pipeline.reports import reconcile_report, store_report
from gateway.sandbox.cppstatut import invoice_status_document
from gateway.store import Store, db
from gateway.store.models import Invoice, SourceFile

SUPPLIER = "40483304800022"
BUYER = "11000000700010"


def _number(index: int) -> str:
    return f"B-{index:07d}"


def _seed(store: Store, count: int, now: datetime) -> None:
    with store.transaction() as tx:
        source = SourceFile(channel="bench", name="bench.csv", path="bench.csv", sha256="0" * 64, size=0,
                            status="processed", invoice_count=count, quarantined_count=0, received_at=now,
                            updated_at=now)
        tx.session.add(source)
        tx.session.flush()
        rows = [
            {"supplier_siret": SUPPLIER, "invoice_number": _number(i), "issue_year": 2026,
             "issue_date": date(2026, 11, 2), "buyer_siret": BUYER, "status": "sent", "source_file_id": source.id,
             "source_line": i + 2, "channel": "bench", "partner": "sandbox", "created_at": now, "updated_at": now}
            for i in range(count)
        ]
        for start in range(0, count, 10_000):
            tx.session.execute(sa.insert(Invoice), rows[start : start + 10_000])


def _files(count: int, per_file: int, now: datetime) -> list[bytes]:
    files = []
    for start in range(0, count, per_file):
        entries = [
            InvoiceStatusEntry(supplier_id=SUPPLIER, supplier_id_type="1", buyer_id=BUYER, invoice_number=_number(i),
                               invoice_date=date(2026, 11, 2), code="03", label="Mise à disposition", comment=None,
                               timestamp=now + timedelta(seconds=i))
            for i in range(start, min(count, start + per_file))
        ]
        files.append(invoice_status_document(entries=entries, flow_id=f"AAA1231100{start:015d}",
                                             produced_on=now.date(), receiver_id="AAA123"))
    return files


def run(url: str, invoices: int, per_file: int) -> dict[str, float]:
    now = datetime.now(UTC)
    if not url.startswith("sqlite"):
        engine = db.make_engine(url)
        db.upgrade(engine)  # a shared PostgreSQL is migrated on purpose, never by Store.open
        engine.dispose()
    store = Store.open(url)
    try:
        started = time.perf_counter()
        _seed(store, invoices, now)
        if not url.startswith("sqlite"):
            # 100,000 rows inserted at once: statistics as autovacuum would leave them, so
            # that the planner uses the (supplier, number) index rather than scanning.
            with store.engine.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("ANALYZE"))
        seeded = time.perf_counter() - started
        files = _files(invoices, per_file, now)
        outcomes: dict[str, int] = {}
        started = time.perf_counter()
        for position, raw in enumerate(files):
            with store.transaction() as tx:
                report, _ = store_report(tx, raw, file_name=f"FEN1201A_{position}.xml", partner="sandbox", now=now)
                outcome = reconcile_report(tx, report.id, now=now)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        elapsed = time.perf_counter() - started
        with store.transaction() as tx:
            integrated = tx.count_invoices_by_status().get("integrated", 0)
    finally:
        store.close()
    if outcomes != {"applied": len(files)} or integrated != invoices:
        raise SystemExit(f"reconciliation went wrong: {outcomes}, {integrated} integrated of {invoices}")
    return {"seed_s": seeded, "elapsed_s": elapsed, "events_per_s": invoices / elapsed, "files": len(files)}


def _postgres_schema(url: str) -> tuple[str, sa.Engine, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    return f"{url}?options=-csearch_path%3D{schema}", admin, schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--per-file", type=int, default=1000)
    parser.add_argument("--database", default=None, help="A PostgreSQL URL (a fresh schema is made and dropped); "
                        "default: SQLite in a temporary directory.")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only

    if args.database:
        url, admin, schema = _postgres_schema(args.database)
        try:
            figures = run(url, args.invoices, args.per_file)
        finally:
            with admin.begin() as connection:
                connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
        backend = "postgresql"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            figures = run(f"sqlite:///{Path(tmp) / 'bench.db'}", args.invoices, args.per_file)
        backend = "sqlite"
    print(f"backend               {backend}")
    print(f"invoices / events     {args.invoices} / {args.invoices} in {figures['files']:.0f} files "
          f"of {args.per_file}")
    print(f"seed (not measured)   {figures['seed_s']:.1f} s")
    print(f"ingest + reconcile    {figures['elapsed_s']:.1f} s")
    print(f"events/s              {figures['events_per_s']:.0f}   (target on SQLite: ≥ 2000)")


if __name__ == "__main__":
    main()
