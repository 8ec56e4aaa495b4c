"""Documents sent with an invoice (BG-24): where they are read from, and Chorus Pro's
limits on them (DOMAIN.md §1). Reading is the one side effect; ``records`` reports
the problems against the export's field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: What an attachment may be: the MIME codes EN 16931 allows for an embedded document
#: (BR-CL-24), which Chorus Pro's extension allow-list also takes (DOMAIN.md §1).
ATTACHMENT_TYPES = {
    "pdf": "application/pdf",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
}
#: DOMAIN.md §1: names ≤ 50 characters, each file < 10 MB, invoice + attachments ≤ 120 MB.
MAX_ATTACHMENT_NAME = 50
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_ATTACHMENTS_TOTAL_BYTES = 120 * 1024 * 1024
#: Separates the file names of the ``attachments`` field.
ATTACHMENT_SEPARATOR = "|"


def default_attachment_dir(export: Path) -> Path:
    """Where an export's attachments are by default: ``attachments/`` beside it.

    A subdirectory, so that a watched directory never takes a PDF for an export.
    """
    return export.parent / "attachments"


@dataclass(frozen=True)
class Attachment:
    """A document sent with the invoice (BG-24), read at intake."""

    name: str  # BT-125 filename, also BT-122
    mime_type: str
    content: bytes
    #: "invoice" for the ERP's PDF of the invoice itself, "supporting" otherwise.
    role: str = "supporting"


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
    path = directory / name
    try:
        size = path.stat().st_size
        if size >= MAX_ATTACHMENT_BYTES:
            return f"weighs {size} bytes; Chorus Pro takes less than {MAX_ATTACHMENT_BYTES} per file"
        if size == 0:
            return "is empty"
        return Attachment(name, ATTACHMENT_TYPES[extension], path.read_bytes(), role)
    except FileNotFoundError:
        return f"is not in {directory}"
    except OSError as exc:
        return f"cannot be read from {directory}: {exc.strerror}"
