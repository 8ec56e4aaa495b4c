"""Reference data in the store: the public-structure directory, the registered rule
sets and the validation sets that record what validated each invoice.

A mixin of ``Tx``: the same transaction, the same rule that no other module builds SQL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select

from gateway.directory import DirectoryEntry
from gateway.store.base import TxBase
from gateway.store.views import DirectoryImportView
from gateway.store.models import DirectoryImport, PublicStructure, RuleSet, StructureService, ValidationSet

# Rows per INSERT statement: the directory holds some 100,000 structures.
_BATCH = 5000


class ReferenceData(TxBase):

    # -- the directory of public structures ---------------------------------------

    def replace_directory(
        self, entries: Iterable[DirectoryEntry], *, file_name: str, sha256: str, now: datetime
    ) -> DirectoryImportView:
        """Replace the whole directory by this import, in this transaction.

        The published directory is a full snapshot: a structure absent from it is no
        longer a buyer, so entries are not merged with the previous import.
        """
        self.session.execute(delete(StructureService))
        self.session.execute(delete(PublicStructure))
        record = DirectoryImport(file_name=file_name, sha256=sha256, structures=0, services=0, imported_at=now)
        self.session.add(record)
        self.session.flush()
        structures: list[dict[str, Any]] = []
        services: list[dict[str, Any]] = []
        for entry in entries:
            structures.append(
                {
                    "siret": entry.siret,
                    "name": entry.name,
                    "active": entry.active,
                    "service_required": entry.service_required,
                    "commitment_required": entry.commitment_required,
                    "service_or_commitment": entry.service_or_commitment,
                    "import_id": record.id,
                }
            )
            services.extend(
                {"siret": entry.siret, "code": code, "name": None, "active": active}
                for code, active in entry.services.items()
            )
            record.structures += 1
            if len(structures) >= _BATCH:
                self._flush_directory(structures, services)
                record.services += len(services)
                structures, services = [], []
        self._flush_directory(structures, services)
        record.services += len(services)
        return DirectoryImportView.of(record)

    def _flush_directory(self, structures: list[dict[str, Any]], services: list[dict[str, Any]]) -> None:
        if structures:
            self.session.execute(insert(PublicStructure), structures)
        for start in range(0, len(services), _BATCH):
            self.session.execute(insert(StructureService), services[start : start + _BATCH])

    def directory_entry(self, siret: str) -> DirectoryEntry | None:
        row = self.session.get(PublicStructure, siret)
        if row is None:
            return None
        services = self.session.execute(
            select(StructureService.code, StructureService.active).where(StructureService.siret == siret)
        ).all()
        return DirectoryEntry(
            siret=row.siret,
            name=row.name,
            active=row.active,
            service_required=row.service_required,
            commitment_required=row.commitment_required,
            service_or_commitment=row.service_or_commitment,
            services={code: active for code, active in services},
        )

    def directory_size(self) -> int:
        return self.session.scalar(select(func.count()).select_from(PublicStructure)) or 0

    def last_directory_import(self) -> DirectoryImportView | None:
        row = self.session.scalars(select(DirectoryImport).order_by(DirectoryImport.id.desc())).first()
        return None if row is None else DirectoryImportView.of(row)

    # -- rule sets -----------------------------------------------------------------

    def add_rule_set(
        self, *, layer: str, syntax: str, path: str, version: str, sha256: str, origin: str, now: datetime
    ) -> RuleSet:
        row = RuleSet(
            layer=layer, syntax=syntax, path=path, version=version, sha256=sha256, origin=origin, added_at=now
        )
        self.session.add(row)
        self.session.flush()
        return row

    def rule_sets(self) -> Sequence[RuleSet]:
        """Every registration, oldest first: the newest one of a layer and syntax wins."""
        return self.session.scalars(select(RuleSet).order_by(RuleSet.id)).all()

    # -- validation sets -------------------------------------------------------------

    def validation_set(self, artefacts: Sequence[dict[str, str]], *, now: datetime) -> ValidationSet:
        """The row for this combination of XSDs and rule sets, created on first use."""
        text = json.dumps(list(artefacts), sort_keys=True, separators=(",", ":"))
        fingerprint = hashlib.sha256(text.encode()).hexdigest()
        row = self.session.scalars(select(ValidationSet).where(ValidationSet.fingerprint == fingerprint)).first()
        if row is None:
            row = ValidationSet(fingerprint=fingerprint, artefacts=text, created_at=now)
            self.session.add(row)
            self.session.flush()
        return row

    def validation_sets(self, ids: Iterable[int]) -> Sequence[ValidationSet]:
        wanted = sorted(set(ids))
        if not wanted:
            return []
        return self.session.scalars(select(ValidationSet).where(ValidationSet.id.in_(wanted))).all()
