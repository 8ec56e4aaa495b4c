"""Validation layers (issue 4): per-layer time on the corpus against raw lxml + saxonche, and on big invoices.

    .venv/bin/python benchmarks/bench_validation.py [--repeat 5] [--lines 1000 4000 10000] [--quick]

1. Corpus (../shared/corpus, examples passing XSD + EN 16931; CII skipped without its examples or CEN rule set):
   per document, medians after a warm-up of each layer and of the gateway's ``schema_layers`` (in process and via
   ``ValidationWorker``) against the same steps written with lxml + saxonche, interleaved; target ratio <= 1.15.
2. One generated invoice per size (lines copied from a sample export), UBL and CII, each size and profile in a
   fresh process: every layer, full and CPU time, lines/s, growth, peak RSS; with EN 16931 the Schematron step by
   step and the worker's cost. Targets: EN 16931 4,000 lines <= 2 s, t(10,000) <= 3 t(4,000); fr 4,000 <= 10 s.
3. A rule set growing > 15 % faster than the invoice: copies of its XSLT (temp dir) timed on the smallest and
   largest invoices, one pattern at a time, then halves of the worst patterns' asserts; the asserts found are
   confirmed by timing the whole rule set without them.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Collection
from pathlib import Path

import structlog

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
CII_RULES = CORPUS / "schematron" / "en16931" / "cii" / "xslt"
TARGET_RATIO, TARGET_4K_S, TARGET_GROWTH, TARGET_FR_4K_S = 1.15, 2.0, 3.0, 10.0
XSL, SVRL = "{http://www.w3.org/1999/XSL/Transform}", "{http://purl.oclc.org/dsdl/svrl}"
LAYERS = ("parse", "xsd", "en16931", "br-fr", "chorus")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs after the warm-up (medians reported)")
    parser.add_argument("--lines", type=int, nargs="+", default=[1000, 4000, 10000])
    parser.add_argument("--quick", action="store_true", help="1 run, 1000 and 4000 lines, fewer examples, no CII "
                        "invoice, no diagnosis")
    parser.add_argument("--no-diagnose", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile", default="en16931", help=argparse.SUPPRESS)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    if args.child:
        print(json.dumps(_validate_in_this_process(args.child, args.profile, args.repeat)))
        return
    sys.stdout.reconfigure(line_buffering=True)
    repeat, sizes = (1, [1000, 4000]) if args.quick else (args.repeat, sorted(set(args.lines)))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {repeat} timed runs after a warm-up")
    summary = _corpus(repeat, per_collection=3 if args.quick else None)
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as tmp:
        docs = _generate(sizes, Path(tmp), cii=not args.quick)
        results = {key: _run_child(path, key[0], repeat) for key, path in docs.items()}
        summary += _big(results, sizes)
        if not (args.quick or args.no_diagnose):
            summary += _diagnose_superlinear(results, docs, sizes, repeat)
    print(f"\nsummary (load average {os.getloadavg()[0]:.1f})")
    for line in summary:
        print("  " + line)


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def _registry():
    from gateway.validation.rulesets import RuleRegistry, scan_directory

    return RuleRegistry.default(scan_directory(CII_RULES) if CII_RULES.is_dir() else [])


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# -- 1. corpus ------------------------------------------------------------------------------------------------

def _corpus(repeat: int, per_collection: int | None) -> list[str]:
    from lxml import etree
    from saxonche import PySaxonProcessor

    from gateway.xml.saxon import check_stylesheet
    from gateway.validation.findings import Severity
    from gateway.validation.invoice import schema_layers
    from gateway.validation.worker import ValidationWorker
    from gateway.validation.xsd import schema_files

    registry = _registry()
    kinds = ["ubl"] + (["cii"] if (CORPUS / "examples" / "cii").is_dir() and CII_RULES.is_dir() else [])
    paths = [p for kind in kinds for p in sorted((CORPUS / "examples" / kind).rglob("*.xml"))]
    if per_collection:  # --quick: the first few of each directory
        paths = [p for p in paths if sorted(p.parent.glob("*.xml")).index(p) < per_collection]
    if not paths:
        return ["corpus: no example under ../shared/corpus/examples: section skipped"]
    print(f"\n1. corpus examples ({', '.join(kinds)}): median of {repeat} runs per document, then mean over documents")
    raw = {"proc": PySaxonProcessor(license=False)}
    compile_s = {}
    for tag, xsd in schema_files().items():
        compile_s[f"{xsd.name} (lxml)"], raw[tag] = _timed(etree.XMLSchema, etree.parse(str(xsd)))
    for syntax in kinds:
        path = registry.lookup("en16931", syntax).path
        compile_s[f"{path.name} (raw)"], raw[syntax] = _timed(
            raw["proc"].new_xslt30_processor().compile_stylesheet, stylesheet_file=str(path))
        compile_s[f"{path.name} (gateway)"], _ = _timed(check_stylesheet, path)
    worker = ValidationWorker(registry.all(), time_budget=600)
    compile_s["worker start + its compiling"], _ = _timed(worker.schema_layers, paths[0].read_bytes(), "en16931")
    print("  compiling, excluded below (s): " + "; ".join(f"{k} {v:.2f}" for k, v in compile_s.items()))
    rows, skipped = [], Counter()
    for path in paths:
        payload, collection = path.read_bytes(), path.parent.relative_to(CORPUS / "examples").as_posix()
        warm = schema_layers(payload, profile="en16931", registry=registry)
        if warm.syntax is None or any(f.severity is Severity.FATAL for f in warm.findings):
            skipped[collection] += 1
            continue
        runs = [_corpus_run(payload, warm.syntax, registry, raw, worker) for _ in range(repeat + 1)][1:]
        rows.append((collection, len(payload), {k: statistics.median(r[k] for r in runs) for k in runs[0]}))
    worker.close()
    if skipped:
        print("  left out (not XSD + EN 16931 valid): " + ", ".join(f"{k} {n}" for k, n in sorted(skipped.items())))
    cols = ("parse", "xsd", "en16931", "chorus", "gateway", "raw", "worker")
    print(f"  {'collection':<26} {'docs':>4} {'KB':>4} " + " ".join(f"{c:>7}" for c in cols) + "  gw/raw wk/raw")
    for group in [*sorted({r[0] for r in rows}), "all"]:
        members = [r for r in rows if group in ("all", r[0])]
        mean = {c: 1000 * statistics.fmean(r[2][c] for r in members) for c in cols}
        print(f"  {group:<26} {len(members):>4} {statistics.fmean(r[1] for r in members) / 1024:>4.0f} "
              + " ".join(f"{mean[c]:>7.2f}" for c in cols)
              + f"  {mean['gateway'] / mean['raw']:>6.3f} {mean['worker'] / mean['raw']:>6.3f}")
    mean = {k: 1000 * statistics.fmean(r[2][k] for r in rows) for k in rows[0][2]}
    ratio, worker_ratio = mean["gateway"] / mean["raw"], mean["worker"] / mean["raw"]
    print(f"  gateway/raw {ratio:.3f} (median of the per-document ratios "
          f"{statistics.median(r[2]['gateway'] / r[2]['raw'] for r in rows):.3f}; in CPU time "
          f"{mean['gateway cpu'] / mean['raw cpu']:.3f}); through the worker {worker_ratio:.3f}")
    print(f"  raw {mean['raw']:.2f} = lxml parse + XSD {mean['raw xsd']:.2f} + Saxon parse {mean['raw parse']:.2f} + "
          f"transform {mean['raw transform']:.2f} ms. Gateway {mean['gateway'] - mean['raw']:+.2f} ms/doc; its steps "
          f"besides those (timed alone): describe_schema {mean['describe_schema']:.2f}, SVRL parse by lxml "
          f"{mean['svrl parse']:.2f}, registry.for_profile {mean['for_profile']:.3f}, payload.decode "
          f"{mean['decode']:.3f} ms")
    print(f"  worker {mean['worker'] - mean['gateway']:+.2f} ms/doc over in-process (pickling request and reply "
          f"{mean['pickle']:.3f} ms; the rest: the pipe round trip and two process switches)")
    count = Counter(r[0].split("/")[0] for r in rows)
    return [f"corpus ({count['ubl']} UBL + {count['cii']} CII valid examples): gateway XSD + EN 16931 "
            f"{mean['gateway']:.2f} ms/doc vs raw lxml + saxonche {mean['raw']:.2f}: ratio {ratio:.3f} "
            f"(target <= {TARGET_RATIO}): {_verdict(ratio <= TARGET_RATIO)}",
            f"corpus through ValidationWorker: {mean['worker']:.2f} ms/doc, ratio {worker_ratio:.3f} (no target)"]


def _corpus_run(payload: bytes, syntax: str, registry, raw: dict, worker) -> dict[str, float]:
    """One document once: each layer alone, the gateway's schema layers, the raw steps, the worker."""
    from lxml import etree

    from gateway.validation.chorus import check_chorus_rules
    from gateway.validation.invoice import parse_invoice, schema_layers
    from gateway.validation.schematron import run_rule_set
    from gateway.validation.xsd import check_xsd, describe_schema

    t: dict[str, float] = {}
    t["parse"], doc = _timed(parse_invoice, payload)
    t["xsd"], _ = _timed(check_xsd, doc)
    t["en16931"], _ = _timed(run_rule_set, payload, registry.lookup("en16931", syntax))
    t["chorus"], _ = _timed(check_chorus_rules, doc)
    cpu = time.process_time()
    t["gateway"], reply = _timed(schema_layers, payload, profile="en16931", registry=registry)
    cpu, t["gateway cpu"] = time.process_time(), time.process_time() - cpu
    t["raw xsd"], _ = _timed(lambda: raw[doc.getroot().tag].validate(etree.fromstring(payload)))
    t["raw parse"], node = _timed(raw["proc"].parse_xml, xml_text=payload.decode("utf-8"))
    t["raw transform"], report = _timed(raw[syntax].transform_to_string, xdm_node=node)
    t["raw"], t["raw cpu"] = t["raw xsd"] + t["raw parse"] + t["raw transform"], time.process_time() - cpu
    t["worker"], _ = _timed(worker.schema_layers, payload, "en16931")
    t["svrl parse"], _ = _timed(lambda: list(etree.fromstring(report.encode()).iter(f"{SVRL}failed-assert")))
    t["for_profile"], _ = _timed(registry.for_profile, "en16931", syntax)
    t["describe_schema"], _ = _timed(describe_schema, doc.getroot().tag)
    t["pickle"], _ = _timed(lambda: [pickle.loads(pickle.dumps(m, protocol=5)) for m in ((payload, "x"), reply)])
    t["decode"], _ = _timed(payload.decode, "utf-8")
    return t


