"""``gateway demo``: the whole path once, on embedded defaults, in a fresh directory."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway.clock import SystemClock
from gateway.config import Config, default_config, ensure_layout
from gateway.domain import InvoiceStatus
from gateway.errors import ConfigError
from gateway.intake.sample import write_sample_export
from gateway.pipeline import PassSummary, Pipeline
from gateway.store import Store
from gateway.store.lock import hold_store


@dataclass(frozen=True)
class InvoiceLine:
    number: str | None
    line: int
    status: str
    reason: str | None


@dataclass(frozen=True)
class FlowLine:
    flow_id: str
    file_name: str
    status: str
    invoices: int
    integrated: int
    rejected: int


@dataclass(frozen=True)
class DemoResult:
    data_dir: Path
    export: Path
    summary: PassSummary
    files: dict[str, int]
    invoices: dict[str, int]
    flows: list[FlowLine]
    problems: list[InvoiceLine]


def demo_config(directory: Path) -> Config:
    """Embedded defaults under ``directory``; files are taken as soon as they appear,
    because the demo writes its export completely before the pass starts."""
    config = default_config(directory)
    channels = tuple(dataclasses.replace(c, settle_seconds=0.0) for c in config.channels)
    return dataclasses.replace(config, channels=channels)


def run_demo(directory: Path, *, invoices: int = 20) -> DemoResult:
    if directory.exists() and any(directory.iterdir()):
        raise ConfigError(f"{directory} is not empty; the demo needs a new or empty directory")
    config = demo_config(directory)
    ensure_layout(config)
    with hold_store(config.database_url):
        store = Store.open(config.database_url)
        try:
            export = config.channels[0].watch_dir / "erp-export-demo.csv"
            write_sample_export(export, invoices)
            pipeline = Pipeline(config=config, store=store, clock=SystemClock())
            try:
                summary = pipeline.run_pass()
            finally:
                pipeline.close()
            return _collect(config, store, export, summary)
        finally:
            store.close()


def _collect(config: Config, store: Store, export: Path, summary: PassSummary) -> DemoResult:
    with store.transaction() as tx:
        by_status = tx.count_invoices_by_status()
        all_invoices = tx.list_invoices()
        flows = [
            FlowLine(f.flow_id, f.file_name, f.status, f.invoice_count, f.integrated_count, f.rejected_count)
            for f in tx.list_flows()
        ]
        sources = tx.source_files()
    sent_like = (InvoiceStatus.SENT, InvoiceStatus.INTEGRATED, InvoiceStatus.REJECTED)
    invoices = {
        "received": len(all_invoices),
        "valid": len(all_invoices) - by_status.get(InvoiceStatus.QUARANTINED.value, 0),
        "quarantined": by_status.get(InvoiceStatus.QUARANTINED.value, 0),
        "sent": sum(by_status.get(s.value, 0) for s in sent_like),
        "integrated": by_status.get(InvoiceStatus.INTEGRATED.value, 0),
        "rejected": by_status.get(InvoiceStatus.REJECTED.value, 0),
    }
    files = {"received": len(sources)}
    for source in sources:
        files[source.status] = files.get(source.status, 0) + 1
    problems = [
        InvoiceLine(i.invoice_number, i.source_line, i.status, i.reason)
        for i in all_invoices
        if i.status in (InvoiceStatus.QUARANTINED.value, InvoiceStatus.REJECTED.value)
    ]
    return DemoResult(config.data_dir, export, summary, files, invoices, flows, problems)


def demo_dict(result: DemoResult) -> dict[str, object]:
    """What ``render_demo`` prints, for ``gateway demo --json``."""
    return {
        "data_dir": str(result.data_dir),
        "export": str(result.export),
        "files": result.files,
        "invoices": result.invoices,
        "flows": [dataclasses.asdict(flow) for flow in result.flows],
        "problems": [dataclasses.asdict(problem) for problem in result.problems],
    }


def render_demo(result: DemoResult, console: Console) -> None:
    """Print the tables a new user reads to see what happened."""
    console.print(f"[bold]chorus-gateway demo[/bold] in {result.data_dir}")
    console.print(f"sample ERP export: {result.export.name}; Chorus Pro = the built-in sandbox\n")

    counts = Table(title="Files and invoices")
    counts.add_column("what")
    counts.add_column("count", justify="right")
    for key, value in result.files.items():
        counts.add_row(f"files {key}", str(value))
    for key, value in result.invoices.items():
        counts.add_row(f"invoices {key}", str(value))
    console.print(counts)

    flows = Table(title="Flows")
    flows.add_column("flow", overflow="fold")
    flows.add_column("outcome")
    for column in ("invoices", "integrated", "rejected"):
        flows.add_column(column, justify="right")
    for flow in result.flows:
        flows.add_row(flow.flow_id, flow.status, str(flow.invoices), str(flow.integrated), str(flow.rejected))
    console.print(flows)

    problems = Table(title="Invoices held back or rejected, and why")
    for column in ("invoice", "line", "status", "reason"):
        problems.add_column(column, overflow="fold")
    for problem in result.problems:
        # Text, not markup: reasons carry rule ids in brackets ("[chorus CHORUS-SIRET-…]").
        problems.add_row(Text(problem.number or "?"), str(problem.line), problem.status, Text(problem.reason or ""))
    console.print(problems)
    console.print(
        f"\nInspect: gateway --data-dir {result.data_dir} invoices list   "
        f"(quarantined files and their .reason in {result.data_dir / 'quarantine'})"
    )
