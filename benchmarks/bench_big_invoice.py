"""Memory of one big invoice end to end (issue 13): is a 100,000-line invoice under 600 MB?

    .venv/bin/python benchmarks/bench_big_invoice.py [--lines 1000 10000 100000] [--no-baseline]

For each size, one export holding a single invoice of that many lines (rows of the
sample export's items) goes through a whole pass in a fresh process, on embedded
defaults (SQLite, local transport, the sandbox): intake (read, map, validate in the
worker, store), pack, send, the sandbox, reports. Printed per size: the invoice's
outcome, seconds per step, the peak RSS of the gateway's process and of its validation
worker (each its own VmHWM; their sum bounds the two together), and the memory per
line: (peak(N) - peak(1 line)) / (N - 1).

Then the baseline, in a fresh process per size: the same UBL document as the pass
produced, through plain lxml (parse, XSD) and saxonche (parse, the EN 16931
Schematron to a string), the way one would write it without care for memory.

Target: at 100,000 lines, the gateway's process and the worker each under 600 MB.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MIB = 600
REFERENCE_LINES = 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain lxml + saxonche runs")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_pass_in_this_process(args.child, args.keep)))
        return
    if args.baseline is not None:
        print(json.dumps(_baseline_in_this_process(args.baseline)))
        return
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    _compare(sorted({REFERENCE_LINES, *args.lines}), baseline=not args.no_baseline)


def _compare(sizes: list[int], *, baseline: bool) -> None:
    print(f"one invoice of N lines, a whole pass each in a fresh process; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    results, plain = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-big-invoice-") as tmp:
        for size in sizes:
            document = Path(tmp) / f"ubl-{size}.xml"
            results[size] = _child("--child", str(size), "--keep", str(document))
            if baseline and document.is_file():
                plain[size] = _child("--baseline", str(document))
    print()
    print(f"  {'lines':>7} {'outcome':>10} {'UBL MiB':>8} {'intake s':>9} {'others s':>9} "
          f"{'gateway MiB':>12} {'worker MiB':>11} {'sum MiB':>8} {'gateway KiB/line':>17} {'worker KiB/line':>16}")
    reference = results[sizes[0]]
    for size in sizes:
        r = results[size]
        print(f"  {size:>7} {r['outcome']:>10} {r['ubl_mib']:>8.1f} {r['seconds']['intake']:>9.1f} "
              f"{sum(v for k, v in r['seconds'].items() if k != 'intake'):>9.1f} {r['peak_mib']:>12.0f} "
              f"{r['worker_peak_mib']:>11.0f} {r['peak_mib'] + r['worker_peak_mib']:>8.0f} "
              f"{_per_line(r, reference, 'peak_mib', size):>17} {_per_line(r, reference, 'worker_peak_mib', size):>16}")
    if plain:
        print("\n  baseline: plain lxml (parse, XSD) + saxonche (parse, EN 16931 Schematron to a string), same UBL")
        print(f"  {'lines':>7} {'seconds':>8} {'peak MiB':>9} {'KiB/line':>9}")
        for size in sizes:
            if size in plain:
                p = plain[size]
                print(f"  {size:>7} {p['seconds']:>8.1f} {p['peak_mib']:>9.0f} "
                      f"{_per_line(p, plain[sizes[0]], 'peak_mib', size):>9}")
    largest = results[sizes[-1]]
    worst = max(largest["peak_mib"], largest["worker_peak_mib"])
    verdict = "PASS" if worst < TARGET_MIB and largest["outcome"] == "integrated" else "FAIL"
    print(f"\n  {sizes[-1]} lines: gateway {largest['peak_mib']:.0f} MiB, worker {largest['worker_peak_mib']:.0f} MiB "
          f"(target: each < {TARGET_MIB}), {largest['outcome']}: {verdict}")


def _per_line(result: dict, reference: dict, key: str, size: int) -> str:
    if size <= REFERENCE_LINES:
        return "-"
    return f"{(result[key] - reference[key]) * 1024 / (size - REFERENCE_LINES):.1f}"


def _child(*args: str) -> dict:
    output = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if output.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed:\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write_export(path: Path, lines: int) -> None:
    """One invoice of ``lines`` rows, its header fields repeated on each as ERPs write them."""
    from gateway.intake.sample import COLUMNS, SUPPLIER_IBAN, SUPPLIER_SIRET, SUPPLIER_VAT
    from gateway.sandbox.directory import SAMPLE_PUBLIC_STRUCTURES

    items = (("Maintenance informatique - forfait mensuel", "C62", "450.00"),
             ("Ramettes papier A4 80 g", "C62", "3.95"),
             ("Prestation de conseil (jour)", "DAY", "650.00"),
             ("Carburant gazole", "LTR", "1.749"))
    buyer = SAMPLE_PUBLIC_STRUCTURES[0]
    header = {
        "invoice_number": "BIG-1", "issue_date": "2026-11-02", "type_code": "380", "currency": "EUR",
        "due_date": "2026-12-02", "cadre": "A1", "supplier_siret": SUPPLIER_SIRET,
        "supplier_name": "Fournitures Exemplaires SAS", "supplier_vat": SUPPLIER_VAT,
        "supplier_street": "12 rue de l'Exemple", "supplier_city": "Lyon", "supplier_postcode": "69002",
        "supplier_country": "FR", "buyer_siret": buyer.siret, "buyer_name": buyer.name, "buyer_country": "FR",
        "payment_means": "30", "iban": SUPPLIER_IBAN,
    }
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";", lineterminator="\n")
        writer.writerow(COLUMNS)
        for position in range(1, lines + 1):
            name, unit, price = items[position % len(items)]
            row = {**header, "line_id": str(position), "item_name": name, "quantity": str(position % 40 + 1),
                   "unit_code": unit, "unit_price": price, "vat_category": "S", "vat_rate": "20"}
            writer.writerow([row.get(column, "") for column in COLUMNS])


def _pass_in_this_process(lines: int, keep: Path | None) -> dict:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    from gateway.clock import SystemClock
    from gateway.config import ensure_layout
    from gateway.demo import demo_config
    from gateway.pipeline import PassSummary, Pipeline
    from gateway.store import Store

    with tempfile.TemporaryDirectory(prefix="bench-big-invoice-pass-") as tmp:
        config = demo_config(Path(tmp))
        # EN 16931's Schematron takes some 30 s over 100,000 lines: the default budget is per invoice.
        config = dataclasses.replace(config, validation=dataclasses.replace(config.validation,
                                                                            time_budget_seconds=1800.0))
        ensure_layout(config)
        _write_export(config.channels[0].watch_dir / "big.csv", lines)
        store = Store.open(config.database_url)
        pipeline = Pipeline(config=config, store=store, clock=SystemClock())
        partner = config.partners["sandbox"]
        summary = PassSummary()
        steps = {
            "probe": pipeline.gate.begin_pass,
            "intake": lambda: pipeline.intake_channel(config.channels[0], summary),
            "pack": lambda: pipeline.pack(partner, summary),
            "send": lambda: pipeline.send(partner, summary),
            "sandbox": pipeline.run_sandbox,
            "reports": lambda: (pipeline.collect_reports(partner, summary), pipeline.reconcile_pending(summary)),
        }
        seconds = {}
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            seconds[name] = time.perf_counter() - start
        with store.transaction() as tx:
            [invoice] = tx.list_invoices()
            outcome, payload = invoice.status, invoice.payload or b""
        if keep is not None and payload:
            keep.write_bytes(payload)
        pipeline.close()  # the worker is waited for: its peak is in RUSAGE_CHILDREN
        store.close()
        return {
            "lines": lines,
            "outcome": outcome,
            "ubl_mib": len(payload) / 2**20,
            "seconds": seconds,
            "peak_mib": _peak_mib(),
            "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        }


def _baseline_in_this_process(document: Path) -> dict:
    from lxml import etree
    from saxonche import PySaxonProcessor

    from gateway.validation.rulesets import RuleRegistry
    from gateway.validation.xsd import schema_files

    payload = document.read_bytes()
    start = time.perf_counter()
    tree = etree.fromstring(payload, etree.XMLParser(huge_tree=True)).getroottree()
    schema = etree.XMLSchema(etree.parse(str(schema_files()[tree.getroot().tag])))
    valid = schema.validate(tree)
    processor = PySaxonProcessor(license=False)
    executable = processor.new_xslt30_processor().compile_stylesheet(
        stylesheet_file=str(RuleRegistry.default().lookup("en16931", "ubl").path))
    node = processor.parse_xml(xml_text=payload.decode("utf-8"))
    report = executable.transform_to_string(xdm_node=node)
    return {"seconds": time.perf_counter() - start, "peak_mib": _peak_mib(), "valid": valid,
            "report_mib": len(report) / 2**20}


if __name__ == "__main__":
    main()