# -- 2. generated invoices ------------------------------------------------------------------------------------

def _generate(sizes: list[int], tmp: Path, cii: bool) -> dict[tuple[str, str, int], Path]:
    """One invoice per size: the header of a sample invoice, lines copied from a sample export (distinct ids)."""
    from gateway.domain import Syntax
    from gateway.intake.readers import read_export
    from gateway.invoice import ExportedInvoice
    from gateway.intake.sample import write_sample_export
    from gateway.mapping import map_invoice

    write_sample_export(tmp / "sample.csv", 40, with_errors=False)
    invoices = [i for i in read_export(tmp / "sample.csv", "csv") if isinstance(i, ExportedInvoice)]
    pool = [line for invoice in invoices for line in invoice.lines]
    docs = {}
    for n in sizes:
        lines = tuple(dataclasses.replace(pool[i % len(pool)], line_id=str(i + 1), source_line=i + 2) for i in range(n))
        invoice = dataclasses.replace(invoices[0], lines=lines)
        for profile, syntax in (("en16931", Syntax.UBL), ("fr", Syntax.UBL), ("en16931", Syntax.CII)):
            if syntax is Syntax.CII and not (cii and CII_RULES.is_dir()):
                continue
            path = tmp / f"{syntax.value}-{n}.xml"
            if not path.exists():
                path.write_bytes(map_invoice(invoice, syntax))
            docs[(profile, syntax.value, n)] = path
    return docs


