"""Amounts EN 16931 derives from the lines: line net amounts, VAT breakdown, totals.

Computed in Python to the cent with the rules BR-CO-10…16 check, once, so that no
stylesheet does arithmetic and intake can compare an ERP's own totals with them.
Pure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

_CENT = Decimal("0.01")


class PricedLine(Protocol):
    """What the computation needs of an invoice line."""

    @property
    def quantity(self) -> Decimal: ...
    @property
    def unit_price(self) -> Decimal: ...
    @property
    def vat_category(self) -> str: ...
    @property
    def vat_rate(self) -> Decimal: ...
    @property
    def vat_exemption_reason(self) -> str | None: ...
    @property
    def vat_exemption_code(self) -> str | None: ...


def cents(value: Decimal) -> Decimal:
    """Round half up to two decimals, as EN 16931 amounts are written.

    >>> cents(Decimal("2.675")), cents(Decimal("-1.005"))
    (Decimal('2.68'), Decimal('-1.01'))
    """
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class VatBreakdown:
    category: str
    rate: Decimal
    taxable_amount: Decimal
    tax_amount: Decimal
    exemption_reason: str | None = None  # BT-120
    exemption_code: str | None = None  # BT-121


@dataclass(frozen=True)
class Totals:
    sum_of_line_net: Decimal  # BT-106
    total_without_vat: Decimal  # BT-109
    total_vat: Decimal  # BT-110
    total_with_vat: Decimal  # BT-112
    amount_due: Decimal  # BT-115
    breakdown: tuple[VatBreakdown, ...]  # BG-23


def line_net_amount(line: PricedLine) -> Decimal:
    """BT-131 = quantity × net price, rounded to the cent."""
    return cents(line.quantity * line.unit_price)


def compute_totals(lines: Iterable[PricedLine], erp_vat: Iterable[tuple[str, Decimal, Decimal]] = ()) -> Totals:
    """VAT breakdown per (category, rate) and the document totals (BR-CO-10…16).

    A breakdown's exemption reason is its lines' (intake makes sure they agree).
    ``erp_vat``: (category, rate, VAT) of breakdowns whose VAT is the ERP's rather than
    recomputed; intake has checked that rounding per line explains the difference
    (BR-CO-17), and the totals follow from the breakdowns (BR-CO-14, BR-CO-15).
    """
    stated = {(category, rate.normalize()): amount for category, rate, amount in erp_vat}
    taxable: dict[tuple[str, Decimal], Decimal] = defaultdict(Decimal)
    reasons: dict[tuple[str, Decimal], tuple[str | None, str | None]] = {}
    net = Decimal("0.00")
    for line in lines:
        key = (line.vat_category, line.vat_rate.normalize())
        amount = line_net_amount(line)
        taxable[key] += amount
        net += amount
        reasons.setdefault(key, (line.vat_exemption_reason, line.vat_exemption_code))
    breakdown = tuple(
        VatBreakdown(category, rate, amount, stated.get((category, rate), cents(amount * rate / 100)),
                     *reasons[(category, rate)])
        for (category, rate), amount in sorted(taxable.items(), key=lambda item: (item[0][0], item[0][1]))
    )
    vat = sum((b.tax_amount for b in breakdown), Decimal("0.00"))
    return Totals(net, net, vat, net + vat, net + vat, breakdown)
