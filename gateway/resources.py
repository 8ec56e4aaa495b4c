"""Where the project's own XSLT mappings and XSDs are found at run time.

A source checkout or editable install reads them beside the package; a wheel install
reads them from ``<prefix>/share/chorus-gateway``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.errors import ConfigError

_CHECKOUT = Path(__file__).resolve().parent.parent
_INSTALLED = Path(sys.prefix) / "share" / "chorus-gateway"


def _find(kind: str, name: str) -> Path:
    for base in (_CHECKOUT / kind, _INSTALLED / kind):
        candidate = base / name
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{kind}/{name} is missing from the installation; reinstall chorus-gateway")


def mapping_path(name: str) -> Path:
    """Path of an XSLT stylesheet shipped in ``mappings/``."""
    return _find("mappings", name)


def schema_path(name: str) -> Path:
    """Path of an XSD written by the project, shipped in ``schemas/``."""
    return _find("schemas", name)
