"""Chorus Pro rules that EN 16931 does not cover (DOMAIN.md §3), for UBL and CII.

Layer ``chorus``. Rule ids are stable: ``RULES`` lists them and docs/validation.md
documents them. Every finding points at the element concerned by an absolute XPath,
or at its parent when the element is absent. Pure: the directory of public structures
and the record of invoices already sent reach the rules as lookups (``ChorusContext``);
without them, only the rules that need no context run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree
from stdnum import iban
from stdnum.exceptions import ValidationError
from stdnum.fr import siret

from gateway.validation import chorus_attachments
from gateway.validation.findings import Finding, Severity
from gateway.xml import syntax
from gateway.xml.syntax import BusinessTerms

if TYPE_CHECKING:
    from gateway.directory import DirectoryEntry

LAYER = "chorus"

#: Rule id → what it checks (the table of docs/validation.md says more).
RULES: dict[str, str] = {
    "CHORUS-SIRET-SUPPLIER": "supplier SIRET present and valid (14 digits, Luhn, La Poste rule)",
    "CHORUS-SIRET-BUYER": "buyer SIRET present and valid; a warning only when the directory lists the buyer",
    "CHORUS-CADRE": "cadre de facturation (BT-23), when given, is one of A1–A25 except A11",
    "CHORUS-CADRE-MISSING": "no cadre de facturation (BT-23): Chorus Pro is expected to assume A1",
    "CHORUS-BUYER-UNKNOWN": "the buyer SIRET is in the loaded directory of public structures",
    "CHORUS-BUYER-INACTIVE": "the buyer's structure is active in the directory",
    "CHORUS-SERVICE-REQUIRED": "a service code (BT-10) is given when the structure requires one",
    "CHORUS-SERVICE-UNKNOWN": "a service code (BT-10) given is a service of the structure",
    "CHORUS-SERVICE-INACTIVE": "a service code (BT-10) given is an active service of the structure",
    "CHORUS-COMMITMENT-REQUIRED": "a commitment number (BT-13) is given when the structure requires one",
    "CHORUS-SERVICE-OR-COMMITMENT": "a service code or a commitment number when the structure requires either",
    "CHORUS-IBAN-MISSING": "payment means 30, 31 and 42 carry the payee's IBAN",
    "CHORUS-IBAN-INVALID": "the IBAN of payment means 30, 31 and 42 is a valid IBAN",
    "CHORUS-CREDIT-NOTE-PAYMENT-MEANS": "a credit note (381) carries no payment means",
    chorus_attachments.NAME: "an embedded attachment has a plain file name of at most 50 characters",
    chorus_attachments.EXTENSION: "an embedded attachment's extension is one the gateway accepts",
    chorus_attachments.CONTENT: "an embedded attachment is readable base64 and not empty",
    chorus_attachments.SIZE: "an embedded attachment weighs less than 10 MB",
    chorus_attachments.TOTAL: "the embedded attachments weigh at most 120 MB together",
    "CHORUS-NUMBER-LENGTH": "the invoice number (BT-1) is at most 20 characters",
    "CHORUS-DUPLICATE": "supplier + invoice number + year of issue not already sent or integrated",
}

_SIRET_RULES = {"supplier": "CHORUS-SIRET-SUPPLIER", "buyer": "CHORUS-SIRET-BUYER"}
#: DOMAIN.md §3 and the CPPFacturePivot XSD (research/chorus-edi.md §5): A1–A25, there is no A11.
CADRE_CODES = frozenset(f"A{n}" for n in range(1, 26) if n != 11)
#: The cadre Chorus Pro is expected to assume when BT-23 is absent; the gateway's own intake
#: defaults to it too (``gateway.intake.records``).
DEFAULT_CADRE = "A1"
#: UNTDID 4461 credit transfers (30, 31) and bank-account payments (42): Chorus Pro needs an IBAN.
IBAN_PAYMENT_MEANS = frozenset({"30", "31", "42"})
CREDIT_NOTE = "381"
_IBAN_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}")


@dataclass(frozen=True)
class ChorusContext:
    """What the rules may consult besides the invoice; the defaults need nothing."""

    #: SIRET → the buyer's directory entry; None when no directory is loaded (directory rules then do not run)
    directory: Callable[[str], DirectoryEntry | None] | None = None
    #: severity of a buyer SIRET absent from a loaded directory
    unknown_buyer: Severity = Severity.WARNING
    #: (supplier SIRET, invoice number, issue year) → a short description of the invoice already sent to or
    #: integrated by Chorus Pro with that key, or None
    duplicate_of: Callable[[str, str, int], str | None] | None = None
    max_invoice_number_length: int = 20


_PREFIXES = {uri: prefix for prefix, uri in syntax.NS.items()}


def _layout(doc: etree._ElementTree) -> BusinessTerms:
    """Where the document's syntax writes the terms the rules read; a document of no known
    syntax is read as UBL (the XSD layer has already refused it)."""
    known = syntax.of_root(doc.getroot().tag)
    return known.terms if known is not None and known.terms is not None else syntax.UBL_TERMS


def xpath_of(element: etree._Element) -> str:
    """The absolute XPath of ``element``: ``/*`` for the root, then prefixed steps, with a
    position only where siblings share the name.

    >>> root = etree.fromstring('<r xmlns:c="%s"><c:A/><c:A><c:B/></c:A></r>' % syntax.NS["cac"])
    >>> xpath_of(root[1][0])
    '/*/cac:A[2]/cac:B'
    """
    steps = []
    node = element
    while (parent := node.getparent()) is not None:
        name = etree.QName(node)
        prefix = _PREFIXES.get(name.namespace or "")
        step = f"{prefix}:{name.localname}" if prefix else f"*[local-name()='{name.localname}']"
        same = [sibling for sibling in parent if sibling.tag == node.tag]
        steps.append(f"{step}[{same.index(node) + 1}]" if len(same) > 1 else step)
        node = parent
    return "/".join(["/*", *reversed(steps)])


def _find(root: etree._Element, path: str) -> tuple[etree._Element | None, str]:
    """The first element at ``path`` with some text, and that text stripped (or None, "")."""
    for element in root.xpath(path, namespaces=syntax.NS):
        if (element.text or "").strip():
            return element, element.text.strip()
    return None, ""


def _siret_element(doc: etree._ElementTree, role: str) -> etree._Element | None:
    layout = _layout(doc)
    for path in layout.siret_paths:
        element, _ = _find(doc.getroot(), f"{layout.parties[role]}/{path}")
        if element is not None:
            return element
    return None


def party_siret(doc: etree._ElementTree, role: str) -> str | None:
    """The SIRET of the supplier or buyer, as written in the invoice (or None)."""
    element = _siret_element(doc, role)
    return None if element is None else element.text.strip()


def _finding(rule_id: str, severity: Severity, location: str, message: str) -> Finding:
    return Finding(LAYER, rule_id, severity, location, message)


def check_chorus_rules(doc: etree._ElementTree, context: ChorusContext | None = None) -> list[Finding]:
    """The Chorus Pro rules over one UBL or CII invoice.

    Without ``context`` (or with the default one) the rules that need no directory and no
    record of sent invoices run: SIRETs, cadre, invoice number, payment means, credit
    notes and attachments.
    """
    context = context or ChorusContext()
    layout = _layout(doc)
    root = doc.getroot()
    findings = _siret_findings(doc, layout, context)
    findings += _cadre_findings(root, layout)
    findings += _number_findings(root, layout, context)
    findings += _payment_findings(root, layout)
    findings += chorus_attachments.check_attachments(
        ((xpath_of(element), element) for element in root.xpath(layout.attachments, namespaces=syntax.NS)),
        _parent_location(root, layout.terms),
        layer=LAYER,
    )
    if context.directory is not None:
        findings += _directory_findings(doc, layout, context.directory, context.unknown_buyer)
    if context.duplicate_of is not None:
        findings += _duplicate_findings(doc, layout, context.duplicate_of)
    return findings


def _parent_location(root: etree._Element, path: str) -> str:
    """Where a finding on something absent at or under ``path`` points: the element at
    ``path``, else its nearest ancestor that the document has.

    >>> _parent_location(etree.fromstring("<r/>"), "rsm:ExchangedDocumentContext/ram:ID")
    '/*'
    """
    steps = path.split("/")
    while steps and steps != ["."]:
        found = root.xpath("/".join(steps), namespaces=syntax.NS)
        if found:
            return xpath_of(found[0])
        steps.pop()
    return "/*"


def _directory_entry(
    directory: Callable[[str], DirectoryEntry | None] | None, value: str
) -> DirectoryEntry | None:
    return None if directory is None else directory(siret.compact(value))


def _siret_findings(doc: etree._ElementTree, layout: BusinessTerms, context: ChorusContext) -> list[Finding]:
    """Supplier and buyer SIRET present and valid (14 digits, Luhn, La Poste rule)."""
    findings = []
    for role, rule_id in _SIRET_RULES.items():
        element = _siret_element(doc, role)
        if element is None:
            location = f"/*/{layout.parties[role]}/{layout.siret_location}"
            findings.append(_finding(rule_id, Severity.ERROR, location, f"the {role} SIRET is missing"))
            continue
        value = element.text.strip()
        if siret.is_valid(value):
            continue
        entry = _directory_entry(context.directory, value) if role == "buyer" else None
        if entry is not None:
            # research/chorus-edi-gaps.md §4: some real directory identifiers fail the checksum.
            findings.append(_finding(rule_id, Severity.WARNING, xpath_of(element),
                                     f"the buyer SIRET {value!r} fails the SIRET checksum, but the directory of "
                                     f"public structures lists it ({entry.name}): Chorus Pro knows this identifier"))
        else:
            findings.append(_finding(rule_id, Severity.ERROR, xpath_of(element),
                                     f"the {role} SIRET {value!r} is not a valid SIRET: expected 14 digits "
                                     "(SIREN + NIC) passing the Luhn check; correct it in the ERP's party data"))
    return findings


def _cadre_findings(root: etree._Element, layout: BusinessTerms) -> list[Finding]:
    """BT-23, the cadre de facturation.

    Absent: a warning, not an error. The Chorus Pro specifications seen here do not say
    what happens to a UBL or CII invoice without BT-23; A1 (a supplier's invoice) is the
    case of almost every invoice, is what the gateway's intake assumes, and what other
    Chorus Pro tooling assumes too (research/chorus-edi.md §5). The warning says so, so that
    an operator sending an A2 (already paid), A9 (subcontractor) … invoice notices.
    """
    element, value = _find(root, layout.cadre)
    if element is None:
        return [_finding("CHORUS-CADRE-MISSING", Severity.WARNING, _parent_location(root, layout.cadre),
                         f"the invoice has no cadre de facturation (BT-23); Chorus Pro will be left to assume "
                         f"{DEFAULT_CADRE} (a supplier's invoice): write it explicitly, or the right one "
                         "(A2 already paid, A9 subcontractor, A12 co-contractor, …)")]
    if value in CADRE_CODES:
        return []
    return [_finding("CHORUS-CADRE", Severity.ERROR, xpath_of(element),
                     f"the cadre de facturation (BT-23) is {value!r}; Chorus Pro reads this element as the cadre "
                     f"and expects one of A1–A25 except A11 ({DEFAULT_CADRE} for a supplier's invoice)")]


def _number_findings(root: etree._Element, layout: BusinessTerms, context: ChorusContext) -> list[Finding]:
    """BT-1 no longer than Chorus Pro takes (20 characters in CPP, 35 in the 2026 reform)."""
    element, value = _find(root, layout.number)
    limit = context.max_invoice_number_length
    if element is None or len(value) <= limit:
        return []
    return [_finding("CHORUS-NUMBER-LENGTH", Severity.ERROR, xpath_of(element),
                     f"the invoice number {value!r} has {len(value)} characters; Chorus Pro takes at most {limit}: "
                     "shorten the numbering in the ERP")]


def _is_credit_note(root: etree._Element, layout: BusinessTerms) -> bool:
    if etree.QName(root).localname == "CreditNote":
        return True
    return _find(root, layout.type_code)[1] == CREDIT_NOTE


def _payment_findings(root: etree._Element, layout: BusinessTerms) -> list[Finding]:
    """A credit note carries no payment means; means 30, 31, 42 carry a valid IBAN."""
    means = root.xpath(layout.payment_means, namespaces=syntax.NS)
    if _is_credit_note(root, layout):
        # The IBAN of a credit note's payment means is not checked: the means must go.
        return [_finding("CHORUS-CREDIT-NOTE-PAYMENT-MEANS", Severity.ERROR, xpath_of(element),
                         f"this credit note ({CREDIT_NOTE}) carries a payment means "
                         f"(code {_find(element, layout.means_code)[1] or 'none'!r}); Chorus Pro takes no payment "
                         "means on a credit note: remove it (in the ERP export, leave payment_means and iban empty)")
                for element in means]
    findings = []
    for element in means:
        _, code = _find(element, layout.means_code)
        if code in IBAN_PAYMENT_MEANS:
            findings += _iban_findings(element, code, layout)
    return findings


def _iban_findings(means: etree._Element, code: str, layout: BusinessTerms) -> list[Finding]:
    account, value = _find(means, layout.iban)
    if account is None:
        other, found = _find(means, layout.other_account) if layout.other_account else (None, "")
        written = "" if other is None else f" (it gives {found!r} as {etree.QName(other).localname}, not as an IBAN)"
        return [_finding("CHORUS-IBAN-MISSING", Severity.ERROR, xpath_of(means),
                         f"payment means {code} needs the payee's IBAN (BT-84){written}; Chorus Pro accepts only "
                         "an IBAN for payment means 30, 31 and 42: give the IBAN, or another payment means")]
    try:
        iban.validate(value)
    except ValidationError as exc:
        why = str(exc).rstrip(".").lower() if _IBAN_SHAPE.fullmatch(iban.compact(value)) else \
            "expected a 2-letter country code, 2 check digits, then the account"
        return [_finding("CHORUS-IBAN-INVALID", Severity.ERROR, xpath_of(account),
                         f"payment means {code} gives the account {value!r}, which is not a valid IBAN ({why}); "
                         "Chorus Pro accepts only an IBAN for payment means 30, 31 and 42")]
    return []


def _directory_findings(
    doc: etree._ElementTree,
    layout: BusinessTerms,
    directory: Callable[[str], DirectoryEntry | None],
    unknown_buyer: Severity,
) -> list[Finding]:
    """What the buyer's public structure requires, from the directory (annuaire)."""
    element = _siret_element(doc, "buyer")
    if element is None:
        return []  # CHORUS-SIRET-BUYER already says so
    value = element.text.strip()
    entry = _directory_entry(directory, value)
    if entry is None:
        if not siret.is_valid(value):
            return []  # CHORUS-SIRET-BUYER already reports the number as wrong
        return [_finding("CHORUS-BUYER-UNKNOWN", unknown_buyer, xpath_of(element),
                         f"the buyer SIRET {value!r} is not in the directory of public structures: Chorus Pro "
                         "rejects an invoice to a structure it does not know; check the SIRET with the buyer")]
    root = doc.getroot()
    findings = []
    if not entry.active:
        findings.append(_finding("CHORUS-BUYER-INACTIVE", Severity.ERROR, xpath_of(element),
                                 f"the buyer {value!r} ({entry.name}) is not active in the directory of public "
                                 "structures: Chorus Pro rejects invoices to it; ask the buyer which SIRET to invoice"))
    service_element, service = _find(root, f"{layout.terms}/{layout.service}")
    _, commitment = _find(root, f"{layout.terms}/{layout.commitment}")
    terms = _parent_location(root, layout.terms)
    who = f"the buyer {value!r} ({entry.name})"
    if service_element is not None:
        findings += _service_findings(entry, service, xpath_of(service_element), who)
    elif entry.service_required:
        findings.append(_finding("CHORUS-SERVICE-REQUIRED", Severity.ERROR, terms,
                                 f"{who} requires a service code (BT-10, the buyer reference) and the invoice has "
                                 f"none; expected one of its active services: {_services(entry)}"))
    if entry.commitment_required and not commitment:
        findings.append(_finding("CHORUS-COMMITMENT-REQUIRED", Severity.ERROR, terms,
                                 f"{who} requires a commitment number (BT-13, the order reference) and the invoice "
                                 "has none; ask the buyer for its engagement juridique number"))
    if entry.service_or_commitment and not service and not commitment:
        findings.append(_finding("CHORUS-SERVICE-OR-COMMITMENT", Severity.ERROR, terms,
                                 f"{who} requires a service code (BT-10) or a commitment number (BT-13) and the "
                                 f"invoice has neither; its active services: {_services(entry)}"))
    return findings


def _services(entry: DirectoryEntry) -> str:
    active = sorted(code for code, is_active in entry.services.items() if is_active)
    return ", ".join(repr(code) for code in active) if active else "none listed in the directory"


def _service_findings(entry: DirectoryEntry, service: str, location: str, who: str) -> list[Finding]:
    """A service code given must be an active service of the structure, required or not.

    A structure imported without its services (``gateway directory import`` without
    ``--services``) cannot say: the code is then taken as given."""
    if not entry.services:
        return []
    if service not in entry.services:
        return [_finding("CHORUS-SERVICE-UNKNOWN", Severity.ERROR, location,
                         f"the service code (BT-10) {service!r} is not a service of {who}; "
                         f"expected one of its active services: {_services(entry)}")]
    if not entry.services[service]:
        return [_finding("CHORUS-SERVICE-INACTIVE", Severity.ERROR, location,
                         f"the service code (BT-10) {service!r} of {who} is inactive in the directory; "
                         f"expected one of its active services: {_services(entry)}")]
    return []


def _duplicate_findings(
    doc: etree._ElementTree, layout: BusinessTerms, duplicate_of: Callable[[str, str, int], str | None]
) -> list[Finding]:
    """Supplier + invoice number + year of issue already sent or integrated: Chorus Pro rejects it."""
    root = doc.getroot()
    supplier = party_siret(doc, "supplier")
    number_element, number = _find(root, layout.number)
    _, issued = _find(root, layout.issue_date)
    if supplier is None or number_element is None or not issued[:4].isdigit():
        return []  # the SIRET rule or the XSD says what is missing
    year = int(issued[:4])
    original = duplicate_of(siret.compact(supplier), number, year)
    if original is None:
        return []
    return [_finding("CHORUS-DUPLICATE", Severity.ERROR, xpath_of(number_element),
                     f"invoice {number!r} of {year} from supplier {supplier} was already sent: {original}; "
                     "Chorus Pro rejects a second invoice with the same supplier, number and year: "
                     "give this one a new number, or do not send it again")]