def _run_child(path: Path, profile: str, repeat: int) -> dict:
    command = [sys.executable, __file__, "--child", str(path), "--profile", profile, "--repeat", str(repeat)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"validating {path.name} with {profile} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def _validate_in_this_process(path: Path, profile: str, repeat: int) -> dict:
    from lxml import etree

    from gateway.xml import saxon
    from gateway.validation.chorus import check_chorus_rules
    from gateway.validation.invoice import parse_invoice, schema_layers, validate_document
    from gateway.validation.schematron import run_rule_set, syntax_of
    from gateway.validation.worker import ValidationWorker
    from gateway.validation.xsd import check_xsd

    registry, start_mib, payload = _registry(), _status_mib("VmRSS"), path.read_bytes()
    first, _ = _timed(validate_document, payload, profile=profile, registry=registry)
    rule_sets = registry.for_profile(profile, syntax_of(parse_invoice(payload).getroot().tag))
    runs = []
    for _ in range(repeat):
        t, cpu = {}, time.process_time()
        t["parse"], doc = _timed(parse_invoice, payload)
        t["xsd"], found = _timed(check_xsd, doc)
        for rule_set in rule_sets:
            t[rule_set.layer], more = _timed(run_rule_set, payload, rule_set)
            found += more
        t["chorus"], more = _timed(check_chorus_rules, doc)  # also after fatal BR-FR findings
        t["full"], t["cpu"] = sum(t.values()), time.process_time() - cpu
        runs.append(t)
    result = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    result.update(first_s=first, start_mib=start_mib, peak_mib=_status_mib("VmHWM"), bytes=len(payload),
                  findings=dict(Counter(f"{f.layer} {f.severity.value}" for f in found + more)),
                  fatal_ids=sorted({f.rule_id for f in found + more if f.severity.value == "fatal"}))
    if profile != "en16931":
        return result
    result["validate_document"], _ = _timed(validate_document, payload, profile=profile, registry=registry)
    # Interleaved, so that the machine's load weighs alike on each: the schema layers in process and through the
    # worker, and the EN 16931 Schematron step by step on the gateway's own Saxon processor and compiled XSLT.
    executable, split = saxon.compile_stylesheet(rule_sets[0].path), []
    with ValidationWorker(registry.all(), time_budget=600) as worker:
        worker.schema_layers(payload, profile)
        for _ in range(repeat):
            t = {"in_process": _timed(schema_layers, payload, profile=profile, registry=registry)[0]}
            t["worker"], reply = _timed(worker.schema_layers, payload, profile)
            with saxon.exclusive() as proc:
                t["saxon_parse"], node = _timed(proc.parse_xml, xml_text=payload.decode("utf-8"))
                t["transform"], report = _timed(executable.transform_to_string, xdm_node=node)
            t["svrl_parse"], _ = _timed(etree.fromstring, report.encode("utf-8"))
            t["pickle"], _ = _timed(lambda r: [pickle.loads(pickle.dumps(m, protocol=5)) for m in r],
                                    ((payload, profile), reply))
            split.append(t)
        (pid,) = Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()  # the worker
        result.update(svrl_mib=len(report) / 2**20, worker_peak_mib=_status_mib("VmHWM", pid))
    result.update({k: statistics.median(t[k] for t in split) for k in split[0]})
    return result


def _status_mib(field: str, pid: int | str = "self") -> float:
    """VmRSS or VmHWM (peak) of a process: unlike ru_maxrss, not inherited from the parent through fork and exec."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def _big(results: dict[tuple[str, str, int], dict], sizes: list[int]) -> list[str]:
    print("\n2. generated invoices, one fresh process per size and profile: median of the runs, seconds")
    print(f"  {'profile':<8} {'syntax':<6} {'lines':>6} {'MiB':>5} " + " ".join(f"{c:>7}" for c in LAYERS)
          + f" {'full':>6} {'cpu':>6} {'lines/s':>7} {'val_doc':>7} {'1st':>5} {'peakMiB':>7}  findings")
    for (profile, syntax, n), r in results.items():
        print(f"  {profile:<8} {syntax:<6} {n:>6} {r['bytes'] / 2**20:>5.1f} "
              + " ".join(f"{r[c]:>7.3f}" if c in r else f"{'-':>7}" for c in LAYERS)
              + f" {r['full']:>6.2f} {r['cpu']:>6.2f} {n / r['full']:>7.0f} "
              f"{r.get('validate_document', math.nan):>7.2f} {r['first_s']:>5.1f} {r['peak_mib']:>7.0f}  "
              f"{r['findings']}")
    print("  full = parse + XSD + rule sets + Chorus rules (run even when BR-FR is fatal; validate_document skips them "
          "then); cpu: CPU time\n  of full (less sensitive to the machine's load); val_doc: validate_document once; "
          "1st: its first run, compiling included; peakMiB: VmHWM")
    print("\n  growth (linear: the ratio of the line counts)")
    growth: dict[tuple[str, str], list[str]] = {}
    for profile, syntax in dict.fromkeys((p, s) for p, s, _ in results):
        for small, large in zip(sizes, sizes[1:], strict=False):
            a, b = results[(profile, syntax, small)], results[(profile, syntax, large)]
            print(f"  {profile:<8} {syntax:<4} t({large})/t({small}): " + ", ".join(
                f"{c} {b[c] / a[c]:.2f}" for c in (*LAYERS, "full") if c in a) + f"  (linear {large / small:.2f})")
            growth.setdefault((profile, syntax), []).append(f"t({large})/t({small}) = {b['full'] / a['full']:.2f} "
                                                            f"(linear {large / small:.2f})")
    print("\n  EN 16931 step by step on the gateway's processor, and through the worker (s, median, interleaved)")
    print(f"  {'syntax':<6} {'lines':>6} {'saxon parse':>11} {'transform':>9} {'SVRL MiB':>8} {'SVRL parse':>10} "
          f"{'in-proc':>8} {'worker':>7} {'overhead':>8} {'pickle':>7} {'worker peak MiB':>15}")
    for (profile, syntax, n), r in results.items():
        if profile == "en16931":
            print(f"  {syntax:<6} {n:>6} {r['saxon_parse']:>11.3f} {r['transform']:>9.3f} {r['svrl_mib']:>8.1f} "
                  f"{r['svrl_parse']:>10.3f} {r['in_process']:>8.3f} {r['worker']:>7.3f} "
                  f"{r['worker'] - r['in_process']:>8.3f} {r['pickle']:>7.3f} {r['worker_peak_mib']:>15.0f}")
    summary, ubl = [], {p: {n: results[(p, "ubl", n)] for n in sizes} for p in ("en16931", "fr")}
    if 4000 in sizes:
        en, fr = ubl["en16931"][4000], ubl["fr"][4000]
        summary.append(f"EN 16931 UBL 4,000 lines fully validated in {en['full']:.2f} s (CPU {en['cpu']:.2f} s; "
                       f"target <= {TARGET_4K_S} s): {_verdict(en['full'] <= TARGET_4K_S)}")
        if 10000 in sizes:
            g = ubl["en16931"][10000]["full"] / en["full"]
            summary.append(f"EN 16931 UBL t(10,000)/t(4,000) = {g:.2f} (target <= {TARGET_GROWTH}; linear 2.5): "
                           f"{_verdict(g <= TARGET_GROWTH)}")
        summary.append(f"fr UBL 4,000 lines fully validated in {fr['full']:.2f} s (CPU {fr['cpu']:.2f} s; target <= "
                       f"{TARGET_FR_4K_S} s): {_verdict(fr['full'] <= TARGET_FR_4K_S)}; findings {fr['findings']}: "
                       + " ".join(fr["fatal_ids"]))
        if ("en16931", "cii", 4000) in results:
            summary.append(f"EN 16931 CII 4,000 lines: {results[('en16931', 'cii', 4000)]['full']:.2f} s (no target)")
    summary += [f"growth {p} {s}: {'; '.join(g)}" for (p, s), g in growth.items()]
    for p, by_size in ubl.items():
        r = by_size[sizes[-1]]
        worker = f"; worker {r['worker_peak_mib']:.0f} MiB" if p == "en16931" else ""
        summary.append(f"peak RSS validating {sizes[-1]:,} lines UBL ({p}): {r['peak_mib']:.0f} MiB (after imports "
                       f"{r['start_mib']:.0f}){worker}")
    return summary


# -- 3. which rule grows faster than the invoice --------------------------------------------------------------

def _diagnose_superlinear(results: dict, docs: dict, sizes: list[int], repeat: int) -> list[str]:
    from gateway.validation.rulesets import TITLES

    registry, small, large, summary = _registry(), sizes[0], sizes[-1], []
    for (profile, syntax, n), r in results.items():
        for rule_set in registry.for_profile(profile, syntax) if n == large > small else ():
            growth = r[rule_set.layer] / results[(profile, syntax, small)][rule_set.layer]
            if (profile != "en16931" and rule_set.layer == "en16931") or growth <= 1.15 * large / small:
                continue  # EN 16931 is looked at with its own profile
            print(f"\n3. {TITLES[rule_set.layer]} {syntax.upper()} grows {growth:.1f}x for {large / small:.0f}x "
                  f"lines: copies of {rule_set.path.name}, best of {min(repeat, 3)} runs, s at {small} / {large} lines")
            summary += _diagnose(rule_set.path, docs[(profile, syntax, small)], docs[(profile, syntax, large)],
                                 large / small, min(repeat, 3))
    return summary or ["no rule set grows more than 15 % faster than the invoice"]


class _Variants:
    """Copies of a compiled Schematron, some patterns or asserts left out, timed on a small and a large invoice."""

    def __init__(self, xslt: Path, docs: tuple[Path, Path], repeat: int, tmp: Path) -> None:
        from lxml import etree
        from saxonche import PySaxonProcessor

        self.tree, self.repeat, self.path = etree.parse(str(xslt)), repeat, tmp / xslt.name
        self.proc = PySaxonProcessor(license=False)
        self.nodes = [self.proc.parse_xml(xml_text=d.read_text("utf-8")) for d in docs]
        root = next(t for t in self.tree.iter(f"{XSL}template") if t.get("match") == "/" and not t.get("mode"))
        self.modes = [a.get("mode") for a in root.iter(f"{XSL}apply-templates") if a.get("mode")]
        self.asserts = self._asserts(self.tree)

    @staticmethod
    def _asserts(tree) -> list:
        return [c for t in tree.iter(f"{XSL}template") if t.find(f"{SVRL}fired-rule") is not None
                for c in t if c.tag in (f"{XSL}choose", f"{XSL}if")]

    def time(self, modes: list[str] | None = None, walks: bool = True, strip: Collection[int] = ()) -> list[float]:
        """Only the patterns ``modes`` (None: all), with or without the default-mode walks, without the asserts
        numbered ``strip``: the best time on each invoice (the load of other processes only ever adds)."""
        tree = copy.deepcopy(self.tree)
        for index, element in enumerate(self._asserts(tree)):
            if index in strip:
                element.getparent().remove(element)
        for template in list(tree.iter(f"{XSL}template")):
            mode = template.get("mode")
            if modes is not None and mode in self.modes and mode not in modes:
                template.getparent().remove(template)
            for apply in list(template.iter(f"{XSL}apply-templates")) if template.get("match") == "/" else ():
                if mode is None and ((modes is not None and apply.get("mode") not in (None, *modes))
                                     or (not walks and not apply.get("mode"))):
                    apply.getparent().remove(apply)
        tree.write(str(self.path))
        executable = self.proc.new_xslt30_processor().compile_stylesheet(stylesheet_file=str(self.path))
        executable.transform_to_string(xdm_node=self.nodes[0])  # warm-up
        return [min(_timed(executable.transform_to_string, xdm_node=node)[0] for _ in range(self.repeat))
                for node in self.nodes]


def _bisect(items: list[int], excess, threshold: float, budget: list[int]) -> list[int]:
    """The items whose (additive) excess time is above ``threshold``, by halving, in at most ``budget`` timings."""
    if len(items) == 1:
        return items
    found = []
    for half in (items[: len(items) // 2], items[len(items) // 2:]):
        budget[0] -= 1
        if half and budget[0] >= 0 and excess(half) >= threshold:
            found += _bisect(half, excess, threshold, budget)
    return found


def _diagnose(xslt: Path, small_doc: Path, large_doc: Path, k: float, repeat: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="bench-validation-xslt-") as tmp:
        v = _Variants(xslt, (small_doc, large_doc), repeat, Path(tmp))
        full, none, walks = v.time(), v.time(modes=[], walks=False), v.time(modes=[])
        print(f"  whole rule set {full[0]:.3f} / {full[1]:.3f}; its {len(v.modes)} default-mode <xsl:apply-templates/>"
              f" in svrl:active-pattern (each walks the whole document, outputs nothing) {walks[0] - none[0]:.3f} / "
              f"{walks[1] - none[1]:.3f}")
        costs = []
        for mode in v.modes:
            t = v.time(modes=[mode], walks=False)
            costs.append((t[1] - none[1] - k * (t[0] - none[0]), mode, t[0] - none[0], t[1] - none[1]))
        costs.sort(reverse=True)
        print(f"  pattern alone: {'small':>7} {'large':>7} {'growth':>6} {'excess over linear':>18}")
        for excess, mode, a, b in costs[:5]:
            print(f"  {mode:<13} {a:>7.3f} {b:>7.3f} {b / max(a, 1e-3):>6.0f} {excess:>18.3f}")
        culprits: list[int] = []
        for excess, mode, a, b in costs[:4]:
            if excess < max(0.2, costs[0][0] / 4) or b < 1.3 * k * a:
                break
            own = {i for i, element in enumerate(v.asserts) if element.getparent().get("mode") == mode}
            bare = v.time(modes=[mode], walks=False, strip=own)

            def excess_of(keep: list[int], mode=mode, own=own, bare=bare) -> float:
                t = v.time(modes=[mode], walks=False, strip=own - set(keep))
                return t[1] - bare[1] - k * (t[0] - bare[0])

            culprits += _bisect(sorted(own), excess_of, max(0.15, excess / 8), [30])
        ids = [_explain(v, index) for index in culprits]
        lines = [f"{xslt.name}: its {len(v.modes)} default-mode walks take {walks[1] - none[1]:.2f} s of "
                 f"{full[1]:.2f} s at the largest size"]
        if culprits:
            fixed, fast = v.time(strip=set(culprits)), v.time(walks=False, strip=set(culprits))
            print(f"  confirmed: without those asserts {fixed[0]:.3f} / {fixed[1]:.3f} (growth "
                  f"{fixed[1] / fixed[0]:.1f} instead of {full[1] / full[0]:.1f}, linear {k:.0f}); without the walks "
                  f"too {fast[0]:.3f} / {fast[1]:.3f}")
            lines.insert(0, f"{xslt.name}: superlinear through {', '.join(ids)}; the whole rule set at the largest "
                         f"size {full[1]:.2f} s, {fixed[1]:.2f} s without them, {fast[1]:.2f} s without the walks too")
        return lines


def _explain(v: _Variants, index: int) -> str:
    """Print one culprit assert with the variables and functions its test uses; return its rule id."""
    choose = v.asserts[index]
    rule, test = choose.getparent(), " ".join(choose[0].get("test", "").split())
    rule_id = next((a.text for a in choose.iter(f"{XSL}attribute") if a.get("name") == "id"), "?")
    print(f"  culprit {rule.get('mode')} {rule_id}: context {rule.get('match')}\n    test {test}")
    for var in rule.findall(f"{XSL}variable"):
        if f"${var.get('name')}" in test:
            print(f"    ${var.get('name')} = {' '.join((var.get('select') or '').split())}")
    for function in v.tree.getroot().findall(f"{XSL}function"):
        if function.get("name") + "(" in test and function.find(f"{XSL}sequence") is not None:
            print(f"    {function.get('name')}() = {' '.join(function.find(f'{XSL}sequence').get('select').split())}")
    return rule_id


if __name__ == "__main__":
    main()
