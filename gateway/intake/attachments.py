"""Documents sent with an invoice (BG-24): where they are read from, within Chorus Pro's
limits on them (``gateway.invoice``, DOMAIN.md §1). Reading is the one side effect;
``records`` reports the problems against the export's field.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from gateway.invoice import ATTACHMENT_TYPES, MAX_ATTACHMENT_BYTES, MAX_ATTACHMENT_NAME, Attachment

#: Separates the file names of the ``attachments`` field.
ATTACHMENT_SEPARATOR = "|"


def default_attachment_dir(export: Path) -> Path:
    """Where an export's attachments are by default: ``attachments/`` beside it.

    A subdirectory, so that a watched directory never takes a PDF for an export.
    """
    return export.parent / "attachments"


def read_attachment(directory: Path | None, name: str, role: str) -> Attachment | str:
    """The attachment ``name`` of ``directory``, or what is wrong with it (a phrase that
    follows "attachment 'NAME' ")."""
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if "/" in name or "\\" in name or name in (".", ".."):
        return "must be a plain file name, without a directory"
    if len(name) > MAX_ATTACHMENT_NAME:
        return f"is {len(name)} characters long; Chorus Pro takes at most {MAX_ATTACHMENT_NAME}"
    if extension not in ATTACHMENT_TYPES:
        return f"has no accepted extension ({', '.join(sorted(ATTACHMENT_TYPES))})"
    if role == "invoice" and extension != "pdf":
        return "must be a PDF"
    if directory is None:
        return "cannot be read: this input has no attachment directory"
    try:
        folder = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return f"is not in {directory}"
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return f"cannot be read: {directory} is a symbolic link or not a directory; {_REAL_FILES}"
        return f"cannot be read from {directory}: {exc.strerror}"
    try:
        return _read(folder, directory, name, ATTACHMENT_TYPES[extension], role)
    finally:
        os.close(folder)


#: Why links are refused, said to the operator: the ERP names the attachment, and a link
#: would have the gateway send a file the ERP could not give it (another channel's
#: export, a file readable by the gateway's user only).
_REAL_FILES = "attachments are read only from files written into that directory itself, never through a link"


def _read(folder: int, directory: Path, name: str, mime_type: str, role: str) -> Attachment | str:
    # Opened relative to the directory already opened, without following a link, and
    # without blocking on a FIFO: what is checked is what is read.
    try:
        handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except FileNotFoundError:
        return f"is not in {directory}"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"is a symbolic link in {directory}: refused, {_REAL_FILES}"
        return f"cannot be read from {directory}: {exc.strerror}"
    with os.fdopen(handle, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            return f"is not a regular file in {directory}"
        if info.st_nlink > 1 and _names_here(folder, info) < info.st_nlink:
            return (f"is a hard link to a file outside {directory} ({info.st_nlink} names, "
                    f"{_names_here(folder, info)} of them there): refused, {_REAL_FILES}")
        if info.st_size >= MAX_ATTACHMENT_BYTES:
            return f"weighs {info.st_size} bytes; Chorus Pro takes less than {MAX_ATTACHMENT_BYTES} per file"
        if info.st_size == 0:
            return "is empty"
        content = file.read(MAX_ATTACHMENT_BYTES)
    if len(content) >= MAX_ATTACHMENT_BYTES:  # it grew while being read
        return f"weighs more than {MAX_ATTACHMENT_BYTES} bytes; Chorus Pro takes less per file"
    return Attachment(name, mime_type, content, role)


def _names_here(folder: int, info: os.stat_result) -> int:
    """How many names the directory gives the file ``info`` describes (hard links)."""
    with os.scandir(folder) as entries:
        return sum(1 for entry in entries if entry.inode() == info.st_ino
                   and entry.stat(follow_symlinks=False).st_dev == info.st_dev)
