"""Streaming map of a whole export: does memory stay flat as the export grows?

    .venv/bin/python benchmarks/bench_mapping.py --sizes 10000 100000 --syntax ubl [--discard]

For each size, writes a sample CSV export (``write_sample_export``, no planted errors),
then maps it in a fresh Python process, so that each peak RSS is that run's own: the
same path as ``gateway map`` (``map_export``: read_export → map_invoice, then each
document written to a temporary directory by ``OutputDir``), or with ``--discard`` the
documents are dropped, to measure reading and mapping alone.

Prints, per size: total time, invoices/s, ms per invoice (mean and p95 of the time
from one invoice to the next: read + map + write), RSS once warm (after the first
invoice: Saxon and the stylesheet loaded) and at the end, the peak, and the growth
per invoice from warm to end; then the ratio of the largest run's peak to the
smallest's, against a target of 1.2.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

TARGET_RATIO = 1.2
#: Latency histogram: 10 µs buckets up to 1 s, fixed size so that measuring does not
#: itself make memory grow with the number of invoices.
_BUCKET_S = 1e-5
_BUCKETS = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--syntax", default="ubl")
    parser.add_argument("--discard", action="store_true", help="Map only: do not write the documents.")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_map_in_this_process(args.child, args.syntax, args.discard)))
        return
    _compare(sorted(args.sizes), args.syntax, args.discard)


def _compare(sizes: list[int], syntax: str, discard: bool) -> None:
    from gateway.intake.sample import write_sample_export

    mode = "read + map (documents discarded)" if discard else "read + map + write each document to a temp dir"
    print(f"streaming map to {syntax}: {mode}; one fresh process per size")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-mapping-") as tmp:
        for size in sizes:
            export = Path(tmp) / f"export-{size}.csv"
            write_sample_export(export, size, with_errors=False)
            rows = _count_rows(export)
            print(f"  export of {size} invoices: {rows} rows ({rows / size:.2f} per invoice), "
                  f"{export.stat().st_size / 2**20:.1f} MiB")
            results.append(_run_child(export, syntax, discard))
    print()
    print(f"  {'invoices':>9} {'total s':>8} {'inv/s':>7} {'mean ms':>8} {'p95 ms':>7} "
          f"{'warm MiB':>9} {'end MiB':>8} {'peak MiB':>9} {'growth B/inv':>13}")
    for r in results:
        print(f"  {r['invoices']:>9} {r['seconds']:>8.1f} {r['invoices'] / r['seconds']:>7.0f} "
              f"{r['mean_ms']:>8.2f} {r['p95_ms']:>7.2f} {r['warm_rss_mib']:>9.0f} "
              f"{r['end_rss_mib']:>8.0f} {r['peak_rss_mib']:>9.0f} {_growth(r):>13.0f}")
    if len(results) > 1:
        small, large = results[0], results[-1]
        ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
        verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
        print(f"\n  peak({large['invoices']}) / peak({small['invoices']}) = {ratio:.2f} "
              f"(target <= {TARGET_RATIO}): {verdict}")


def _growth(result: dict[str, float]) -> float:
    """RSS gained per invoice once warm: near 0 when streaming; a leak shows here even
    while the peak is still set by the start-up transient (Saxon's heap before its
    first collection) and the ratio passes."""
    return (result["end_rss_mib"] - result["warm_rss_mib"]) * 2**20 / result["invoices"]


def _count_rows(export: Path) -> int:
    with export.open("rb") as handle:
        return sum(1 for _ in handle) - 1  # the sample writes one physical line per row


def _run_child(export: Path, syntax: str, discard: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(export), "--syntax", syntax]
    done = subprocess.run(command + (["--discard"] if discard else []), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"the mapping run of {export.name} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def _map_in_this_process(export: Path, syntax: str, discard: bool) -> dict[str, float]:
    import structlog

    from gateway.cli.mapping import Mapped, OutputDir, map_export
    from gateway.domain import Syntax
    from gateway.xml.syntax import SYNTAXES

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    target = Syntax(syntax)
    histogram = array("I", bytes(4 * (_BUCKETS + 1)))
    count = 0
    warm_rss = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-mapping-out-") as out:
        output = OutputDir(Path(out), SYNTAXES[target].extension)
        start = last = time.perf_counter()
        for result in map_export(export, "csv", target):
            if not isinstance(result, Mapped):
                sys.exit(f"not mapped: {result.as_text()}")
            if not discard:
                output.write(result.invoice, result.document)
            now = time.perf_counter()
            histogram[min(int((now - last) / _BUCKET_S), _BUCKETS)] += 1
            last = now
            count += 1
            if count == 1:
                warm_rss = _rss_mib()
        seconds = time.perf_counter() - start
    return {
        "invoices": count,
        "seconds": seconds,
        "mean_ms": 1000 * seconds / count,
        "p95_ms": 1000 * _BUCKET_S * _percentile(histogram, 0.95),
        "warm_rss_mib": warm_rss,
        "end_rss_mib": _rss_mib(),
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _percentile(histogram: array, fraction: float) -> int:
    """The upper edge (in buckets) of the bucket holding the ``fraction`` quantile."""
    wanted = fraction * sum(histogram)
    seen = 0
    for bucket, count in enumerate(histogram):
        seen += count
        if seen >= wanted:
            return bucket + 1
    return len(histogram)


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    main()
