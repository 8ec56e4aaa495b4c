"""The one hardened way the gateway reads XML it did not write, and the XSD check of a tree.

Every XML that comes from outside (an ERP export, an invoice given to ``gateway
validate``, a report from Chorus Pro, the directory of public structures, the CII
embedded in an ERP's PDF) is read with the same options: no DTD loaded, no entity
expanded, nothing fetched from the network, and a DOCTYPE refused outright (it could
only declare entities, which could read local files). libxml2's limits on depth and
text size stay on, except with ``huge_tree``, which lifts the 10 MB limit on one text
node (the base64 of an attachment Chorus Pro takes) and is allowed only where the
input is bounded beforehand: ``parse`` checks ``limit`` first, other callers check the
size themselves. Nothing can grow beyond the bytes given, since there is no DTD.

Problems are raised as ``UnsafeXml`` (one subclass per kind, with the line), which
each stage turns into its own error or finding with its own words.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lxml import etree

from gateway.errors import ConfigError, GatewayError

#: Options of every parse of outside XML: no DTD, no entity expansion, no network.
OPTIONS: dict[str, bool] = {"resolve_entities": False, "no_network": True, "load_dtd": False}
#: Schema errors quoted in ``Invalid``; the rest are counted.
MAX_SCHEMA_ERRORS = 3


class UnsafeXml(GatewayError):
    """XML the gateway does not read."""

    def __init__(self, message: str, *, line: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        #: Where the problem is (1 for a problem of the whole document), when known.
        self.line = line
        #: The problem without the line, as libxml2 or the check puts it.
        self.reason = reason or message


class TooLarge(UnsafeXml):
    """The document is over the size limit; nothing of it was parsed."""


class NotWellFormed(UnsafeXml):
    """The document is not well-formed XML."""


class HasDoctype(UnsafeXml):
    """The document carries a DOCTYPE (DTDs and entities are refused)."""


class Invalid(GatewayError):
    """The document is not valid against its XSD."""


def parser(*, huge_tree: bool = False) -> etree.XMLParser:
    """A new hardened parser: lxml parsers keep state and must not be shared across threads."""
    return etree.XMLParser(dtd_validation=False, huge_tree=huge_tree, **OPTIONS)


def iterparse(source: str | io.BytesIO | Path, *, huge_tree: bool = False, **options: Any) -> etree.iterparse:
    """``etree.iterparse`` with the hardened options (``options``: events, tag, schema…).

    ``huge_tree`` only for a source whose size the caller bounded. The caller refuses a
    DOCTYPE once the root is known (``refuse_doctype``)."""
    return etree.iterparse(str(source) if isinstance(source, Path) else source, huge_tree=huge_tree,
                           **OPTIONS, **options)


def check_size(size: int, limit: int, what: str = "document") -> None:
    """``TooLarge`` when ``size`` bytes are over ``limit``."""
    if size > limit:
        raise TooLarge(f"the {what} is {size} bytes, over the {limit}-byte limit for a {what}",
                       reason=f"the {what} has {size} bytes; the limit is {limit}")


def parse(data: bytes, *, limit: int, what: str = "document", huge_tree: bool = False) -> etree._ElementTree:
    """The tree of ``data`` read with the hardened options, after checking its size.

    Raises ``TooLarge``, ``NotWellFormed`` or ``HasDoctype``, each naming the line.
    """
    check_size(len(data), limit, what)
    try:
        root = etree.fromstring(data, parser(huge_tree=huge_tree))
    except etree.XMLSyntaxError as exc:
        raise not_well_formed(exc) from None
    tree = root.getroottree()
    refuse_doctype(tree, data, what)
    return tree


def root_tag(data: bytes, *, limit: int, what: str = "document") -> str:
    """The Clark name of the root element, reading no further than its start tag.

    Raises as ``parse`` does."""
    check_size(len(data), limit, what)
    events = iterparse(io.BytesIO(data), events=("start",))
    try:
        _event, root = next(events)
    except etree.XMLSyntaxError as exc:
        raise not_well_formed(exc) from None
    refuse_doctype(root.getroottree(), data, what)
    return str(root.tag)


def not_well_formed(error: etree.XMLSyntaxError) -> NotWellFormed:
    """``NotWellFormed`` for what libxml2 said (an empty document is on line 1)."""
    line = max(error.lineno or 0, 1)
    return NotWellFormed(f"not well-formed XML: line {line}: {error.msg}", line=line, reason=error.msg)


def refuse_doctype(tree: etree._ElementTree, data: bytes | None = None, what: str = "document") -> None:
    """``HasDoctype`` when ``tree`` carries one, with its line in ``data`` when given."""
    if not tree.docinfo.doctype:
        return
    line = 1
    if data is not None and b"<!DOCTYPE" in data:
        line = data[: data.find(b"<!DOCTYPE")].count(b"\n") + 1
    raise HasDoctype(f"line {line}: a DOCTYPE is not allowed in a {what} (DTDs and entities are refused)",
                     line=line, reason="a DOCTYPE is not allowed")


@functools.cache
def schema(path: Path) -> etree.XMLSchema:
    """One of the gateway's own XSDs, loaded once per process; ``ConfigError`` if it cannot
    be (the installation is broken: not the document's fault)."""
    try:
        return etree.XMLSchema(etree.parse(str(path)))
    except (OSError, etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise ConfigError(f"cannot load {path}: {exc}") from exc


def assert_valid(
    root: etree._Element, xsd: Path, what: str, tidy: Callable[[str], str] = lambda message: message
) -> None:
    """``Invalid`` naming the first lines at fault when ``root`` is not valid against ``xsd``.

    ``tidy`` rewrites each libxml2 message (e.g. Clark names into prefixes)."""
    try:
        # assertValid keeps the errors on the exception: no shared error_log to race on.
        schema(xsd).assertValid(root)
    except etree.DocumentInvalid as exc:
        errors = list(exc.error_log)
        shown = "; ".join(f"line {e.line}: {tidy(e.message)}" for e in errors[:MAX_SCHEMA_ERRORS])
        more = f" (and {len(errors) - MAX_SCHEMA_ERRORS} more)" if len(errors) > MAX_SCHEMA_ERRORS else ""
        raise Invalid(f"not a valid {what} document: {shown or exc}{more}") from exc
