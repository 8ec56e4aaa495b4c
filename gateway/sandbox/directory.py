"""The sandbox's built-in directory of public structures (annuaire).

A tiny stand-in for the directory Chorus Pro publishes: the buyers the sandbox knows.
The demo's sample export addresses these buyers, and one that is not listed, so that a
rehearsal shows a rejection by "Chorus Pro" as well as rejections by the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublicStructure:
    siret: str
    name: str
    service_required: bool = False


#: Luhn-valid SIRETs invented for the sandbox; none is meant to be a real structure.
SAMPLE_PUBLIC_STRUCTURES: tuple[PublicStructure, ...] = (
    PublicStructure("11000000700010", "Ministère de l'Exemple"),
    PublicStructure("21750001600019", "Commune de Démonstration"),
    PublicStructure("26750000700013", "Centre hospitalier de Répétition"),
)

#: A Luhn-valid SIRET that is *not* in the sample directory.
UNLISTED_BUYER_SIRET = "19750000200013"
