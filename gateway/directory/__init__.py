"""The directory of public structures (annuaire Chorus Pro): who may be invoiced, and
what each buyer requires on its invoices (service code, commitment number).

This module holds the entry the validation layer reads; ``gateway.directory.importer``
parses the published files; the store keeps the imported entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DirectoryEntry:
    """One public structure as the directory describes it (DOMAIN.md §3)."""

    siret: str
    name: str
    active: bool = True
    #: GestionService: the invoice must name one of the structure's active services (BT-10).
    service_required: bool = False
    #: GestionEngagement: the invoice must carry a commitment number (BT-13).
    commitment_required: bool = False
    #: GestionServiceEngagement: a service code or a commitment number, at least one.
    service_or_commitment: bool = False
    #: Service code → active flag.
    services: Mapping[str, bool] = field(default_factory=dict)


__all__ = ["DirectoryEntry"]
