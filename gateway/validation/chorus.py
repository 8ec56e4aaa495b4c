"""Chorus Pro rules that EN 16931 does not cover (DOMAIN.md §3), for UBL and CII."""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree
from stdnum.fr import siret

from gateway.validation.findings import Finding, Severity

NS = {
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
}

CII_ROOT = f"{{{NS['rsm']}}}CrossIndustryInvoice"

_RULE_IDS = {"supplier": "CHORUS-SIRET-SUPPLIER", "buyer": "CHORUS-SIRET-BUYER"}


@dataclass(frozen=True)
class _SiretLayout:
    """Where one syntax writes the parties' SIRETs (paths relative to the root)."""

    parties: dict[str, str]  #: role → the party element
    #: Relative to the party, in order of preference: the first non-empty one is read.
    siret_paths: tuple[str, ...]
    #: Relative to the party: where a finding points.
    location: str


# DOMAIN.md §3: SIRET carries scheme 0009 today, schemeName "1" in older UBL profiles;
# BT-29 (party identifier) first, then BT-30 (legal registration), which repeats it.
_UBL = _SiretLayout(
    parties={"supplier": "cac:AccountingSupplierParty/cac:Party", "buyer": "cac:AccountingCustomerParty/cac:Party"},
    siret_paths=(
        "cac:PartyIdentification/cbc:ID[@schemeID='0009']",
        "cac:PartyIdentification/cbc:ID[@schemeName='1']",
        "cac:PartyLegalEntity/cbc:CompanyID[@schemeID='0009']",
    ),
    location="cac:PartyIdentification/cbc:ID",
)
# The same business terms in CII: BT-29/BT-46 in GlobalID, BT-30/BT-47 in
# SpecifiedLegalOrganization/ID, both with the ISO 6523 scheme 0009 (SIRET).
_CII_AGREEMENT = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeAgreement"
_CII = _SiretLayout(
    parties={"supplier": f"{_CII_AGREEMENT}/ram:SellerTradeParty", "buyer": f"{_CII_AGREEMENT}/ram:BuyerTradeParty"},
    siret_paths=(
        "ram:GlobalID[@schemeID='0009']",
        "ram:SpecifiedLegalOrganization/ram:ID[@schemeID='0009']",
    ),
    location="ram:GlobalID",
)


def is_cii(doc: etree._ElementTree) -> bool:
    """True for a CII CrossIndustryInvoice; anything else is read as UBL."""
    return doc.getroot().tag == CII_ROOT


def _layout(doc: etree._ElementTree) -> _SiretLayout:
    return _CII if is_cii(doc) else _UBL


def party_siret(doc: etree._ElementTree, role: str) -> str | None:
    """The SIRET of the supplier or buyer, as written in the invoice (or None)."""
    layout = _layout(doc)
    root = doc.getroot()
    for path in layout.siret_paths:
        found = root.find(f"{layout.parties[role]}/{path}", NS)
        if found is not None and (found.text or "").strip():
            return found.text.strip()
    return None


def check_chorus_rules(doc: etree._ElementTree) -> list[Finding]:
    """Supplier and buyer SIRET present and valid (14 digits, Luhn, La Poste rule)."""
    layout = _layout(doc)
    findings = []
    for role, rule_id in _RULE_IDS.items():
        location = f"/*/{layout.parties[role]}/{layout.location}"
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
