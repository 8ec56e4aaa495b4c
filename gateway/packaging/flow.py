"""Flow ids, transport file names and the tar.gz lot."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
from collections.abc import Sequence
from typing import TypeVar

from gateway.errors import PackagingError

T = TypeVar("T")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def make_flow_id(partner_code: str, interface_code: str, counter: int) -> str:
    """AIFE's recommended flow id: partner code, the interface's 4 digits, a 15-digit counter.

    >>> make_flow_id("AAA123", "FSO1100A", 1)
    'AAA1231100000000000000001'
    """
    digits = re.sub(r"\D", "", interface_code)[:4].rjust(4, "0")
    if counter >= 10**15:
        raise PackagingError(f"flow counter for {partner_code} exhausted the 15 digits")
    return f"{partner_code}{digits}{counter:015d}"


def flow_file_name(template: str, *, interface: str, partner_code: str, flow_id: str, partner: str) -> str:
    """The transport file name from the partner's template.

    >>> flow_file_name("{interface}_{partner_code}_{flow_id}.tar.gz", interface="FSO1100A",
    ...                partner_code="AAA123", flow_id="AAA1231100000000000000001", partner="x")
    'FSO1100A_AAA123_AAA1231100000000000000001.tar.gz'
    """
    return template.format(interface=interface, partner_code=partner_code, flow_id=flow_id, partner=partner)


def member_name(position: int, invoice_number: str) -> str:
    """The name of one invoice file inside a flow: unique, sortable, filesystem-safe.

    >>> member_name(3, "F 2026/001")
    '0003_F_2026_001.xml'
    """
    return f"{position:04d}_{_UNSAFE.sub('_', invoice_number)}.xml"


def build_archive(members: Sequence[tuple[str, bytes]]) -> bytes:
    """A tar.gz of the members, byte-for-byte reproducible from the same members.

    Times, owners and modes are fixed so that the archive rebuilt after a crash has
    the sha256 recorded when the flow was first packed.
    """
    if not members:
        raise PackagingError("an empty flow is refused by Chorus Pro; nothing to pack")
    out = io.BytesIO()
    # The tar is compressed as it is written, never held whole: deflate gives the same
    # bytes however its input is cut, so the sha256 is that of earlier versions.
    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar,
    ):
        for name, data in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


#: How a flow is written: a tar.gz lot of XML files, or one XML file sent as it is.
LAYOUTS = ("tar.gz", "xml")


def pack_flow(layout: str, members: Sequence[tuple[str, bytes]]) -> bytes:
    """The bytes of a flow: reproducible from the same members, whatever the layout.

    >>> pack_flow("xml", [("0001_F-1.xml", b"<Invoice/>")])
    b'<Invoice/>'
    """
    if layout == "xml":
        if len(members) != 1:
            raise PackagingError(f"an XML flow holds exactly one invoice, not {len(members)}")
        return members[0][1]
    return build_archive(members)


def plan_flows(items: Sequence[tuple[T, int]], *, max_invoices: int, max_bytes: int) -> list[list[T]]:
    """Split (item, size) pairs, in order, into flows within the partner's limits.

    >>> plan_flows([("a", 5), ("b", 5), ("c", 5)], max_invoices=2, max_bytes=100)
    [['a', 'b'], ['c']]
    >>> plan_flows([("a", 60), ("b", 60)], max_invoices=10, max_bytes=100)
    [['a'], ['b']]
    """
    flows: list[list[T]] = []
    current: list[T] = []
    size = 0
    for item, item_size in items:
        if item_size > max_bytes:
            raise PackagingError(f"one invoice of {item_size} bytes exceeds the flow limit of {max_bytes}")
        if current and (len(current) >= max_invoices or size + item_size > max_bytes):
            flows.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        flows.append(current)
    return flows
