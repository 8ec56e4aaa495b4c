"""What a validation layer reports about one invoice."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Severity(enum.StrEnum):
    FATAL = "fatal"
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One problem found by one layer.

    ``rule_id`` is spelled as the rule set names it (``BR-CO-15``) or, for the
    project's own checks, ``XSD`` / ``CHORUS-…``; ``location`` is an XPath or a line.
    """

    layer: str
    rule_id: str
    severity: Severity
    location: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {
            "layer": self.layer,
            "rule_id": self.rule_id,
            "severity": self.severity.value,
            "location": self.location,
            "message": self.message,
        }

    def __str__(self) -> str:
        return f"[{self.layer} {self.rule_id}] {self.location}: {self.message}"


def is_valid(findings: Iterable[Finding]) -> bool:
    """An invoice is valid when no finding is fatal or an error.

    >>> is_valid([Finding("chorus", "X", Severity.WARNING, "/", "just so you know")])
    True
    """
    return not any(f.severity in (Severity.FATAL, Severity.ERROR) for f in findings)
