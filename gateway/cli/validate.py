"""``gateway validate``: the validation layers over invoice files, as an operator runs them.

Exit 0 when every file is valid, 1 when any is invalid, 2 when a layer could not run
(a validator error is never a pass). Neither the configuration nor the store is used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from lxml import etree

from gateway.errors import ValidatorError
from gateway.validation.findings import Finding, is_valid
from gateway.validation.invoice import parse_invoice, validate_parsed
from gateway.validation.xsd import CII_NS

_SYNTAX_OF_NAMESPACE = {CII_NS: "cii"}


def validate_file(payload: bytes, cii_rules: Path | None) -> tuple[str | None, list[Finding]]:
    """(syntax, findings) through every layer, EN 16931 included; raises ``ValidatorError``
    when a layer cannot run."""
    parsed = parse_invoice(payload)
    if isinstance(parsed, Finding):
        return None, [parsed]
    syntax = _SYNTAX_OF_NAMESPACE.get(etree.QName(parsed.getroot()).namespace or "", "ubl")
    return syntax, validate_parsed(parsed, payload, en16931=True, cii_rules=cii_rules)


@click.command("validate")
@click.argument("files", metavar="FILE...", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False,
                                                                                     path_type=Path))
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--cii-rules", type=click.Path(exists=True, path_type=Path), default=None,
              help="The CEN EN 16931 CII rule set (its xslt directory): CII cannot be validated without it.")
def validate_command(files: tuple[Path, ...], output_format: str, cii_rules: Path | None) -> None:
    """Validate invoice files (UBL 2.1 Invoice/CreditNote, CII D16B) layer by layer."""
    results: list[dict[str, Any]] = []
    for path in files:
        try:
            syntax, findings = validate_file(path.read_bytes(), cii_rules)
            result = {"file": str(path), "syntax": syntax, "valid": is_valid(findings),
                      "findings": [f.as_dict() for f in findings]}
        except ValidatorError as exc:
            result = {"file": str(path), "syntax": None, "valid": False, "findings": [],
                      "validator_error": exc.message}
        results.append(result)
        if output_format == "text":
            _echo(result)
    if output_format == "json":
        click.echo(json.dumps(results, ensure_ascii=False, indent=2))
    if any("validator_error" in result for result in results):
        sys.exit(2)
    if not all(result["valid"] for result in results):
        sys.exit(1)


def _echo(result: dict[str, Any]) -> None:
    if "validator_error" in result:
        click.echo(f"ERROR   {result['file']}: validator error, not validated: {result['validator_error']}")
        return
    click.echo(f"{'VALID  ' if result['valid'] else 'INVALID'} {result['file']} ({result['syntax']})")
    for finding in result["findings"]:
        click.echo(f"  {finding['severity']:7} [{finding['layer']} {finding['rule_id']}] "
                   f"{finding['location']}: {finding['message']}")
