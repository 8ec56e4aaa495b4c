"""``gateway validate``: the validation layers over invoice files, as an operator runs them.

A file given here may come from anyone: CII is checked against the widest XSD available
(a registered D16B XSD, else Factur-X EXTENDED), not the EN16931 profile XSD that holds
the gateway's own output. Exit 0 when every file is valid, 1 when any is invalid, 2
when a layer could not run (a validator error is never a pass) or the store named by
``--config``/``--data-dir`` cannot be read. The rule sets are
factur-x's, plus those registered in the store (``gateway rules add``) when a
configuration or data directory is given, plus ``--cii-rules``; the Chorus Pro rules
then also read the store's directory of public structures. Nothing is written to the store.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from gateway.cli.state import State, pass_state
from gateway.errors import GatewayError, ValidatorError
from gateway.directory import DirectoryEntry
from gateway.validation.chorus import ChorusContext
from gateway.validation.findings import Severity, is_valid
from gateway.validation.invoice import chorus_layer, header_of
from gateway.validation.rulesets import DEFAULT_PROFILE, PROFILES, RuleRegistry, RuleSet, scan_directory
from gateway.validation.worker import DEFAULT_TIME_BUDGET, ValidationWorker


def _uses_store(state: State) -> bool:
    return bool(state.config_path or state.data_dir or os.environ.get("GATEWAY_CONFIG")
                or os.environ.get("GATEWAY_DATABASE_URL"))


def _from_store(state: State) -> tuple[list[RuleSet], ChorusContext | None]:
    """The store's rule sets and directory, when the operator pointed at a store."""
    if not _uses_store(state):
        return [], None
    from gateway.validation_gate import registered_rule_sets

    store = state.read_store()
    with store.transaction() as tx:
        rule_sets = registered_rule_sets(tx)
        loaded = tx.directory_size() > 0

    def directory(siret: str) -> DirectoryEntry | None:
        with store.transaction() as tx:
            return tx.directory_entry(siret)

    settings = state.config().validation
    return rule_sets, ChorusContext(directory=directory if loaded else None,
                                    unknown_buyer=Severity(settings.unknown_buyer),
                                    max_invoice_number_length=settings.max_invoice_number_length)


@click.command("validate")
@click.argument("files", metavar="FILE...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--profile", type=click.Choice(list(PROFILES)), default=DEFAULT_PROFILE, show_default=True,
              help="Schematron layers: en16931; fr adds BR-FR; fr-extended adds EXTENDED-CTC-FR too.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json, as every command spells it.")
@click.option("--cii-rules", type=click.Path(exists=True, path_type=Path), default=None,
              help="The CEN EN 16931 CII rule set (its xslt directory) or a D16B XSD directory, unless "
                   "registered with `gateway rules add`.")
@click.option("--time-budget", type=click.FloatRange(min=0.1), default=DEFAULT_TIME_BUDGET, show_default=True,
              help="Seconds one document may take in the schema layers before it is a validator error.")
@pass_state
def validate_command(state: State, files: tuple[Path, ...], profile: str, output_format: str, as_json: bool,
                     cii_rules: Path | None, time_budget: float) -> None:
    """Validate invoice files (UBL 2.1 Invoice/CreditNote, CII D16B) layer by layer."""
    if as_json:
        output_format = "json"
    try:
        registered, context = _from_store(state)
    except GatewayError as exc:
        # Nothing was validated: the same code as a layer that could not run.
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(2)
    registry = RuleRegistry.default(registered + (scan_directory(cii_rules) if cii_rules is not None else []))
    results: list[dict[str, Any]] = []
    with ValidationWorker(registry.all(), time_budget=time_budget) as worker:
        for path in files:
            results.append(_validate_one(worker, path, profile, context))
            if output_format == "text":
                _echo(results[-1])
    if output_format == "json":
        click.echo(json.dumps(results, ensure_ascii=False, indent=2))
    if any("validator_error" in result for result in results):
        sys.exit(2)
    if not all(result["valid"] for result in results):
        sys.exit(1)


def _validate_one(
    worker: ValidationWorker, path: Path, profile: str, context: ChorusContext | None
) -> dict[str, Any]:
    payload = path.read_bytes()
    try:
        # A file given here may come from anyone: CII gets the widest XSD available.
        result = worker.schema_layers(payload, profile, own_output=False)
    except ValidatorError as exc:
        return {"file": str(path), "syntax": None, "valid": False, "findings": [], "validator_error": exc.message}
    # The worker parsed it already; parsing again here (without the lines) is cheap next to the Schematron.
    result = chorus_layer(header_of(payload, result), result, context)
    return {"file": str(path), "syntax": result.syntax, "valid": is_valid(result.findings),
            "findings": [f.as_dict() for f in result.findings], "validated_with": result.artefacts}


def _echo(result: dict[str, Any]) -> None:
    if "validator_error" in result:
        click.echo(f"ERROR   {result['file']}: validator error, not validated: {result['validator_error']}")
        return
    click.echo(f"{'VALID  ' if result['valid'] else 'INVALID'} {result['file']} ({result['syntax']})")
    for finding in result["findings"]:
        click.echo(f"  {finding['severity']:7} [{finding['layer']} {finding['rule_id']}] "
                   f"{finding['location']}: {finding['message']}")
