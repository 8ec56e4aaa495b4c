"""Chorus Pro rules that EN 16931 does not cover (DOMAIN.md §3)."""

from __future__ import annotations

from lxml import etree
from stdnum.fr import siret

from gateway.validation.findings import Finding, Severity

NS = {
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}

# DOMAIN.md §3: SIRET carries scheme 0009 today, schemeName "1" in older profiles.
_PARTIES = {
    "supplier": ("cac:AccountingSupplierParty", "CHORUS-SIRET-SUPPLIER"),
    "buyer": ("cac:AccountingCustomerParty", "CHORUS-SIRET-BUYER"),
}


def party_siret(doc: etree._ElementTree, role: str) -> str | None:
    """The SIRET of the supplier or buyer, as written in the invoice (or None)."""
    party_path, _ = _PARTIES[role]
    root = doc.getroot()
    for path in (
        f"{party_path}/cac:Party/cac:PartyIdentification/cbc:ID[@schemeID='0009']",
        f"{party_path}/cac:Party/cac:PartyIdentification/cbc:ID[@schemeName='1']",
        f"{party_path}/cac:Party/cac:PartyLegalEntity/cbc:CompanyID[@schemeID='0009']",
    ):
        found = root.find(path, NS)
        if found is not None and (found.text or "").strip():
            return found.text.strip()
    return None


def check_chorus_rules(doc: etree._ElementTree) -> list[Finding]:
    """Supplier and buyer SIRET present and valid (14 digits, Luhn, La Poste rule)."""
    findings = []
    for role, (party_path, rule_id) in _PARTIES.items():
        location = f"/*/{party_path}/cac:Party/cac:PartyIdentification/cbc:ID"
        value = party_siret(doc, role)
        if value is None:
            findings.append(Finding("chorus", rule_id, Severity.ERROR, location, f"the {role} SIRET is missing"))
        elif not siret.is_valid(value):
            findings.append(
                Finding(
                    "chorus",
                    rule_id,
                    Severity.ERROR,
                    location,
                    f"the {role} SIRET {value!r} is not a valid SIRET (14 digits, Luhn check)",
                )
            )
    return findings
