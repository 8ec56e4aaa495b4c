"""The built-in Chorus Pro simulator: its verdicts, its answers, and its files."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tracemalloc
import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from gateway.clock import FixedClock
from gateway.errors import GatewayError
from gateway.reports import ParsedReport, parse_report
from gateway.sandbox import (
    SAMPLE_PUBLIC_STRUCTURES,
    UNLISTED_BUYER_SIRET,
    PublicStructure,
    SandboxSettings,
    process_flow,
    run_sandbox_once,
)
from gateway.sandbox.archive import CHUNK, TAR_OVERHEAD_BYTES, ArchiveRefused, GunzipStream
from gateway.validation import validate_invoice

SUPPLIER = "73282932000017"
BUYERS = [structure.siret for structure in SAMPLE_PUBLIC_STRUCTURES]
FLOW_ID = "AAA1231100000000000000001"
FLOW_NAME = f"FSO1100A_AAA123_{FLOW_ID}.tar.gz"
CR_NAME = f"CSO1100A_AAA123_{FLOW_ID}.xml"
LIFECYCLE_NAME = f"FEN1201A_AAA123_{FLOW_ID}.xml"
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SETTINGS = SandboxSettings()

#: A minimal UBL 2.1 invoice that passes ``validate_invoice`` (checked below).
UBL_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
         xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
         xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
  <cbc:CustomizationID>urn:cen.eu:en16931:2017</cbc:CustomizationID>
  <cbc:ProfileID>A1</cbc:ProfileID>
  <cbc:ID>{number}</cbc:ID>
  <cbc:IssueDate>{issue_date}</cbc:IssueDate>
  <cbc:InvoiceTypeCode>380</cbc:InvoiceTypeCode>
  <cbc:DocumentCurrencyCode>EUR</cbc:DocumentCurrencyCode>{buyer_reference}
  <cac:AccountingSupplierParty>
    <cac:Party>
      <cac:PartyIdentification><cbc:ID schemeID="0009">{supplier}</cbc:ID></cac:PartyIdentification>
      <cac:PostalAddress><cac:Country><cbc:IdentificationCode>FR</cbc:IdentificationCode></cac:Country></cac:PostalAddress>
      <cac:PartyLegalEntity>
        <cbc:RegistrationName>Fournisseur Exemple</cbc:RegistrationName>
        <cbc:CompanyID schemeID="0009">{supplier}</cbc:CompanyID>
      </cac:PartyLegalEntity>
    </cac:Party>
  </cac:AccountingSupplierParty>
  <cac:AccountingCustomerParty>
    <cac:Party>
      <cac:PartyIdentification><cbc:ID schemeID="0009">{buyer}</cbc:ID></cac:PartyIdentification>
      <cac:PostalAddress><cac:Country><cbc:IdentificationCode>FR</cbc:IdentificationCode></cac:Country></cac:PostalAddress>
      <cac:PartyLegalEntity>
        <cbc:RegistrationName>Acheteur public</cbc:RegistrationName>
        <cbc:CompanyID schemeID="0009">{buyer}</cbc:CompanyID>
      </cac:PartyLegalEntity>
    </cac:Party>
  </cac:AccountingCustomerParty>
  <cac:TaxTotal>
    <cbc:TaxAmount currencyID="EUR">20.00</cbc:TaxAmount>
    <cac:TaxSubtotal>
      <cbc:TaxableAmount currencyID="EUR">100.00</cbc:TaxableAmount>
      <cbc:TaxAmount currencyID="EUR">20.00</cbc:TaxAmount>
      <cac:TaxCategory>
        <cbc:ID>S</cbc:ID>
        <cbc:Percent>20</cbc:Percent>
        <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>
      </cac:TaxCategory>
    </cac:TaxSubtotal>
  </cac:TaxTotal>
  <cac:LegalMonetaryTotal>
    <cbc:LineExtensionAmount currencyID="EUR">100.00</cbc:LineExtensionAmount>
    <cbc:TaxExclusiveAmount currencyID="EUR">100.00</cbc:TaxExclusiveAmount>
    <cbc:TaxInclusiveAmount currencyID="EUR">120.00</cbc:TaxInclusiveAmount>
    <cbc:PayableAmount currencyID="EUR">120.00</cbc:PayableAmount>
  </cac:LegalMonetaryTotal>
  <cac:InvoiceLine>
    <cbc:ID>1</cbc:ID>
    <cbc:InvoicedQuantity unitCode="C62">1</cbc:InvoicedQuantity>
    <cbc:LineExtensionAmount currencyID="EUR">100.00</cbc:LineExtensionAmount>
    <cac:Item>
      <cbc:Name>Prestation</cbc:Name>
      <cac:ClassifiedTaxCategory>
        <cbc:ID>S</cbc:ID>
        <cbc:Percent>20</cbc:Percent>
        <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>
      </cac:ClassifiedTaxCategory>
    </cac:Item>
    <cac:Price><cbc:PriceAmount currencyID="EUR">100.00</cbc:PriceAmount></cac:Price>
  </cac:InvoiceLine>
</Invoice>
"""


