"""A deposited tar.gz flow, read as a stream within limits: never extracted to disk,
never unpacked whole into memory.

A flow is untrusted bytes. Its whole structure is checked before any member is handed
out, so that a hostile archive is refused whole: a member whose path is absolute or
climbs out with ``..``, a link, a device or anything but a regular file, more members
or bytes than the limits, a truncated or padded gzip stream. Unpacked bytes are
counted as they come (``GunzipStream``): a gzip bomb is refused after at most the
limit plus one chunk, whatever it would unpack to. The members are then read again,
one at a time, so that memory holds one member, not the flow.

Pure apart from reading the stream it is given.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

#: Unpacked bytes produced per read: what a refused gzip bomb costs at most beyond its limit.
CHUNK = 64 * 1024
#: Tar headers and padding on top of the members' own bytes.
TAR_OVERHEAD_BYTES = 16 * 1024 * 1024
#: An extension header (pax, GNU long name) is read whole by ``tarfile``: a few names'
#: worth is all a flow needs.
MAX_EXTENSION_HEADER_BYTES = 64 * 1024
_EXTENSION_TYPES = frozenset(
    {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK}
)


class ArchiveRefused(Exception):
    """The archive is refused as a whole; ``label`` says why, for the sender."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.label = label


@dataclass(frozen=True)
class ArchiveLimits:
    """How big a flow may be (DOMAIN.md §1: 500 invoices, 1 GB; 120 MB per file)."""

    max_members: int = 500
    max_member_bytes: int = 120 * 1024 * 1024
    max_total_bytes: int = 1024 * 1024 * 1024

    @property
    def max_unpacked_bytes(self) -> int:
        """The most the gzip stream may unpack to: the members plus the tar's own bytes."""
        return self.max_total_bytes + TAR_OVERHEAD_BYTES


class GunzipStream(io.RawIOBase):
    """The content of one gzip stream, unpacked ``chunk`` bytes at a time, and refused
    (``ArchiveRefused``) as soon as it passes ``limit`` bytes: ``unpacked`` never
    exceeds ``limit + chunk``.

    The stream is checked to its end: a truncated one, or bytes after it, is an
    ``EOFError`` (Chorus Pro would not take a flow whose lost tail held only padding).
    """

    def __init__(self, source: BinaryIO, *, limit: int, chunk: int = CHUNK) -> None:
        super().__init__()
        self._source = source
        self._limit = limit
        self._chunk = chunk
        self._decompressor = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)  # gzip framing only
        #: Bytes unpacked so far.
        self.unpacked = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._chunk)
        data = b""
        while not data:
            if self._decompressor.eof:
                if self._decompressor.unused_data or self._source.read(1):
                    raise EOFError("unexpected bytes after the end of the gzip stream")
                return 0
            packed = self._decompressor.unconsumed_tail or self._source.read(self._chunk)
            if not packed:
                raise EOFError("the gzip stream is truncated or empty")
            data = self._decompressor.decompress(packed, wanted)
        self.unpacked += len(data)
        if self.unpacked > self._limit:
            raise ArchiveRefused(f"the flow exceeds {self._limit} bytes once unpacked")
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read to the end of the stream, keeping nothing (what follows the tar's end
        marker must be unpacked too, to check the stream's length and CRC)."""
        sink = bytearray(self._chunk)
        while self.readinto(memoryview(sink)):
            pass


class _GuardedTarInfo(tarfile.TarInfo):
    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> _GuardedTarInfo:  # type: ignore[override]
        info = super().frombuf(buf, encoding, errors)
        # tarfile reads an extension header's content in one piece, before any check of ours.
        if info.type in _EXTENSION_TYPES and info.size > MAX_EXTENSION_HEADER_BYTES:
            raise ArchiveRefused(f"an extension header of {info.size} bytes (more than {MAX_EXTENSION_HEADER_BYTES})")
        return info


def check_member(info: tarfile.TarInfo, count: int, total: int, limits: ArchiveLimits) -> None:
    """Refuse the archive for this member: where it points, what it is, how big."""
    name = info.name
    path = PurePosixPath(name)
    if not name or name.startswith("/") or "\\" in name or ".." in path.parts or "\0" in name:
        raise ArchiveRefused(f"archive member {name!r} has a path that is absolute or leaves the archive")
    if info.islnk() or info.issym():
        raise ArchiveRefused(f"archive member {name!r} is a link (to {info.linkname!r}), not a regular file")
    if not info.isreg() or info.issparse():
        raise ArchiveRefused(f"archive member {name!r} is not a regular file")
    if count >= limits.max_members:
        raise ArchiveRefused(f"the flow holds more than {limits.max_members} invoices")
    if info.size > limits.max_member_bytes:
        raise ArchiveRefused(f"archive member {name!r} exceeds {limits.max_member_bytes} bytes")
    if total + info.size > limits.max_total_bytes:
        raise ArchiveRefused(f"the flow exceeds {limits.max_total_bytes} bytes once unpacked")


def read_members(archive: BinaryIO, limits: ArchiveLimits) -> Iterator[tuple[str, bytes]]:
    """The (name, bytes) of each member, in archive order, one at a time.

    ``archive``: the tar.gz, seekable (it is read twice). Raises ``ArchiveRefused``
    before the first member if anything of the archive is refused; ``EOFError``,
    ``tarfile.TarError``, ``zlib.error`` or ``OSError`` for an unreadable one.
    """
    count = _check_structure(archive, limits)
    if not count:
        raise ArchiveRefused("the archive holds no file; an empty flow is refused")
    return _members(archive, limits)


def _check_structure(archive: BinaryIO, limits: ArchiveLimits) -> int:
    """Walk every header without keeping a member's bytes; the number of members."""
    archive.seek(0)
    stream = GunzipStream(archive, limit=limits.max_unpacked_bytes)
    count = total = 0
    with tarfile.open(fileobj=stream, mode="r|", tarinfo=_GuardedTarInfo) as tar:  # type: ignore[call-overload]
        for info in tar:
            check_member(info, count, total, limits)
            count += 1
            total += info.size
    stream.drain()
    return count


def _members(archive: BinaryIO, limits: ArchiveLimits) -> Iterator[tuple[str, bytes]]:
    archive.seek(0)
    stream = GunzipStream(archive, limit=limits.max_unpacked_bytes)
    with tarfile.open(fileobj=stream, mode="r|", tarinfo=_GuardedTarInfo) as tar:  # type: ignore[call-overload]
        for info in tar:
            handle = tar.extractfile(info)
            assert handle is not None  # regular files only: checked by _check_structure
            yield info.name, handle.read()
