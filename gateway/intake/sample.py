"""A sample ERP export for the demo, the tests and the benchmarks.

Deterministic for a given seed. With ``with_errors`` it plants the mistakes an
operator meets first, spread through the file: a supplier SIRET that fails its
checksum, an empty mandatory field and a non-numeric amount (the gateway holds
these back), and a buyer absent from the sandbox's directory of public structures
(Chorus Pro — here the sandbox — rejects it). The returned manifest says what
should become of each invoice.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from stdnum import luhn

from gateway.sandbox.directory import SAMPLE_PUBLIC_STRUCTURES, UNLISTED_BUYER_SIRET

COLUMNS = (
    "invoice_number",
    "issue_date",
    "type_code",
    "currency",
    "due_date",
    "service_code",
    "commitment_number",
    "cadre",
    "supplier_siret",
    "supplier_name",
    "supplier_vat",
    "supplier_street",
    "supplier_city",
    "supplier_postcode",
    "supplier_country",
    "buyer_siret",
    "buyer_name",
    "buyer_country",
    "payment_means",
    "iban",
    "line_id",
    "item_name",
    "quantity",
    "unit_code",
    "unit_price",
    "vat_category",
    "vat_rate",
)

#: An invented supplier: SIREN 404833048, establishment 0002 + Luhn check digit.
SUPPLIER_SIREN = "404833048"
SUPPLIER_SIRET = SUPPLIER_SIREN + "0002" + luhn.calc_check_digit(SUPPLIER_SIREN + "0002")
SUPPLIER_VAT = f"FR{(12 + 3 * (int(SUPPLIER_SIREN) % 97)) % 97:02d}{SUPPLIER_SIREN}"
#: The classic valid French example IBAN.
SUPPLIER_IBAN = "FR7630006000011234567890189"
ISSUE_DATE = date(2026, 11, 2)

_ITEMS = (
    ("Maintenance informatique - forfait mensuel", "C62", ("450.00", "980.00")),
    ("Ramettes papier A4 80 g", "C62", ("3.95", "4.60")),
    ("Prestation de conseil (jour)", "DAY", ("650.00", "1150.00")),
    ("Licence logicielle annuelle", "C62", ("120.00", "2400.00")),
    ("Carburant gazole", "LTR", ("1.612", "1.874")),
    ("Heures de nettoyage", "HUR", ("24.50", "31.00")),
)
_RATES = ("20", "20", "20", "10", "5.5")

FATE_INTEGRATED = "integrated"
FATE_QUARANTINED = "quarantined"
FATE_REJECTED = "rejected"


@dataclass
class SampleExport:
    path: Path
    #: invoice number → what should become of it: integrated, quarantined or rejected.
    expected: dict[str, str] = field(default_factory=dict)
    #: invoice number → the mistake planted in it.
    planted: dict[str, str] = field(default_factory=dict)


def write_sample_export(
    path: Path,
    count: int,
    *,
    seed: int = 1,
    with_errors: bool = True,
    number_prefix: str = "F",
    delimiter: str = ";",
    encoding: str = "utf-8",
) -> SampleExport:
    """Write ``count`` invoices to ``path`` (streamed: any size fits in memory)."""
    rng = random.Random(seed)
    mistakes = _mistake_positions(count) if with_errors else {}
    manifest = SampleExport(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(COLUMNS)
        for index in range(count):
            number = f"{number_prefix}-{ISSUE_DATE.year}-{index + 1:06d}"
            mistake = mistakes.get(index)
            for row in _invoice_rows(rng, index, number, mistake):
                writer.writerow([row.get(column, "") for column in COLUMNS])
            manifest.expected[number] = _fate(mistake)
            if mistake:
                manifest.planted[number] = mistake
    return manifest


def _mistake_positions(count: int) -> dict[int, str]:
    """Spread the four mistakes through the file, one per fifth."""
    kinds = ("bad supplier SIRET", "empty item_name", "non-numeric unit_price", "buyer unknown to Chorus Pro")
    positions: dict[int, str] = {}
    for k, kind in enumerate(kinds, start=1):
        index = count * k // 5
        if index < count and index not in positions:
            positions[index] = kind
    return positions


def _fate(mistake: str | None) -> str:
    if mistake is None:
        return FATE_INTEGRATED
    return FATE_REJECTED if mistake.startswith("buyer") else FATE_QUARANTINED


def _invoice_rows(rng: random.Random, index: int, number: str, mistake: str | None) -> list[dict[str, str]]:
    buyer = SAMPLE_PUBLIC_STRUCTURES[index % len(SAMPLE_PUBLIC_STRUCTURES)]
    issue = ISSUE_DATE - timedelta(days=index % 28)
    header = {
        "invoice_number": number,
        "issue_date": issue.isoformat(),
        "type_code": "380",
        "currency": "EUR",
        "due_date": (issue + timedelta(days=30)).isoformat(),
        "service_code": "",
        "commitment_number": f"EJ{1000000 + index}" if index % 3 == 0 else "",
        "cadre": "A1",
        "supplier_siret": SUPPLIER_SIRET,
        "supplier_name": "Fournitures Exemplaires SAS",
        "supplier_vat": SUPPLIER_VAT,
        "supplier_street": "12 rue de l'Exemple",
        "supplier_city": "Lyon",
        "supplier_postcode": "69002",
        "supplier_country": "FR",
        "buyer_siret": buyer.siret,
        "buyer_name": buyer.name,
        "buyer_country": "FR",
        "payment_means": "30",
        "iban": SUPPLIER_IBAN,
    }
    if mistake == "bad supplier SIRET":
        header["supplier_siret"] = SUPPLIER_SIRET[:-1] + str((int(SUPPLIER_SIRET[-1]) + 1) % 10)
    elif mistake == "buyer unknown to Chorus Pro":
        header["buyer_siret"] = UNLISTED_BUYER_SIRET
        header["buyer_name"] = "Établissement public absent de l'annuaire"
    rows = []
    for position in range(1, rng.randint(1, 3) + 1):
        name, unit, (low, high) = rng.choice(_ITEMS)
        price = round(rng.uniform(float(low), float(high)), 3 if unit == "LTR" else 2)
        rows.append(
            {
                **header,
                "line_id": str(position),
                "item_name": name,
                "quantity": str(rng.randint(1, 40)),
                "unit_code": unit,
                "unit_price": f"{price:.3f}" if unit == "LTR" else f"{price:.2f}",
                "vat_category": "S",
                "vat_rate": rng.choice(_RATES),
            }
        )
    if mistake == "empty item_name":
        rows[-1]["item_name"] = ""
    elif mistake == "non-numeric unit_price":
        rows[0]["unit_price"] = rows[0]["unit_price"].replace("0", "O", 1) if "0" in rows[0]["unit_price"] else "12.5O"
    return rows
