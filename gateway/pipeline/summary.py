"""What one pass did."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class PassSummary:
    """What one pass did, for the CLI's table and for tests."""

    files: Counter[str] = field(default_factory=Counter)
    invoices: Counter[str] = field(default_factory=Counter)
    flows_packed: list[str] = field(default_factory=list)
    flows_sent: list[str] = field(default_factory=list)
    flows_failed: list[str] = field(default_factory=list)
    reports: Counter[str] = field(default_factory=Counter)
    #: Flows found overdue in this pass (each alerted once).
    reports_overdue: list[str] = field(default_factory=list)
