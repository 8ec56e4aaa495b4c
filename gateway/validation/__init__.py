"""Validation stage: parsing, XSD, Schematron rule sets and Chorus Pro rules over one
mapped invoice.

Pure: bytes in, findings out. It never decides what happens to the invoice; the
pipeline does. A layer that cannot run raises ``ValidatorError``: it never reads as valid.
"""

from __future__ import annotations

from gateway.validation.findings import Finding, Severity, is_valid
from gateway.validation.invoice import Validation, validate_document, validate_invoice

__all__ = ["Finding", "Severity", "Validation", "is_valid", "validate_document", "validate_invoice"]
