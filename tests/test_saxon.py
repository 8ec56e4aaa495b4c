"""gateway.xml.saxon: the one Saxon processor, shared by mapping, intake and validation."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gateway.errors import MappingError
from gateway.xml import saxon

_IDENTITY = """<xsl:stylesheet version="3.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:param name="greeting" select="'none'"/>
  <xsl:template match="/"><out greeting="{$greeting}"><xsl:copy-of select="/*"/></out></xsl:template>
</xsl:stylesheet>
"""


def test_every_user_holds_the_same_processor_alone() -> None:
    with saxon.exclusive() as first:
        pass
    with saxon.exclusive() as second:
        assert second is first
        waited = threading.Event()

        def other() -> None:
            with saxon.exclusive():
                waited.set()

        thread = threading.Thread(target=other)
        thread.start()
        assert not waited.wait(0.2), "a second user got the processor while it was held"
    thread.join(5)
    assert waited.is_set()


def test_a_stylesheet_is_compiled_once_and_runs_with_parameters(tmp_path: Path) -> None:
    stylesheet = tmp_path / "greet.xsl"
    stylesheet.write_text(_IDENTITY, encoding="utf-8")
    assert saxon.compile_stylesheet(stylesheet) is saxon.compile_stylesheet(stylesheet)
    result = saxon.transform(stylesheet, b"<in/>", {"greeting": "bonjour"})
    assert b'greeting="bonjour"' in result and b"<in/>" in result


def test_a_stylesheet_that_does_not_compile_is_a_mapping_error_naming_it(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xsl"
    broken.write_text("<xsl:stylesheet version='3.0' xmlns:xsl='http://www.w3.org/1999/XSL/Transform'>",
                      encoding="utf-8")
    with pytest.raises(MappingError, match="broken.xsl does not compile"):
        saxon.check_stylesheet(broken)
