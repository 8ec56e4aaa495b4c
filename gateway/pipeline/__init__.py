"""One pass of the gateway: the only place where the pure stages meet the store,
the filesystem and the transports.

Order of a pass: settle interrupted attempts → intake → pack → send → (sandbox) →
pick up and reconcile reports. Each step writes its rows before the side effect they
allow, so a crash at any point resumes without loss or double sending.
"""

from __future__ import annotations

import hashlib

import structlog

from gateway.clock import Clock
from gateway.config import Config, Partner
from gateway.errors import TransportError
from gateway.pipeline.intake import FileFailures, IntakeSteps
from gateway.pipeline.outbox import OutboxSteps, ReportLedger, retry_delay
from gateway.pipeline.summary import PassSummary
from gateway.reports.reconcile import reconcile_report
from gateway.store import Store
from gateway.transport import Transport, open_transport
from gateway.validation_gate import ValidationGate

log = structlog.get_logger(__name__)


class Pipeline(IntakeSteps, OutboxSteps, ReportLedger):
    """The gateway's stages wired to one configuration, store and clock."""

    def __init__(self, *, config: Config, store: Store, clock: Clock) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self._transports: dict[str, Transport] = {}
        self.gate = ValidationGate(config, store)
        self.file_failures = FileFailures()

    def close(self) -> None:
        """Stop the validation worker and release the partners' connections."""
        self.gate.close()
        self.close_transports()

    def close_transports(self) -> None:
        """End of a pass: a connection kept between passes would go stale."""
        for name, transport in list(self._transports.items()):
            try:
                transport.close()
            except TransportError as exc:
                log.warning("transport.close_failed", partner=name, error=exc.message)
        self._transports.clear()

    def transport(self, partner: Partner) -> Transport:
        if partner.name not in self._transports:
            self._transports[partner.name] = open_transport(partner)
        return self._transports[partner.name]

    def run_pass(self) -> PassSummary:
        summary = PassSummary()
        self.settle_interrupted_attempts()
        self.gate.begin_pass()
        for channel in self.config.channels:
            if channel.name not in self.gate.unhealthy:
                self.revalidate(channel, summary)
            # A channel whose validator broke during revalidation takes in nothing either:
            # its files wait in the watched directory, nothing is lost.
            if channel.name not in self.gate.unhealthy:
                self.intake_channel(channel, summary)
        for partner in self.config.partners.values():
            self.pack(partner, summary)
            self.send(partner, summary)
        if self.config.sandbox.enabled:
            self.run_sandbox()
        for partner in self.config.partners.values():
            self.collect_reports(partner, summary)
        # Whatever brought them (a partner's directory, `gateway serve`, `reports ingest`).
        self.reconcile_pending(summary)
        summary.reports_overdue = self.check_overdue()
        summary.channels_halted = dict(self.gate.unhealthy)
        self.close_transports()
        return summary

    # -- sandbox and reports -----------------------------------------------------

    def run_sandbox(self) -> None:
        from gateway.sandbox.runner import run_sandbox_once
        from gateway.sandbox.simulator import SandboxSettings

        settings = SandboxSettings.from_config(self.config.sandbox)
        for outcome in run_sandbox_once(self.config.sandbox.root, settings, self.clock):
            log.info("sandbox.flow_answered", flow=outcome.flow_id, status=outcome.status_code or "no answer")

    def collect_reports(self, partner: Partner, summary: PassSummary) -> None:
        """Store each returned file durably, then remove it remotely."""
        try:
            transport = self.transport(partner)
            names = transport.list_reports()
        except TransportError as exc:
            log.error("reports.pickup_failed", partner=partner.name, error=exc.message)
            summary.reports_pickup_failed[partner.name] = exc.message
            return
        for name in names:
            try:
                raw = transport.fetch_report(name)
            except TransportError as exc:
                log.error("reports.fetch_failed", partner=partner.name, file=name, error=exc.message)
                summary.reports_pickup_failed.setdefault(partner.name, exc.message)
                continue
            digest = hashlib.sha256(raw).hexdigest()
            with self.store.transaction() as tx:
                # Stored once, whoever else picked up the same file (a no-op when already stored).
                tx.add_report(sha256=digest, file_name=name, partner=partner.name, raw=raw, now=self.clock.now())
            try:
                transport.acknowledge_report(name)
            except TransportError as exc:
                # Stored already: fetched again next pass, it is recognised by its sha256.
                log.warning("reports.acknowledge_failed", partner=partner.name, file=name, error=exc.message)

    def reconcile_pending(self, summary: PassSummary) -> None:
        with self.store.transaction() as tx:
            pending = [report.id for report in tx.reports_to_reconcile()]
        for report_id in pending:
            with self.store.transaction() as tx:
                outcome = reconcile_report(tx, report_id, now=self.clock.now())
            summary.reports[outcome] += 1


__all__ = ["PassSummary", "Pipeline", "retry_delay"]
