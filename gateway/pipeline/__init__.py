"""One pass of the gateway: the only place where the pure stages meet the store,
the filesystem and the transports.

Order of a pass: settle interrupted attempts → intake → pack → send → (sandbox) →
pick up and reconcile reports. Each step writes its rows before the side effect they
allow, so a crash at any point resumes without loss or double sending.
"""

from __future__ import annotations


import structlog

from gateway.clock import Clock
from gateway.config import Config, Partner
from gateway.errors import TransportError
from gateway.pipeline.intake import FileFailures, IntakeSteps
from gateway.pipeline.outbox import OutboxSteps
from gateway.pipeline.reports import ReportSteps
from gateway.pipeline.summary import PassSummary
from gateway.store import Store
from gateway.transport import Transport, open_transport
from gateway.validation_gate import ValidationGate

log = structlog.get_logger(__name__)


class Pipeline(IntakeSteps, OutboxSteps, ReportSteps):
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


__all__ = ["PassSummary", "Pipeline"]
