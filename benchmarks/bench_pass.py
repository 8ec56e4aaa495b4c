"""Throughput of one whole pass (intake, mapping, validation, packing, sending,
sandbox, reports) on a generated export, on embedded defaults.

    .venv/bin/python benchmarks/bench_pass.py --invoices 2000

Prints invoices per second for each step and the peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import structlog

from gateway.clock import SystemClock
from gateway.config import ensure_layout
from gateway.demo import demo_config
from gateway.intake.sample import write_sample_export
from gateway.pipeline import PassSummary, Pipeline
from gateway.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--invoices", type=int, default=2000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only

    with tempfile.TemporaryDirectory() as tmp:
        config = demo_config(Path(tmp))
        ensure_layout(config)
        store = Store.open(config.database_url)
        write_sample_export(config.channels[0].watch_dir / "bench.csv", args.invoices, with_errors=False)
        pipeline = Pipeline(config=config, store=store, clock=SystemClock())
        partner = config.partners["sandbox"]
        summary = PassSummary()
        steps = [
            ("intake (read, map, validate, store)", lambda: pipeline.intake_channel(config.channels[0], summary)),
            ("pack", lambda: pipeline.pack(partner, summary)),
            ("send", lambda: pipeline.send(partner, summary)),
            ("sandbox", pipeline.run_sandbox),
            ("reports", lambda: pipeline.collect_reports(partner, summary)),
        ]
        total = 0.0
        print(f"{args.invoices} invoices, SQLite, local transport")
        for name, step in steps:
            start = time.perf_counter()
            step()
            elapsed = time.perf_counter() - start
            total += elapsed
            print(f"  {name:<38} {elapsed:8.2f} s  {args.invoices / elapsed:10.0f} invoices/s")
        print(f"  {'whole pass':<38} {total:8.2f} s  {args.invoices / total:10.0f} invoices/s")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  peak RSS {peak:.0f} MiB; flows {summary.flows_sent}, reports {dict(summary.reports)}")
        store.close()


if __name__ == "__main__":
    main()
