"""gateway.xml.safe: the one hardened parse of outside XML, and the XSD check of a tree."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from lxml import etree

from gateway.errors import ConfigError
from gateway.xml import safe

_XXE = (b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        b"<r>&x;</r>")


def test_a_document_is_parsed_when_it_is_plain_xml() -> None:
    tree = safe.parse(b"<r><a>1</a></r>", limit=100)
    assert tree.getroot().findtext("a") == "1"


def test_a_doctype_is_refused_with_its_line_and_no_entity_is_read() -> None:
    with pytest.raises(safe.HasDoctype) as refused:
        safe.parse(_XXE, limit=1000, what="report")
    assert refused.value.line == 2
    assert refused.value.message == "line 2: a DOCTYPE is not allowed in a report (DTDs and entities are refused)"
    with pytest.raises(safe.HasDoctype):
        safe.root_tag(_XXE, limit=1000)
    # Read as a stream, the entity is never expanded either: its text is not in the tree.
    events = safe.iterparse(io.BytesIO(_XXE), events=("end",))
    root = next(element for _event, element in events if element.tag == "r")
    assert "root:" not in (root.text or "")


def test_a_document_over_the_limit_is_not_parsed() -> None:
    with pytest.raises(safe.TooLarge, match="the report is 30 bytes, over the 10-byte limit for a report"):
        safe.parse(b"<r>" + b"x" * 23 + b"</r>", limit=10, what="report")


def test_what_is_not_well_formed_names_its_line() -> None:
    with pytest.raises(safe.NotWellFormed) as refused:
        safe.parse(b"<r>\n\n<a></r>", limit=100)
    assert refused.value.line == 3 and refused.value.message.startswith("not well-formed XML: line 3: ")
    with pytest.raises(safe.NotWellFormed, match="line 1"):
        safe.root_tag(b"", limit=100)


def test_a_huge_text_node_needs_huge_tree_which_only_a_bounded_parse_gives() -> None:
    big = b"<r>" + b"A" * (11 * 1024 * 1024) + b"</r>"
    with pytest.raises(safe.NotWellFormed):
        safe.parse(big, limit=len(big))
    assert len(safe.parse(big, limit=len(big), huge_tree=True).getroot().text) == 11 * 1024 * 1024


def test_assert_valid_names_the_first_lines_and_counts_the_rest(tmp_path: Path) -> None:
    xsd = tmp_path / "r.xsd"
    xsd.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="r"><xs:complexType>'
        '<xs:sequence><xs:element name="n" type="xs:integer" maxOccurs="unbounded"/></xs:sequence>'
        "</xs:complexType></xs:element></xs:schema>",
        encoding="utf-8",
    )
    safe.assert_valid(etree.fromstring(b"<r><n>1</n></r>"), xsd, "R")
    bad = etree.fromstring(b"<r>\n" + b"".join(b"<n>x</n>\n" for _ in range(5)) + b"</r>")
    with pytest.raises(safe.Invalid) as invalid:
        safe.assert_valid(bad, xsd, "R", tidy=lambda message: message.replace("Element", "élément"))
    message = invalid.value.message
    assert message.startswith("not a valid R document: line 2: élément 'n'")
    assert "line 4:" in message and "line 5:" not in message and message.endswith("(and 2 more)")


def test_a_missing_schema_is_the_installation_s_fault_not_the_document_s(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load"):
        safe.assert_valid(etree.fromstring(b"<r/>"), tmp_path / "absent.xsd", "R")