def ubl(
    number: str,
    buyer: str = BUYERS[0],
    *,
    supplier: str = SUPPLIER,
    issue_date: str = "2026-11-02",
    service: str | None = "SERVICE-1",
) -> bytes:
    reference = f"\n  <cbc:BuyerReference>{service}</cbc:BuyerReference>" if service else ""
    return UBL_TEMPLATE.format(
        number=number, buyer=buyer, supplier=supplier, issue_date=issue_date, buyer_reference=reference
    ).encode()


def tar_gz(members: list[tuple[str, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def flow(*invoices: bytes) -> bytes:
    return tar_gz([(f"{position:04d}.xml", data) for position, data in enumerate(invoices, start=1)])


def reports(files: tuple[tuple[str, bytes], ...]) -> dict[str, ParsedReport]:
    return {name: parse_report(data) for name, data in files}


def test_the_test_invoice_is_valid() -> None:
    for buyer in [*BUYERS, UNLISTED_BUYER_SIRET]:
        assert validate_invoice(ubl("F-1", buyer)) == []


# -- verdicts --------------------------------------------------------------------------


def test_a_flow_of_valid_invoices_is_integrated_with_its_lifecycle() -> None:
    outcome = process_flow(
        FLOW_NAME, flow(*(ubl(f"F-{i}", b) for i, b in enumerate(BUYERS))), settings=SETTINGS, now=NOW
    )
    assert (outcome.flow_id, outcome.status_code, outcome.rejected) == (FLOW_ID, "90", ())
    assert [i.invoice_number for i in outcome.integrated] == ["F-0", "F-1", "F-2"]
    assert [name for name, _ in outcome.files] == [CR_NAME, LIFECYCLE_NAME]
    parsed = reports(outcome.files)

    cr = parsed[CR_NAME]
    [status] = cr.flow_statuses
    assert (cr.kind, cr.envelope_flow_id, cr.sender_id, cr.receiver_id) == ("flow-status", FLOW_ID, "CPP001", "AAA123")
    assert (status.flow_id, status.code, status.errors, status.timestamp) == (FLOW_ID, "90", (), NOW)

    lifecycle = parsed[LIFECYCLE_NAME]
    assert (lifecycle.kind, lifecycle.envelope_flow_id) == ("invoice-status", FLOW_ID)
    got = [(e.invoice_number, e.buyer_id, e.code, e.timestamp) for e in lifecycle.invoice_statuses]
    assert got == [
        (f"F-{i}", buyer, code, NOW + timedelta(seconds=step))
        for i, buyer in enumerate(BUYERS)
        for step, code in enumerate(("01", "03"))
    ]
    assert {(e.supplier_id, e.supplier_id_type, e.invoice_date) for e in lifecycle.invoice_statuses} == {
        (SUPPLIER, "1", date(2026, 11, 2))
    }


def test_an_unlisted_buyer_makes_a_partial_integration_naming_the_invoice() -> None:
    archive = flow(ubl("F-1"), ubl("F-2", UNLISTED_BUYER_SIRET), ubl("F-3", BUYERS[1]))
    outcome = process_flow(FLOW_NAME, archive, settings=SETTINGS, now=NOW)
    assert outcome.status_code == "96"
    [rejected] = outcome.rejected
    assert (rejected.invoice_number, rejected.supplier_siret) == ("F-2", SUPPLIER)
    assert rejected.reason == f"destinataire inconnu de l'annuaire: {UNLISTED_BUYER_SIRET}"

    parsed = reports(outcome.files)
    [status] = parsed[CR_NAME].flow_statuses
    [line] = status.errors
    assert (line.nature, line.invoice_number, line.supplier_id, line.buyer_id) == (
        "FACTURE",
        "F-2",
        SUPPLIER,
        UNLISTED_BUYER_SIRET,
    )
    assert UNLISTED_BUYER_SIRET in line.label
    assert {e.invoice_number for e in parsed[LIFECYCLE_NAME].invoice_statuses} == {"F-1", "F-3"}


def test_invalid_invoices_are_rejected_with_readable_findings_and_all_rejected_is_93() -> None:
    archive = flow(ubl("F-1", supplier="73282932000018"), b"not xml at all")
    outcome = process_flow(FLOW_NAME, archive, settings=SETTINGS, now=NOW)
    assert (outcome.status_code, outcome.integrated) == ("93", ())
    assert [name for name, _ in outcome.files] == [CR_NAME]  # nothing integrated: no lifecycle
    bad_siret, not_xml = outcome.rejected
    assert "the supplier SIRET '73282932000018' is not a valid SIRET" in bad_siret.reason
    assert bad_siret.invoice_number == "F-1"
    assert not_xml.invoice_number is None

    [status] = parse_report(outcome.files[0][1]).flow_statuses
    # An unreadable invoice is named by its file in the archive.
    assert [line.invoice_number for line in status.errors] == ["F-1", "0002.xml"]
    assert all(line.nature == "FACTURE" for line in status.errors)


def test_duplicates_are_rejected_within_a_flow_and_against_earlier_flows() -> None:
    archive = flow(ubl("F-1"), ubl("F-2"), ubl("F-2", BUYERS[1]))
    outcome = process_flow(
        FLOW_NAME, archive, settings=SETTINGS, now=NOW, already_integrated=frozenset({(SUPPLIER, "F-1")})
    )
    assert outcome.status_code == "96"
    assert [i.invoice_number for i in outcome.integrated] == ["F-2"]
    assert [(r.invoice_number, r.code) for r in outcome.rejected] == [("F-1", "DOUBLON"), ("F-2", "DOUBLON")]
    assert "duplicate" in outcome.rejected[0].reason


def test_a_buyer_requiring_a_service_code_rejects_an_invoice_without_one() -> None:
    directory = (PublicStructure(BUYERS[0], "Service-bound buyer", service_required=True),)
    settings = SandboxSettings(directory=directory)
    outcome = process_flow(FLOW_NAME, flow(ubl("F-1"), ubl("F-2", service=None)), settings=settings, now=NOW)
    assert outcome.status_code == "96"
    assert [(r.invoice_number, r.code) for r in outcome.rejected] == [("F-2", "CODE_SERVICE")]


@pytest.mark.parametrize(
    ("archive", "expected"),
    [
        (b"\x1f\x8b\x08\x00garbage", "not a readable tar.gz"),
        (flow(ubl("F-1"))[:-30], "not a readable tar.gz"),
        (b"", "not a readable tar.gz"),
        (tar_gz([]), "holds no file"),
        (gzip.compress(b"plain text, not a tar"), "not a readable tar.gz"),
    ],
    ids=["not-gzip", "truncated", "empty-file", "empty-archive", "not-tar"],
)
def test_an_unreadable_archive_rejects_the_flow(archive: bytes, expected: str) -> None:
    outcome = process_flow(FLOW_NAME, archive, settings=SETTINGS, now=NOW)
    assert (outcome.status_code, outcome.integrated, outcome.rejected) == ("93", (), ())
    assert expected in (outcome.problem or "")
    [(name, data)] = outcome.files
    assert name == CR_NAME
    [status] = parse_report(data).flow_statuses
    [line] = status.errors
    assert (status.code, status.flow_id, line.nature, line.code, line.invoice_number) == (
        "93",
        FLOW_ID,
        "FLUX",
        "ARCHIVE",
        None,
    )
    assert expected in line.label


def test_an_archive_with_a_directory_member_is_refused() -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("sub")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    outcome = process_flow(FLOW_NAME, gzip.compress(raw.getvalue()), settings=SETTINGS, now=NOW)
    assert outcome.status_code == "93" and "not a regular file" in (outcome.problem or "")


def _hostile_member(kind: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo({"absolute path": "/etc/0002.xml", "climbs out": "in/../../0002.xml"}.get(kind, "0002.xml"))
    info.type = {"symbolic link": tarfile.SYMTYPE, "hard link": tarfile.LNKTYPE, "device": tarfile.CHRTYPE,
                 "fifo": tarfile.FIFOTYPE}.get(kind, tarfile.REGTYPE)
    info.linkname = "/etc/passwd" if kind == "symbolic link" else ("0001.xml" if kind == "hard link" else "")
    return info


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("absolute path", "'/etc/0002.xml' has a path that is absolute or leaves the archive"),
        ("climbs out", "'in/../../0002.xml' has a path that is absolute or leaves the archive"),
        ("symbolic link", "'0002.xml' is a link (to '/etc/passwd'), not a regular file"),
        ("hard link", "'0002.xml' is a link (to '0001.xml'), not a regular file"),
        ("device", "'0002.xml' is not a regular file"),
        ("fifo", "'0002.xml' is not a regular file"),
    ],
)
def test_a_hostile_archive_is_refused_whole(kind: str, expected: str) -> None:
    """A good invoice first, then a member that points outside or is not a file: nothing
    of the flow is integrated."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        good = ubl("F-1")
        info = tarfile.TarInfo("0001.xml")
        info.size = len(good)
        tar.addfile(info, io.BytesIO(good))
        hostile = _hostile_member(kind)
        hostile.size = len(good) if hostile.isreg() else 0
        tar.addfile(hostile, io.BytesIO(good) if hostile.isreg() else None)
    outcome = process_flow(FLOW_NAME, gzip.compress(raw.getvalue()), settings=SETTINGS, now=NOW)
    assert (outcome.status_code, outcome.integrated, outcome.rejected) == ("93", (), ())
    assert expected in (outcome.problem or "")


def _gzip_of_zeros(head: bytes, zeros: int) -> bytes:
    """``head`` then ``zeros`` zero bytes, gzip-compressed as a stream (never held unpacked)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    chunk = bytes(1 << 20)
    parts = [packer.compress(head)]
    parts += [packer.compress(chunk) for _ in range(zeros // len(chunk))]
    return b"".join([*parts, packer.flush()])


def test_a_gzip_bomb_is_refused_after_unpacking_its_limit_and_no_more() -> None:
    limit = 1 << 20
    bomb = _gzip_of_zeros(b"", 64 << 20)  # 64 MiB of zeros in 64 KiB
    stream = GunzipStream(io.BytesIO(bomb), limit=limit)
    with pytest.raises(ArchiveRefused, match=f"exceeds {limit} bytes once unpacked"):
        stream.drain()
    assert limit < stream.unpacked <= limit + CHUNK

    # As the sandbox meets them: one member of 64 MiB of zeros (refused from its header,
    # before its bytes), and zeros after a good archive's end (refused by the flow's limit).
    member = tarfile.TarInfo("0001.xml")
    member.size = 64 << 20
    one_member = _gzip_of_zeros(member.tobuf(tarfile.USTAR_FORMAT), 64 << 20)
    padded = io.BytesIO()
    with tarfile.open(fileobj=padded, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        good = ubl("F-1")
        member = tarfile.TarInfo("0001.xml")
        member.size = len(good)
        tar.addfile(member, io.BytesIO(good))
    trailing = _gzip_of_zeros(padded.getvalue(), 64 << 20)
    settings = SandboxSettings(max_member_bytes=limit, max_flow_bytes=limit)
    tracemalloc.start()
    try:
        refused = [process_flow(FLOW_NAME, bomb, settings=settings, now=NOW) for bomb in (one_member, trailing)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [outcome.status_code for outcome in refused] == ["93", "93"]
    assert f"'0001.xml' exceeds {limit} bytes" in (refused[0].problem or "")
    assert f"exceeds {limit + TAR_OVERHEAD_BYTES} bytes once unpacked" in (refused[1].problem or "")
    assert peak < 8 << 20  # what was unpacked is never held: far below the 64 MiB


@pytest.mark.parametrize(
    ("name", "code", "report_name"),
    [
        ("invoices.tar.gz", "NOM_FICHIER", "CSO0000A_AAA123_invoices.xml"),
        (f"FSO1100A_AAA123_{FLOW_ID}.zip", "NOM_FICHIER", f"CSO1100A_AAA123_{FLOW_ID}.zip.xml"),
        (f"FSO1100A_BBB999_{FLOW_ID}.tar.gz", "PARTENAIRE", CR_NAME),
        (f"FSO1117A_AAA123_{FLOW_ID}.tar.gz", "INTERFACE", f"CSO1117A_AAA123_{FLOW_ID}.xml"),
    ],
)
def test_a_badly_named_flow_is_refused(name: str, code: str, report_name: str) -> None:
    outcome = process_flow(name, flow(ubl("F-1")), settings=SETTINGS, now=NOW)
    assert outcome.status_code == "93"
    [(written, data)] = outcome.files
    assert written == report_name
    [line] = parse_report(data).flow_statuses[0].errors
    assert (line.nature, line.code) == ("FLUX", code)


def test_settings_refuse_a_lifecycle_code_outside_the_format() -> None:
    with pytest.raises(ValueError, match="'99'"):
        SandboxSettings(lifecycle=("01", "99"))


def test_an_empty_lifecycle_sends_only_the_report() -> None:
    outcome = process_flow(FLOW_NAME, flow(ubl("F-1")), settings=SandboxSettings(lifecycle=()), now=NOW)
    assert outcome.status_code == "90" and [n for n, _ in outcome.files] == [CR_NAME]


# -- the runner ----------------------------------------------------------------------


def flow_name(counter: int) -> str:
    return f"FSO1100A_AAA123_AAA1231100{counter:015d}.tar.gz"


def test_runner_answers_a_deposit_and_ignores_unfinished_uploads(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    (inbox / flow_name(1)).write_bytes(flow(ubl("F-1"), ubl("F-2", UNLISTED_BUYER_SIRET)))
    unfinished = [f".{flow_name(2)}", f"{flow_name(3)}.part", f"{flow_name(4)}.tmp"]
    for name in unfinished:
        (inbox / name).write_bytes(b"half a file")

    [outcome] = run_sandbox_once(root, SETTINGS, FixedClock(NOW))

    assert outcome.status_code == "96"
    flow_id = flow_name(1).split("_")[2].removesuffix(".tar.gz")
    outbox = sorted(p.name for p in (root / "outbox").iterdir())
    assert outbox == [f"CSO1100A_AAA123_{flow_id}.xml", f"FEN1201A_AAA123_{flow_id}.xml"]
    for name in outbox:
        assert parse_report((root / "outbox" / name).read_bytes()).envelope_flow_id == flow_id
    assert sorted(p.name for p in inbox.iterdir()) == sorted(unfinished)
    assert [p.name for p in (root / "received").iterdir()] == [flow_name(1)]
    state = json.loads((root / "state.json").read_text())
    assert state["integrated"] == [[SUPPLIER, "F-1"]]


def test_runner_rejects_the_same_invoices_sent_again_as_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    clock = FixedClock(NOW)
    (root / "inbox").mkdir(parents=True)
    invoices = flow(ubl("F-1"), ubl("F-2", BUYERS[1]))
    (root / "inbox" / flow_name(1)).write_bytes(invoices)
    [first] = run_sandbox_once(root, SETTINGS, clock)
    assert first.status_code == "90"

    clock.advance(timedelta(minutes=5))
    (root / "inbox" / flow_name(2)).write_bytes(invoices)
    (root / "inbox" / flow_name(1)).write_bytes(invoices)  # the very same file, deposited again
    second, third = run_sandbox_once(root, SETTINGS, clock)

    for outcome in (second, third):
        assert (outcome.status_code, outcome.integrated) == ("93", ())
        assert [(r.invoice_number, r.code) for r in outcome.rejected] == [("F-1", "DOUBLON"), ("F-2", "DOUBLON")]
    report = root / "outbox" / f"CSO1100A_AAA123_{second.flow_id}.xml"
    [status] = parse_report(report.read_bytes()).flow_statuses
    assert [line.invoice_number for line in status.errors] == ["F-1", "F-2"]
    assert sorted(p.name for p in (root / "received").iterdir()) == sorted(
        [flow_name(1), f"{flow_name(1)}.1", flow_name(2)]
    )
    assert list((root / "inbox").iterdir()) == []


def test_runner_creates_its_layout_and_refuses_a_corrupt_state(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    assert run_sandbox_once(root, SETTINGS, FixedClock(NOW)) == []
    assert all((root / name).is_dir() for name in ("inbox", "outbox", "received"))

    (root / "state.json").write_text("{not json")
    with pytest.raises(GatewayError, match="state.json"):
        run_sandbox_once(root, SETTINGS, FixedClock(NOW))
