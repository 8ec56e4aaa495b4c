"""``gateway directory``: import the directory of public structures, look up a buyer,
and say which directory the validation layer is reading."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import click
import structlog

from gateway.clock import SystemClock
from gateway.cli.state import State, pass_state
from gateway.directory import DirectoryEntry
from gateway.directory.importer import FORMATS, DirectoryFile, detect_format, directory_siret
from gateway.store.views import DirectoryImportView

log = structlog.get_logger(__name__)

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("directory")
def directory_group() -> None:
    """The directory of public structures (annuaire Chorus Pro)."""


@directory_group.command("import")
@click.argument("file", type=_FILE)
@click.option("--services", "services_file", type=_FILE, help="The services CSV that goes with a structures CSV.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Default: from the file's extension.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def directory_import(state: State, file: Path, services_file: Path | None, fmt: str | None, as_json: bool) -> None:
    """Replace the whole directory by FILE; on any bad value nothing changes."""
    if services_file is not None and detect_format(file, fmt) == "xml":
        raise click.UsageError("the XML directory carries its services: --services goes with a structures CSV")
    directory = DirectoryFile(file, fmt=fmt, services=services_file)
    sources = [file] if services_file is None else [file, services_file]
    file_name = " + ".join(path.name for path in sources)
    digest = _sha256(sources)
    with state.store().transaction() as tx:
        record = tx.replace_directory(directory.entries(), file_name=file_name, sha256=digest, now=SystemClock().now())
    counts = directory.counts
    if directory.format == "csv" and services_file is None:
        # With no services imported, the rules layer cannot check a service code (BT-10)
        # against the buyer's services: say so, the operator probably forgot the file.
        log.warning("directory.without_services", file=file_name)
    log.info(
        "directory.imported",
        file=file_name,
        sha256=digest,
        format=directory.format,
        structures=record.structures,
        services=record.services,
        skipped=counts.skipped,
        padded=counts.padded,
        services_skipped=counts.services_skipped,
    )
    if as_json:
        click.echo(json.dumps({**_import_dict(record), "skipped": counts.skipped, "padded": counts.padded,
                               "services_skipped": counts.services_skipped}, indent=2, ensure_ascii=False))
        return
    click.echo(
        f"directory imported: {record.structures} structures, {record.services} services, "
        f"{counts.skipped} skipped (not SIRET), {counts.services_skipped} services skipped, "
        f"{counts.padded} SIRETs padded; file {file_name}; sha256 {digest}"
    )


@directory_group.command("show")
@click.argument("siret")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def directory_show(state: State, siret: str, as_json: bool) -> None:
    """What the directory says of the structure SIRET (13 digits are padded, as on import)."""
    try:
        key = directory_siret(siret.replace(" ", ""))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="SIRET") from None
    with state.read_store().transaction() as tx:
        entry = tx.directory_entry(key)
        size = tx.directory_size() if entry is None else None
    if entry is None:
        where = "which is empty: import it with gateway directory import FILE" if not size else f"of {size} structures"
        click.echo(f"error: {key} is not in the directory {where}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(_entry_dict(entry), indent=2, ensure_ascii=False))
        return
    click.echo(f"{entry.siret}  {entry.name}")
    click.echo(f"  active:                            {_yes(entry.active)}")
    click.echo(f"  service code (BT-10) required:     {_yes(entry.service_required)}")
    click.echo(f"  commitment (BT-13) required:       {_yes(entry.commitment_required)}")
    click.echo(f"  service code or commitment:        {_yes(entry.service_or_commitment)}")
    click.echo(f"  services: {len(entry.services)}")
    for code, active in sorted(entry.services.items()):
        click.echo(f"    {code}  {'active' if active else 'inactive'}")


@directory_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def directory_status(state: State, as_json: bool) -> None:
    """How many structures the directory holds, and where they came from."""
    with state.read_store().transaction() as tx:
        size = tx.directory_size()
        last = tx.last_directory_import()
    if as_json:
        click.echo(json.dumps({"structures": size, "last_import": _import_dict(last)}, indent=2, ensure_ascii=False))
        return
    if last is None:
        click.echo("directory: empty, never imported (gateway directory import FILE)")
        return
    click.echo(
        f"directory: {size} structures; last import {last.imported_at.isoformat()} of {last.file_name} "
        f"(sha256 {last.sha256}): {last.structures} structures, {last.services} services"
    )


def _sha256(paths: list[Path]) -> str:
    """The digest of the files one after the other, so that ``cat A B | sha256sum`` gives it back."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for chunk in iter(lambda handle=handle: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _entry_dict(entry: DirectoryEntry) -> dict[str, Any]:
    return {
        "siret": entry.siret,
        "name": entry.name,
        "active": entry.active,
        "service_required": entry.service_required,
        "commitment_required": entry.commitment_required,
        "service_or_commitment": entry.service_or_commitment,
        "services": [{"code": code, "active": active} for code, active in sorted(entry.services.items())],
    }


def _import_dict(row: DirectoryImportView | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "file": row.file_name,
        "sha256": row.sha256,
        "imported_at": row.imported_at.isoformat(),
        "structures": row.structures,
        "services": row.services,
    }


def _yes(value: bool) -> str:
    return "yes" if value else "no"
